// netns.h - the fuzzer's private network namespace: BPF_PROG_TEST_RUN
// accepts only the ifindex of a device in the caller's namespace, so the
// process moves into a namespace of its own first (unshare, like
// moat_bpf_tests) and creates there a veth per possible attachment, two
// uplinks and one device no map knows. Everything disappears with the
// process; nothing is ever added to the namespace it was started in.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace fuzz {

// Moves into a new network namespace; false (with errno) when that fails.
bool enter_private_netns();
// Creates the devices (configs.h names them); device name -> ifindex.
std::map<std::string, uint32_t> create_devices();

}  // namespace fuzz
