// net.h - IPv4 addresses, prefixes and MAC addresses as values, with parsing
// and printing.
// Pure code: no system calls. Addresses are kept in host byte order; convert
// with to_be() when writing a map entry.
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
  uint32_t to_be() const;  // network byte order, for abi.h structs
  static Ipv4 from_be(uint32_t be);  // from an abi.h struct
  static std::optional<Ipv4> parse(std::string_view text);
};

struct Ipv4Prefix {
  Ipv4 addr;         // network address (host bits zero)
  uint8_t len = 0;   // 0..32
  auto operator<=>(const Ipv4Prefix&) const = default;
  std::string str() const;                   // "172.20.0.0/16"
  bool contains(Ipv4 a) const;
  bool overlaps(const Ipv4Prefix& o) const;
  Ipv4 first_host() const;                   // network + 1
  Ipv4 broadcast() const;
  uint32_t mask() const;
  // Accepts "a.b.c.d/len"; rejects host bits set, e.g. "172.20.0.1/16",
  // and sets *why to a short reason when it returns nullopt.
  static std::optional<Ipv4Prefix> parse(std::string_view text, std::string* why = nullptr);
};

using Mac = std::array<uint8_t, 6>;

// "02:42:ac:12:00:02" (any case) -> bytes; nullopt when malformed.
std::optional<Mac> parse_mac(std::string_view text);
std::string mac_str(const Mac& m);  // lower case, with colons

}  // namespace moat
