#include "dataplane/tc.h"

#include <net/if.h>

#include <cerrno>
#include <tuple>

namespace moat {
namespace {

constexpr uint32_t kTcHandle = 0x6d6f;
constexpr uint32_t kTcPriority = 0x6d6f;

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook h{};
  h.sz = sizeof(h);
  h.ifindex = ifindex;
  h.attach_point = point;
  return h;
}

bpf_tc_opts make_opts(int prog_fd = 0) {
  bpf_tc_opts o{};
  o.sz = sizeof(o);
  o.handle = kTcHandle;
  o.priority = kTcPriority;
  o.prog_fd = prog_fd;
  return o;
}

}  // namespace

uint32_t attached_prog_id(int ifindex, bpf_tc_attach_point point) {
  auto hook = make_hook(ifindex, point);
  auto opts = make_opts();
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  return opts.prog_id;
}

Result<bool> attach(const std::string& ifname, int ifindex, const PinnedProgs& progs,
                    bool* qdisc_created) {
  auto hook = make_hook(ifindex, BPF_TC_INGRESS);
  int rc = bpf_tc_hook_create(&hook);
  if (rc && rc != -EEXIST) return fail_errno("create clsact qdisc on " + ifname, rc);
  if (rc == 0) *qdisc_created = true;
  bool changed = false;
  for (auto [point, fd, id] : {std::tuple{BPF_TC_INGRESS, progs.ingress.get(), progs.ingress_id},
                               std::tuple{BPF_TC_EGRESS, progs.egress.get(), progs.egress_id}}) {
    if (id == 0) continue;  // no program for this direction
    uint32_t cur = attached_prog_id(ifindex, point);
    if (cur == id) continue;
    auto h = make_hook(ifindex, point);
    auto o = make_opts(fd);
    o.flags = cur ? BPF_TC_F_REPLACE : 0;
    if (int arc = bpf_tc_attach(&h, &o); arc)
      return fail_errno(std::string("attach to ") + ifname +
                            (point == BPF_TC_INGRESS ? " ingress" : " egress"),
                        arc);
    changed = true;
  }
  return changed;
}

Result<void> detach(const std::string& ifname, bool qdisc_created, const std::set<uint32_t>& ours) {
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return {};
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    uint32_t cur = attached_prog_id(ifindex, point);
    if (cur == 0 || !ours.contains(cur)) continue;
    auto h = make_hook(ifindex, point);
    auto o = make_opts();
    if (int rc = bpf_tc_detach(&h, &o); rc && rc != -ENOENT)
      return fail_errno("detach from " + ifname, rc);
  }
  if (qdisc_created) {
    auto h = make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
    if (int rc = bpf_tc_hook_destroy(&h); rc && rc != -ENOENT && rc != -EINVAL)
      return fail_errno("remove clsact qdisc from " + ifname, rc);
  }
  return {};
}

}  // namespace moat
