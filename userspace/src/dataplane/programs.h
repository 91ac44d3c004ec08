// programs.h - the TC programs of an instance, pinned as
// <pin_dir>/prog_<name>: one loaded copy shared by every interface, kept
// across applies while this binary embeds the same objects.
#pragma once

#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "util/fd.h"
#include "util/result.h"

namespace moat {

Result<bpf_prog_info> prog_info(int fd);

// The programs for TC ingress and egress of one kind of interface; a kind
// with no egress program (bridges) has egress_id 0.
struct PinnedProgs {
  Fd ingress, egress;
  uint32_t ingress_id = 0, egress_id = 0;
  // The kernel's names of the programs (BPF_OBJ_NAME_LEN), for the filters'
  // names as libbpf gives them ("from_container:[42]").
  std::string ingress_name, egress_name;
};

// Every kind of interface moat attaches to.
struct InstanceProgs {
  PinnedProgs container, uplink, bridge;
};

// One program instance per instance: interfaces attached at different times
// share it. A newer moat with different instructions (another tag) replaces
// it (*replaced set). `egress` may be null.
Result<PinnedProgs> pin_programs(const std::string& instance, bpf_program* ingress,
                                 bpf_program* egress, bool dry_run, bool* replaced);

// The TC objects this binary embeds, as one hash of their SHA-256s (taken
// at build time).
std::string objects_fingerprint();
// The same for the socket hooks' object (sockhooks.h).
std::string sock_object_fingerprint();

// The pinned programs, when all five are there.
std::optional<InstanceProgs> open_pinned_programs(const std::string& instance);

// Ids of every program pinned for the instance: what `detach` may remove.
std::set<uint32_t> pinned_prog_ids(const std::string& instance);

}  // namespace moat
