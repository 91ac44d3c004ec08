// net.cpp - IPv4 and IPv6 values. Parsing is strict on purpose: configuration files
// are written by people, and a lenient parser turns typos into addresses.
#include "util/net.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <vector>

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

namespace {

// One group of an IPv6 address: 1 to 4 hex digits.
std::optional<uint16_t> take_group(std::string_view text) {
  if (text.empty() || text.size() > 4) return std::nullopt;
  uint16_t value = 0;
  for (char c : text) {
    int digit = hex_digit(c);
    if (digit < 0) return std::nullopt;
    value = static_cast<uint16_t>(value << 4 | digit);
  }
  return value;
}

// The groups of "1:2:3" into `out` (none for empty text). With `dotted_last`
// the last piece may be a dotted quad, which makes two groups.
bool take_groups(std::string_view text, bool dotted_last, std::vector<uint16_t>& out) {
  if (text.empty()) return true;
  for (;;) {
    if (out.size() > 8) return false;
    size_t colon = text.find(':');
    std::string_view piece = text.substr(0, colon);
    if (colon == std::string_view::npos && dotted_last &&
        piece.find('.') != std::string_view::npos) {
      auto v4 = Ipv4::parse(piece);
      if (!v4) return false;
      out.push_back(static_cast<uint16_t>(v4->value >> 16));
      out.push_back(static_cast<uint16_t>(v4->value & 0xffff));
      return true;
    }
    auto group = take_group(piece);
    if (!group) return false;
    out.push_back(*group);
    if (colon == std::string_view::npos) return true;
    text.remove_prefix(colon + 1);
  }
}

// `a` with all but its first `len` bits cleared.
Ipv6 network_part(const Ipv6& a, unsigned len) {
  Ipv6 out;
  for (unsigned i = 0; i < 16; ++i) {
    unsigned bits = len >= 8 * (i + 1) ? 8 : len > 8 * i ? len - 8 * i : 0;
    out.bytes[i] = a.bytes[i] & static_cast<uint8_t>(0xff00 >> bits);
  }
  return out;
}

}  // namespace

std::string Ipv6::str() const {
  uint16_t g[8];
  for (int i = 0; i < 8; ++i) g[i] = static_cast<uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  if (g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0 && g[4] == 0 && g[5] == 0xffff) {
    return "::ffff:" + Ipv4{static_cast<uint32_t>(g[6]) << 16 | g[7]}.str();
  }
  int run = -1, run_len = 1;  // a single zero group is never compressed
  for (int i = 0; i < 8;) {
    int end = i;
    while (end < 8 && g[end] == 0) ++end;
    if (end - i > run_len) {
      run = i;
      run_len = end - i;
    }
    i = end == i ? i + 1 : end;
  }
  std::string out;
  for (int i = 0; i < 8;) {
    if (i == run) {
      out += "::";
      i += run_len;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    char buf[5];
    std::snprintf(buf, sizeof(buf), "%x", g[i]);
    out += buf;
    ++i;
  }
  return out;
}

bool Ipv6::is_link_local() const { return bytes[0] == 0xfe && (bytes[1] & 0xc0) == 0x80; }

bool Ipv6::is_multicast() const { return bytes[0] == 0xff; }

bool Ipv6::is_v4_mapped() const {
  return std::all_of(bytes.begin(), bytes.begin() + 10, [](uint8_t b) { return b == 0; }) &&
         bytes[10] == 0xff && bytes[11] == 0xff;
}

std::optional<Ipv6> Ipv6::parse(std::string_view text) {
  std::vector<uint16_t> head, tail;
  size_t gap = text.find("::");
  if (gap == std::string_view::npos) {
    if (!take_groups(text, true, head) || head.size() != 8) return std::nullopt;
  } else {
    // "::" stands for at least one zero group, and only once.
    std::string_view after = text.substr(gap + 2);
    if (after.find("::") != std::string_view::npos) return std::nullopt;
    if (!take_groups(text.substr(0, gap), false, head) || !take_groups(after, true, tail) ||
        head.size() + tail.size() > 7) {
      return std::nullopt;
    }
  }
  Ipv6 out;
  auto put = [&out](size_t at, uint16_t group) {
    out.bytes[2 * at] = static_cast<uint8_t>(group >> 8);
    out.bytes[2 * at + 1] = static_cast<uint8_t>(group & 0xff);
  };
  for (size_t i = 0; i < head.size(); ++i) put(i, head[i]);
  for (size_t i = 0; i < tail.size(); ++i) put(8 - tail.size() + i, tail[i]);
  return out;
}

std::string Ipv6Prefix::str() const { return addr.str() + "/" + std::to_string(len); }

bool Ipv6Prefix::contains(const Ipv6& a) const { return network_part(a, len) == addr; }

bool Ipv6Prefix::overlaps(const Ipv6Prefix& o) const {
  return len <= o.len ? contains(o.addr) : o.contains(addr);
}

Ipv6 Ipv6Prefix::first_host() const {
  Ipv6 out = addr;
  for (int i = 15; i >= 0 && ++out.bytes[i] == 0; --i) {
  }
  return out;
}

std::optional<Ipv6Prefix> Ipv6Prefix::parse(std::string_view text, std::string* why) {
  auto fail = [why](std::string reason) -> std::optional<Ipv6Prefix> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return fail("missing the prefix length, e.g. \"/64\"");
  auto addr = Ipv6::parse(text.substr(0, slash));
  if (!addr) return fail("\"" + std::string(text.substr(0, slash)) + "\" is not an IPv6 address");
  std::string_view len_text = text.substr(slash + 1);
  auto len = take_decimal(len_text, 3);
  if (!len || !len_text.empty() || *len > 128) {
    return fail("the prefix length must be a number from 0 to 128");
  }
  Ipv6Prefix prefix{*addr, static_cast<uint8_t>(*len)};
  Ipv6 network = network_part(*addr, prefix.len);
  if (network != *addr) {
    return fail("host bits are set (did you mean " + Ipv6Prefix{network, prefix.len}.str() + "?)");
  }
  return prefix;
}

Ipv6 link_local_of(const Mac& m) {
  return Ipv6{{0xfe, 0x80, 0, 0, 0, 0, 0, 0, static_cast<uint8_t>(m[0] ^ 0x02), m[1], m[2], 0xff,
               0xfe, m[3], m[4], m[5]}};
}

}  // namespace moat
