// plan/ - from desired state to the exact map entries the kernel side reads
// (abi.h layouts), counter slots and attachments. Pure code, unit-tested
// without root; may use util/, config/ and policy/, never dataplane/: the
// dataplane only diffs these against the kernel and writes the difference.
//
// plan.h: what a validated Config alone decides (ids, endpoints, addresses,
// published ports); map_plan.h: the rest, once the host's interfaces are known.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "abi.h"
#include "config/config.h"
#include "util/result.h"

namespace moat {

// Numeric ids for names. Kept across applies (from the state file) so that
// applying a changed file rewrites only the entries that really changed.
struct IdTable {
  std::map<std::string, uint32_t> networks;
  std::map<std::string, uint32_t> containers;
};

struct EndpointEntry {
  std::string container;
  std::string network;
  std::string interface;   // host-side interface; the key is its ifindex
  bool mac_given = false;  // value.mac is the file's; else the host's facts give it
  moat_endpoint value{};
};

struct AddrEntry {
  moat_lpm_v4_key key{};
  moat_addr_info value{};
  std::string network;
};

// The same for `addrs6`: a network's IPv6 subnet and gateway.
struct Addr6Entry {
  moat_lpm_v6_key key{};
  moat_addr_info value{};
  std::string network;
};

// One published host port (ranges are expanded port by port), in `publish`
// (IPv4) or `publish6` (IPv6).
template <class K, class V>
struct BasicPublishEntry {
  std::string container;
  std::string network;  // the attachment the port forwards to
  std::string text;     // the publish as written, for messages
  K key{};
  V value{};
};
using PublishEntry = BasicPublishEntry<moat_publish_key, moat_publish_val>;
using Publish6Entry = BasicPublishEntry<moat_publish6_key, moat_publish6_val>;

struct Plan {
  IdTable ids;
  std::vector<EndpointEntry> endpoints;
  std::vector<AddrEntry> addrs;
  std::vector<Addr6Entry> addrs6;
  std::vector<PublishEntry> publish;
  // A publish on every address (or an IPv6 one) of a container with an IPv6
  // address on the publishing network; those on an IPv6 address only here.
  std::vector<Publish6Entry> publish6;
};

// Fails when an attachment has no host interface, two attachments name the
// same interface, or the plan exceeds a map's capacity; the message names the
// place in the file.
Result<Plan> compile(const Config& cfg, const IdTable& previous);

// What an apply of `cfg` refuses that no fact of the host decides: a
// publish with nowhere to go, more attachments, published ports or networks
// than the maps hold under cfg.limits, policies beyond the policy maps. The
// attachments need no interface yet. `moat validate` says it before any
// apply does, in the same words.
Result<void> check_plannable(const Config& cfg);

// Counter slots in `stats` (abi.h) for the attachments of one apply.
struct SlotHolder {
  std::string name;  // interface
  int ifindex = 0;
  uint32_t slot = 0;
};
struct SlotAssignment {
  std::map<std::string, uint32_t> slot;  // by interface name
  std::vector<uint32_t> fresh;           // given anew: zero before use
  std::vector<uint32_t> freed;           // no longer held: zero once detached
};
// An interface keeps its slot while its name and ifindex stay (its counters
// go on; a re-created interface starts from zero, like its kernel counters).
// New ones get the lowest slots that neither a kept nor a freed slot uses,
// so packets still in flight on a detaching interface never land in a
// fresh attachment's counters. Slot 0 is never given. Fails when the slots
// below `limit` (limits.endpoints) would not do.
Result<SlotAssignment> assign_stats_slots(const std::vector<std::pair<std::string, int>>& wanted,
                                          uint32_t limit, const std::vector<SlotHolder>& previous);

// The attachment a published port forwards to: the container's first
// non-internal one, as Docker uses the network that gives the container its
// default route. nullptr when there is none.
const Attachment* publish_target(const Config& cfg, const Container& c);

// What in `cfg` makes the programs rewrite IPv6 addresses (NAT66), one
// entry each: a network that masquerades IPv6 behind the uplinks, a port
// published over IPv6 where packets reach it (every address but [::1], which
// only the host's socket hooks serve, without a rewrite). Empty when nothing
// does.
struct Nat66Use {
  std::string what;  // `network "dual" masquerades IPv6 behind the uplinks`
  std::string fix;   // what to change to do without it
};
std::vector<Nat66Use> nat66_uses(const Config& cfg);

// Refuses `cfg` when it needs NAT66 (nat66_uses()) and the kernel cannot do
// it (`kernel_nat66` false; `kernel` names it, e.g. "Linux 6.1.0"): the
// programs would drop every rewritten packet as nat-rewrite-failed. The
// message names the kernel requirement, what needs it and what to change.
Result<void> require_nat66(const Config& cfg, bool kernel_nat66, const std::string& kernel);

// Refuses `cfg` when it masquerades (a network with masquerade on, not
// internal, and host.uplinks to do it at) while the host may pick one of the
// masquerade's ports (MOAT_NAT_PORT_MIN-MAX) for a connection of its own:
// the programs see a reply to that connection as one to a container's flow
// holding the same port and hand it to the container. `local_port_range`
// and `reserved_ports` are the network namespace's
// net.ipv4.ip_local_port_range ("32768\t60999") and
// net.ipv4.ip_local_reserved_ports ("1024-32767,40000"; reserved ports are
// never picked), which IPv6 sockets use too. The message says how to keep
// the two apart.
Result<void> require_masquerade_ports(const Config& cfg, std::string_view local_port_range,
                                      std::string_view reserved_ports);
// The first network `cfg` masquerades behind its uplinks; nullptr when none
// does (no uplinks, or every network internal or with masquerade off).
const Network* masquerading_network(const Config& cfg);

// Whether bridge isolation lets `src` reach `dst` at the address of `dst`'s
// attachment `dst_att`: the model the BPF programs implement, used by the
// lab's probe to print the expected matrix. `src` == nullptr means the host.
bool isolation_allows(const Config& cfg, const Container* src, const Container& dst,
                      const Attachment& dst_att);

}  // namespace moat
