// host.h - facts of the machine the dataplane runs on: bpffs, the network
// namespace moat was started in, interfaces' addresses.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "util/fd.h"
#include "util/result.h"

struct ifreq;  // <net/if.h>, which clashes with <linux/if.h>

namespace moat {

// Mounts bpffs at /sys/fs/bpf when the machine has none; refuses inside a
// private mount namespace, where pins would vanish with it.
Result<void> ensure_bpffs();
Result<void> mkdirs(const std::string& dir);
uint64_t current_netns_inode();
// A named namespace (/run/netns/NAME) with the current inode, so `moat down`
// can find its interfaces again from elsewhere; "" for unnamed ones.
std::string current_netns_path();
Result<void> enter_netns(const std::string& path);
// The first global IPv6 address of interface `ifindex` (not link-local,
// multicast or loopback), in network order; all zero when it has none:
// IPv6 is then neither masqueraded nor published there.
std::array<uint8_t, 16> interface_ipv6(unsigned ifindex);

// Interfaces by name, as a caller found them in this process just before
// (the Docker agent looks for every container's veth each sync).
using KnownIndexes = std::map<std::string, unsigned>;

// if_nametoindex() for many names over one socket (it opens one a call),
// opened at the first name not `known`: 0 and errno set when there is no
// such interface.
class InterfaceIndexes {
 public:
  explicit InterfaceIndexes(const KnownIndexes* known = nullptr) : known_(known) {}
  unsigned operator()(const std::string& ifname) const;
  // The primary IPv4 address of an interface, in network order.
  Result<uint32_t> ipv4(const std::string& ifname) const;

 private:
  bool ask(unsigned long request, const std::string& ifname, ifreq& r) const;
  const KnownIndexes* known_;
  mutable Fd sock_;
};

}  // namespace moat
