// values.h - internal: single values of a moat file, parsed or checked on
// their own (ports, `-p` mappings, names, host addresses). Pure functions
// returning the value or why it is wrong; the reader adds where it was
// written. Shared by config/ and policy/read.cpp (Kubernetes names).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/reader.h"

namespace moat {

struct PortRange {
  uint16_t first = 0;
  uint16_t count = 1;
  std::string str() const;  // "80", "8000-8010"
};

// The smallest and largest value a key of `limits` may take (a key of
// Limits: "conntrack", "endpoints", "published_ports", "socket_nat").
// Below the smallest, the conntrack quota arithmetic has no room (abi.h);
// above the largest, memory no host should give (plan/limits.h).
std::pair<int64_t, int64_t> limit_range(std::string_view key);

// `--limit KEY=N` flags (the agents' way to the file's `limits`), each
// checked like the file's.
Parsed<Limits> parse_limit_flags(const std::vector<std::string>& items);

Parsed<uint16_t> parse_port(std::string_view text);
Parsed<PortRange> parse_port_range(std::string_view text);    // "80" or "8000-8010"
Parsed<Protocol> parse_port_protocol(std::string_view text);  // "tcp", "udp", "sctp"

// A publish's host address: one of the two, or neither for every address.
struct HostAddress {
  std::optional<Ipv4> v4;
  std::optional<Ipv6> v6;
};
// "127.0.0.1", "::1" or "[::1]"; IPv4-mapped and multicast IPv6 refused.
Parsed<HostAddress> parse_host_address(std::string_view text);

// Docker's `-p [ip:]host:container[/proto]`, IPv6 addresses bracketed
// (`[::1]:8080:80`); `text` is kept for messages.
Parsed<Publish> parse_publish(std::string_view text);
// The object form's fields, checked as Docker checks the string form.
Parsed<Publish> make_publish(const HostAddress& host_ip, PortRange host, PortRange container,
                             Protocol protocol);
std::string render_publish(const Publish& p);  // "127.0.0.1:8080:80/tcp", "[::1]:8080:80/tcp"

Parsed<Expose> parse_expose(std::string_view text);  // "6000", "6000/tcp", "53/udp"

// Name rules; each returns why `name` breaks it, if it does.
std::optional<std::string> docker_name_problem(std::string_view name);    // containers, networks
std::optional<std::string> dns_label_problem(std::string_view name);      // namespaces (RFC 1123)
std::optional<std::string> dns_subdomain_problem(std::string_view name);  // policy names
std::optional<std::string> ifname_problem(std::string_view name);         // the kernel's rule

// Why `subnet` cannot be a bridge network's, if it cannot: it overlaps an
// address range no container network may use (loopback, multicast, ...).
std::optional<std::string> special_subnet_problem(const Ipv4Prefix& subnet);
std::optional<std::string> special_subnet_problem(const Ipv6Prefix& subnet);

// Why `ip` cannot be a host in `subnet`, if it cannot.
std::optional<std::string> host_address_problem(Ipv4 ip, const Ipv4Prefix& subnet);
// IPv6 has no broadcast address: only the network address (the subnet
// routers' anycast address) is taken.
std::optional<std::string> host_address_problem(const Ipv6& ip, const Ipv6Prefix& subnet);

}  // namespace moat
