#include "dataplane/programs.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "dataplane/dataplane.h"
#include "dataplane/skeleton.h"
#include "bridge.fingerprint.h"
#include "endpoint.fingerprint.h"
#include "sock.fingerprint.h"
#include "uplink.fingerprint.h"

namespace fs = std::filesystem;

namespace moat {

Result<bpf_prog_info> prog_info(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (int rc = bpf_obj_get_info_by_fd(fd, &info, &len); rc) return fail_errno("query program", rc);
  return info;
}

Result<PinnedProgs> pin_programs(const std::string& instance, bpf_program* ingress,
                                 bpf_program* egress, bool dry_run, bool* replaced) {
  PinnedProgs out;
  for (auto [prog, fd_out, id_out, name_out] :
       {std::tuple{ingress, &out.ingress, &out.ingress_id, &out.ingress_name},
        std::tuple{egress, &out.egress, &out.egress_id, &out.egress_name}}) {
    if (!prog) continue;
    std::string path = pin_dir(instance) + "/prog_" + bpf_program__name(prog);
    auto fresh = prog_info(bpf_program__fd(prog));
    if (!fresh) return std::unexpected(fresh.error());
    Fd pinned(bpf_obj_get(path.c_str()));
    if (pinned.ok()) {
      auto old = prog_info(pinned.get());
      if (!old) return std::unexpected(old.error());
      if (memcmp(old->tag, fresh->tag, sizeof(old->tag)) == 0) {
        *id_out = old->id;
        *name_out = old->name;
        *fd_out = std::move(pinned);
        continue;
      }
      *replaced = true;
      if (!dry_run) unlink(path.c_str());
    }
    if (!dry_run) {
      if (int rc = bpf_program__pin(prog, path.c_str()); rc) return fail_errno("pin " + path, rc);
    }
    *id_out = fresh->id;
    *name_out = fresh->name;
    *fd_out = Fd(dup(bpf_program__fd(prog)));
  }
  return out;
}

namespace {

// A 16-digit fingerprint of objects given by their SHA-256 (computed when
// they were built, cmake/BpfFingerprint.cmake): hashing the embedded bytes
// took some 2.5 ms of every CLI apply.
std::string fingerprint_of(std::initializer_list<std::string_view> sha256s) {
  size_t h = 0;
  for (std::string_view s : sha256s) h = h * 31 + std::hash<std::string_view>{}(s);
  char buf[17];
  snprintf(buf, sizeof(buf), "%016zx", h);
  return std::string(buf);
}

}  // namespace

std::string objects_fingerprint() {
  static const std::string fingerprint =
      fingerprint_of({MOAT_ENDPOINT_BPF_SHA256, MOAT_UPLINK_BPF_SHA256, MOAT_BRIDGE_BPF_SHA256});
  return fingerprint;
}

std::string sock_object_fingerprint() {
  static const std::string fingerprint = fingerprint_of({MOAT_SOCK_BPF_SHA256});
  return fingerprint;
}

std::optional<InstanceProgs> open_pinned_programs(const std::string& instance) {
  InstanceProgs out;
  for (auto [name, fd, id, kname] :
       {std::tuple{"from_container", &out.container.ingress, &out.container.ingress_id,
                   &out.container.ingress_name},
        std::tuple{"to_container", &out.container.egress, &out.container.egress_id,
                   &out.container.egress_name},
        std::tuple{"from_world", &out.uplink.ingress, &out.uplink.ingress_id,
                   &out.uplink.ingress_name},
        std::tuple{"to_world", &out.uplink.egress, &out.uplink.egress_id, &out.uplink.egress_name},
        std::tuple{"from_bridge", &out.bridge.ingress, &out.bridge.ingress_id,
                   &out.bridge.ingress_name}}) {
    Fd pinned(bpf_obj_get((pin_dir(instance) + "/prog_" + name).c_str()));
    if (!pinned.ok()) return std::nullopt;
    auto info = prog_info(pinned.get());
    if (!info) return std::nullopt;
    *id = info->id;
    *kname = info->name;
    *fd = std::move(pinned);
  }
  return out;
}

std::set<uint32_t> pinned_prog_ids(const std::string& instance) {
  std::set<uint32_t> ids;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pin_dir(instance), ec)) {
    if (e.path().filename().string().rfind("prog_", 0) != 0) continue;
    Fd fd(bpf_obj_get(e.path().c_str()));
    if (!fd.ok()) continue;
    if (auto info = prog_info(fd.get())) ids.insert(info->id);
  }
  return ids;
}

}  // namespace moat
