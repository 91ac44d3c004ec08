// paths.h - every place on the machine moat keeps something, each written
// once: pins in bpffs (kernel objects that outlive the process), state and
// the lock under /run (gone at reboot, like the kernel objects), lab files.
#pragma once

#include <string>

namespace moat::paths {

inline constexpr const char* kBpffs = "/sys/fs/bpf";      // the machine's bpffs
inline constexpr const char* kPinRoot = "/sys/fs/bpf/moat";  // one directory per instance
inline constexpr const char* kRunDir = "/run/moat";       // state, locks, our cgroup2 mount
inline constexpr const char* kLabDir = "/run/moat/labs";  // lab records and file copies
inline constexpr const char* kNetnsDir = "/run/netns";    // where `ip netns add` pins namespaces

std::string pin_dir(const std::string& instance);    // /sys/fs/bpf/moat/<instance>
std::string state_dir(const std::string& instance);  // /run/moat/<instance>
std::string netns_path(const std::string& name);     // /run/netns/<name>

}  // namespace moat::paths
