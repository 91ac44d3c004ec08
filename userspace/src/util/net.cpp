// net.cpp - IPv4 values. Parsing is strict on purpose: configuration files
// are written by people, and a lenient parser turns typos into addresses.
#include "util/net.h"

#include <bit>
#include <charconv>
#include <cstdio>

namespace moat {
namespace {

// Reads a decimal number of 1..max_digits digits from the front of `text`.
// Leading zeros are refused ("01" could mean octal to inet_aton and to the
// reader), except for "0" itself.
std::optional<uint32_t> take_decimal(std::string_view& text, size_t max_digits) {
  size_t n = 0;
  while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n;
  if (n == 0 || n > max_digits || (n > 1 && text[0] == '0')) return std::nullopt;
  uint32_t value = 0;
  std::from_chars(text.data(), text.data() + n, value);
  text.remove_prefix(n);
  return value;
}

}  // namespace

std::string Ipv4::str() const {
  return std::to_string(value >> 24) + "." + std::to_string((value >> 16) & 0xff) + "." +
         std::to_string((value >> 8) & 0xff) + "." + std::to_string(value & 0xff);
}

Ipv4 Ipv4::from_be(uint32_t be) {
  if constexpr (std::endian::native == std::endian::little) return Ipv4{std::byteswap(be)};
  return Ipv4{be};
}

uint32_t Ipv4::to_be() const {
  if constexpr (std::endian::native == std::endian::little) return std::byteswap(value);
  return value;
}

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (text.empty() || text.front() != '.') return std::nullopt;
      text.remove_prefix(1);
    }
    auto octet = take_decimal(text, 3);
    if (!octet || *octet > 255) return std::nullopt;
    value = value << 8 | *octet;
  }
  if (!text.empty()) return std::nullopt;
  return Ipv4{value};
}

std::string Ipv4Prefix::str() const { return addr.str() + "/" + std::to_string(len); }

uint32_t Ipv4Prefix::mask() const {
  // A shift by 32 is undefined, so /0 needs its own case.
  return len == 0 ? 0 : ~uint32_t{0} << (32 - len);
}

bool Ipv4Prefix::contains(Ipv4 a) const { return (a.value & mask()) == addr.value; }

bool Ipv4Prefix::overlaps(const Ipv4Prefix& o) const {
  // Prefixes nest or are disjoint, so the shorter one decides.
  return len <= o.len ? contains(o.addr) : o.contains(addr);
}

Ipv4 Ipv4Prefix::first_host() const { return Ipv4{addr.value + 1}; }

Ipv4 Ipv4Prefix::broadcast() const { return Ipv4{addr.value | ~mask()}; }

std::optional<Ipv4Prefix> Ipv4Prefix::parse(std::string_view text, std::string* why) {
  auto fail = [why](std::string reason) -> std::optional<Ipv4Prefix> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return fail("missing the prefix length, e.g. \"/16\"");
  auto addr = Ipv4::parse(text.substr(0, slash));
  if (!addr) return fail("\"" + std::string(text.substr(0, slash)) + "\" is not an IPv4 address");
  std::string_view len_text = text.substr(slash + 1);
  auto len = take_decimal(len_text, 2);
  if (!len || !len_text.empty() || *len > 32) {
    return fail("the prefix length must be a number from 0 to 32");
  }
  Ipv4Prefix prefix{*addr, static_cast<uint8_t>(*len)};
  if ((addr->value & prefix.mask()) != addr->value) {
    Ipv4Prefix network{Ipv4{addr->value & prefix.mask()}, prefix.len};
    return fail("host bits are set (did you mean " + network.str() + "?)");
  }
  return prefix;
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<Mac> parse_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  Mac m;
  for (size_t i = 0; i < 6; ++i) {
    int hi = hex_digit(text[i * 3]), lo = hex_digit(text[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':')) return std::nullopt;
    m[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return m;
}

std::string mac_str(const Mac& m) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

}  // namespace moat
