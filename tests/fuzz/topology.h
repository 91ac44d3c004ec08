// topology.h - one fuzzing configuration: the moat file it is (a JSON
// document as `moat apply` reads it, with each attachment's MAC), the
// uplinks' addresses (known to the host, not the file), the policy variants
// a case may switch to, and, once parsed, the facts both the model and the
// generator read: networks, attachments with their devices, uplinks,
// published ports and what kind of address an address is.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "frame.h"

namespace fuzz {

// What a configuration is, as the report prints it and --replay reads it.
struct FuzzConfig {
  std::string name;
  nlohmann::json doc;                          // the moat file (attachments carry "mac")
  std::map<std::string, std::string> uplinks;  // uplink device -> its IPv4 address
  // Policy sets a case may switch to (policy revision changes); variant 0 is
  // doc["policies"]; an empty array turns policy off (revision 0).
  std::vector<nlohmann::json> variants;

  nlohmann::json to_json() const;
  static FuzzConfig from_json(const nlohmann::json& j);
};

struct NetInfo {
  std::string name;
  moat::Ipv4Prefix subnet;
  uint32_t gateway = 0;
  bool icc = true, internal = false, masquerade = true;
  Mac gateway_mac{};                        // the bridge's, as a routed frame's source
  std::optional<moat::Ipv6Prefix> subnet6;  // dual-stack networks
  Ip6Addr gateway6{};
};

struct AttInfo {
  size_t container = 0;  // index in cfg.containers
  size_t net = 0;        // index in nets
  uint32_t ip = 0;
  Mac mac{};
  std::string dev;
  uint32_t ifindex = 0;
  std::optional<Ip6Addr> ip6;  // on a dual-stack network
  Ip6Addr ll{};                // its link-local address (EUI-64 of mac)
};

struct UplinkInfo {
  std::string dev;
  uint32_t ifindex = 0;
  uint32_t ip = 0;
  Mac mac{};
};

// One published host port (ranges expanded).
struct PublishInfo {
  std::optional<uint32_t> host_ip;  // none: every host address
  uint16_t host_port = 0, container_port = 0;
  uint8_t proto = 0;
  size_t container = 0;
};

enum class AddrKind { Subnet, Gateway, Host, World };
struct AddrClass {
  AddrKind kind = AddrKind::World;
  size_t net = 0;  // Subnet, Gateway
};

inline constexpr Mac kRouterMac = {0x02, 0x20, 0x00, 0x00, 0x00, 0x01};

class Topology {
 public:
  // Fails (with the parser's problems) when the document does not parse.
  static Topology build(const FuzzConfig& fc, const std::map<std::string, uint32_t>& ifindex,
                        uint32_t unknown_ifindex, std::string* error);

  moat::Config cfg;  // as parsed: variant 0's policies
  std::vector<NetInfo> nets;
  std::vector<AttInfo> atts;
  std::vector<UplinkInfo> uplinks;
  std::vector<PublishInfo> publishes;
  uint32_t unknown_ifindex = 0;  // a device with neither an endpoint nor an uplink entry
  bool macs_in_file = false;     // the parser took the attachments' "mac"

  const AttInfo* att_at(uint32_t ifindex) const;
  const UplinkInfo* uplink_at(uint32_t ifindex) const;
  const AttInfo* att_with_ip(uint32_t ip) const;
  AddrClass classify(uint32_t ip) const;
  // Gateways and uplink addresses; with_loopback adds 127.0.0.0/8 (policy's view).
  bool is_host(uint32_t ip, bool with_loopback = false) const;
  std::optional<size_t> container_of(uint32_t ip) const;
  // A host-address-bound entry beats the wildcard one.
  const PublishInfo* publish_for(uint32_t dst, uint16_t port, uint8_t proto) const;
  // Where a published port forwards: the container's address on the client's
  // network when it has one there, else on its first non-internal network.
  std::optional<uint32_t> backend_ip(const PublishInfo& p, std::optional<size_t> client_net) const;
  bool is_broadcast_for(const AttInfo& a, uint32_t ip) const;

  // IPv6: a network's gateway (a /128) before its subnet; World otherwise.
  AddrClass classify6(const Ip6Addr& ip) const;
  // The attachment whose IPv6 or link-local address `ip` is.
  const AttInfo* att_with_ip6(const Ip6Addr& ip) const;
  bool has_ipv6() const;
};

Mac mac_from_text(const std::string& s);

// `doc` parsed as `moat apply` would (without the attachments' "mac" when
// the file format does not know it yet); nullopt with the problems in *error.
std::optional<moat::Config> parse_document(const nlohmann::json& doc, bool* macs_taken,
                                           std::string* error);

}  // namespace fuzz
