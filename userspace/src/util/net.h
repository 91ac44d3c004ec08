// net.h - IPv4 and IPv6 addresses, prefixes and MAC addresses as values,
// with parsing and printing.
// Pure code: no system calls. IPv4 addresses are kept in host byte order;
// convert with to_be() when writing a map entry. IPv6 addresses are kept as
// their 16 bytes in network order, which is also how abi.h holds them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moat {

struct Ipv4 {
  uint32_t value = 0;  // host byte order
  auto operator<=>(const Ipv4&) const = default;
  std::string str() const;
  uint32_t to_be() const;            // network byte order, for abi.h structs
  static Ipv4 from_be(uint32_t be);  // from an abi.h struct
  static std::optional<Ipv4> parse(std::string_view text);
};

struct Ipv4Prefix {
  Ipv4 addr;        // network address (host bits zero)
  uint8_t len = 0;  // 0..32
  auto operator<=>(const Ipv4Prefix&) const = default;
  std::string str() const;  // "172.20.0.0/16"
  bool contains(Ipv4 a) const;
  bool overlaps(const Ipv4Prefix& o) const;
  Ipv4 first_host() const;  // network + 1
  Ipv4 broadcast() const;
  uint32_t mask() const;
  // Accepts "a.b.c.d/len"; rejects host bits set, e.g. "172.20.0.1/16",
  // and sets *why to a short reason when it returns nullopt.
  static std::optional<Ipv4Prefix> parse(std::string_view text, std::string* why = nullptr);
};

// An IPv6 address; ordered like the numbers the bytes spell.
struct Ipv6 {
  std::array<uint8_t, 16> bytes{};  // network byte order
  auto operator<=>(const Ipv6&) const = default;
  // RFC 5952: lower case, no leading zeros, the longest run of two or more
  // zero groups (the first of equally long ones) as "::"; an IPv4-mapped
  // address as "::ffff:192.0.2.1".
  std::string str() const;
  bool is_link_local() const;  // fe80::/10
  bool is_multicast() const;   // ff00::/8
  bool is_v4_mapped() const;   // ::ffff:0:0/96
  // Every RFC 4291 text form ("fd00::1", "::", "::ffff:192.0.2.1", upper
  // case hex); nullopt for zone ids ("fe80::1%eth0"), prefix lengths and
  // anything else.
  static std::optional<Ipv6> parse(std::string_view text);
};

struct Ipv6Prefix {
  Ipv6 addr;        // network address (host bits zero)
  uint8_t len = 0;  // 0..128
  auto operator<=>(const Ipv6Prefix&) const = default;
  std::string str() const;  // "fd00:1::/64"
  bool contains(const Ipv6& a) const;
  bool overlaps(const Ipv6Prefix& o) const;
  Ipv6 first_host() const;  // network + 1
  // Accepts "addr/len"; rejects host bits set, e.g. "fd00::1/64", and sets
  // *why to a short reason when it returns nullopt.
  static std::optional<Ipv6Prefix> parse(std::string_view text, std::string* why = nullptr);
};

using Mac = std::array<uint8_t, 6>;

// "02:42:ac:12:00:02" (any case) -> bytes; nullopt when malformed.
std::optional<Mac> parse_mac(std::string_view text);
std::string mac_str(const Mac& m);  // lower case, with colons

// The link-local address the kernel gives an interface with MAC `m` (RFC
// 4291's modified EUI-64): fe80::, then `m` with the universal/local bit
// flipped and ff:fe between its halves.
Ipv6 link_local_of(const Mac& m);

}  // namespace moat
