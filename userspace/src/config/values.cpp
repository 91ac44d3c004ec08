// values.cpp - see values.h.
#include "config/values.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace moat {
namespace {

constexpr size_t kMaxNameLength = 63;        // Docker's and DNS's label limit
constexpr size_t kMaxSubdomainLength = 253;  // a DNS name: policy names
constexpr size_t kMaxIfnameLength = 15;      // IFNAMSIZ - 1

// Splits "80/udp" into "80" and udp; no suffix means tcp, as in Docker.
Parsed<std::pair<std::string_view, Protocol>> split_protocol(std::string_view text) {
  size_t slash = text.rfind('/');
  if (slash == std::string_view::npos) return std::pair{text, Protocol::tcp};
  auto protocol = parse_port_protocol(text.substr(slash + 1));
  if (!protocol) return std::unexpected(protocol.error());
  return std::pair{text.substr(0, slash), *protocol};
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

std::optional<std::string> length_problem(std::string_view name, size_t max) {
  if (name.empty()) return "it is empty";
  if (name.size() > max) {
    return "it has " + std::to_string(name.size()) + " characters; the limit is " +
           std::to_string(max);
  }
  return std::nullopt;
}

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)); }

// Kubernetes' names: a namespace is a DNS label, a policy a DNS subdomain.
std::optional<std::string> dns_problem(std::string_view name, size_t max, bool dots) {
  if (auto why = length_problem(name, max)) return why;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = alnum(name.front()) && alnum(name.back()) &&
            std::all_of(name.begin(), name.end(),
                        [&](char c) { return alnum(c) || c == '-' || (dots && c == '.'); });
  if (ok) return std::nullopt;
  return dots ? "use lowercase letters, digits, '-' and '.', starting and ending with a letter or "
                "digit"
              : "use lowercase letters, digits and '-', starting and ending with a letter or digit";
}

}  // namespace

std::string PortRange::str() const {
  std::string s = std::to_string(first);
  return count == 1 ? s : s + "-" + std::to_string(first + count - 1);
}

Parsed<uint16_t> parse_port(std::string_view text) {
  if (text.empty()) return std::unexpected("a port number is missing");
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::unexpected(quote(text) + " is not a port number");
  }
  uint32_t value = 0;  // stays 0 for more than five digits, which are out of range as well
  if (text.size() <= 5) std::from_chars(text.data(), text.data() + text.size(), value);
  if (value == 0 || value > 65535) {
    return std::unexpected("port " + std::string(text) + " is out of range 1-65535");
  }
  return static_cast<uint16_t>(value);
}

Parsed<PortRange> parse_port_range(std::string_view text) {
  size_t dash = text.find('-', 1);  // from 1: "-1" is a bad port, not a range
  auto first = parse_port(text.substr(0, dash));
  if (!first) return std::unexpected(first.error());
  if (dash == std::string_view::npos) return PortRange{*first, 1};
  auto last = parse_port(text.substr(dash + 1));
  if (!last) return std::unexpected(last.error());
  if (*last < *first)
    return std::unexpected("port range " + quote(text) + " ends before it starts");
  return PortRange{*first, static_cast<uint16_t>(*last - *first + 1)};
}

Parsed<Protocol> parse_port_protocol(std::string_view text) {
  // Ports are TCP's, UDP's and SCTP's: ICMP is refused like any unknown name.
  auto protocol = parse_protocol(text);
  if (protocol && *protocol != Protocol::icmp) return *protocol;
  // No closest_match() here: with three short names it suggests "tcp" for "icmp".
  return std::unexpected("unknown protocol " + quote(text) + " (use tcp, udp or sctp)");
}

std::string render_publish(const Publish& p) {
  std::string ip = p.host_ip ? p.host_ip->str() + ":" : "";
  if (p.host_ip6) ip = "[" + p.host_ip6->str() + "]:";
  return ip + PortRange{p.host_port, p.count}.str() + ":" +
         PortRange{p.container_port, p.count}.str() + "/" + to_string(p.protocol);
}

Parsed<HostAddress> parse_host_address(std::string_view text) {
  bool bracketed = text.size() >= 2 && text.front() == '[' && text.back() == ']';
  std::string_view inner = bracketed ? text.substr(1, text.size() - 2) : text;
  if (!bracketed)
    if (auto v4 = Ipv4::parse(text)) return HostAddress{v4, std::nullopt};
  auto v6 = Ipv6::parse(inner);
  if (!v6) {
    bool v6ish = bracketed || text.find(':') != std::string_view::npos;
    return std::unexpected(quote(text) + " is not an IPv" + (v6ish ? "6" : "4") + " address");
  }
  // The kernel takes ::ffff:a.b.c.d for a.b.c.d: IPv4's publish would serve it.
  if (v6->is_v4_mapped())
    return std::unexpected(quote(text) + " is an IPv4-mapped address; write the IPv4 address");
  if (v6->is_multicast()) return std::unexpected(quote(text) + " is a multicast address");
  return HostAddress{std::nullopt, v6};
}

Parsed<Publish> make_publish(const HostAddress& host_ip, PortRange host, PortRange container,
                             Protocol protocol) {
  if (host.count != container.count) {
    return std::unexpected("host ports " + host.str() + " and container ports " + container.str() +
                           " must be ranges of the same length (" + std::to_string(host.count) +
                           " and " + std::to_string(container.count) + " ports)");
  }
  // SCTP's CRC32c covers the ports: moat would have to recompute it over the
  // whole packet for every rewrite, so it only moves SCTP to another address.
  if (protocol == Protocol::sctp && host.first != container.first) {
    return std::unexpected("SCTP ports cannot be changed (the SCTP checksum covers them): use " +
                           host.str() + ":" + host.str() + "/sctp");
  }
  // 0.0.0.0 stays: every host IPv4 address and no IPv6 one, as Docker's
  // `-p 0.0.0.0:P:C` and portmap's hostIP 0.0.0.0 publish.
  return Publish{host_ip.v4, host_ip.v6, host.first, container.first, host.count, protocol, ""};
}

Parsed<Publish> parse_publish(std::string_view text) {
  auto ports_protocol = split_protocol(text);
  if (!ports_protocol) return std::unexpected(ports_protocol.error());
  auto [ports, protocol] = *ports_protocol;
  // An IPv6 host address is bracketed, its colons are not separators.
  std::string_view host_text;
  if (ports.starts_with('[')) {
    size_t close = ports.find(']');
    if (close == std::string_view::npos || ports.substr(close + 1, 1) != ":")
      return std::unexpected("expected [IPv6]:host:container, e.g. \"[::1]:8080:80\"");
    host_text = ports.substr(0, close + 1);
    ports.remove_prefix(close + 2);
  }
  std::vector<std::string_view> parts = split(ports, ':');
  if (parts.size() == 1) {
    // Docker would pick a random host port; a policy needs to know it.
    return std::unexpected("the host port is missing; write host:container, e.g. \"8080:80\"");
  }
  if (parts.size() > 3 || (parts.size() == 3 && !host_text.empty())) {
    return std::unexpected(
        "expected [ip:]host:container[/protocol], e.g. \"127.0.0.1:8080:80\" or "
        "\"[::1]:8080:80\" (IPv6 addresses in brackets)");
  }
  if (parts.size() == 3) host_text = parts[0];
  HostAddress host_ip;
  if (!host_text.empty()) {
    auto parsed = parse_host_address(host_text);
    if (!parsed) return std::unexpected(parsed.error());
    if (parsed->v6 && !host_text.starts_with('['))
      return std::unexpected("write the IPv6 address " + quote(host_text) + " in brackets: \"[" +
                             std::string(host_text) + "]:...\"");
    host_ip = *parsed;
  }
  auto host = parse_port_range(parts[parts.size() - 2]);
  if (!host) return std::unexpected(host.error());
  auto container = parse_port_range(parts.back());
  if (!container) return std::unexpected(container.error());
  auto publish = make_publish(host_ip, *host, *container, protocol);
  if (publish) publish->text = std::string(text);
  return publish;
}

Parsed<Expose> parse_expose(std::string_view text) {
  auto port_protocol = split_protocol(text);
  if (!port_protocol) return std::unexpected(port_protocol.error());
  auto port = parse_port(port_protocol->first);
  if (!port) return std::unexpected(port.error());
  return Expose{*port, port_protocol->second};
}

std::optional<std::string> docker_name_problem(std::string_view name) {
  if (auto why = length_problem(name, kMaxNameLength)) return why;
  bool ok = is_alnum(name[0]) && std::all_of(name.begin(), name.end(), [](char c) {
              return is_alnum(c) || c == '_' || c == '.' || c == '-';
            });
  if (!ok) return "use letters, digits, '_', '.' and '-', starting with a letter or digit";
  return std::nullopt;
}

std::optional<std::string> dns_label_problem(std::string_view name) {
  return dns_problem(name, kMaxNameLength, false);
}

std::optional<std::string> dns_subdomain_problem(std::string_view name) {
  return dns_problem(name, kMaxSubdomainLength, true);
}

// The kernel's dev_valid_name().
std::optional<std::string> ifname_problem(std::string_view name) {
  if (auto why = length_problem(name, kMaxIfnameLength)) return why;
  bool ok = name != "." && name != ".." && std::none_of(name.begin(), name.end(), [](char c) {
              return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c));
            });
  if (!ok) return "it must not be \".\" or \"..\" nor contain '/', ':' or whitespace";
  return std::nullopt;
}

std::optional<std::string> special_subnet_problem(const Ipv4Prefix& subnet) {
  // RFC 6890's ranges that are never unicast hosts on a link of ours.
  static const struct {
    const char* prefix;
    const char* what;
  } kSpecial[] = {
      {"0.0.0.0/8", "\"this network\" (0.0.0.0/8)"},
      {"127.0.0.0/8", "loopback (127.0.0.0/8)"},
      {"224.0.0.0/4", "multicast (224.0.0.0/4)"},
      {"240.0.0.0/4", "reserved and broadcast (240.0.0.0/4)"},
  };
  for (const auto& s : kSpecial) {
    const Ipv4Prefix special = *Ipv4Prefix::parse(s.prefix);
    if (subnet.overlaps(special)) return std::string("it overlaps ") + s.what;
  }
  return std::nullopt;
}

std::optional<std::string> special_subnet_problem(const Ipv6Prefix& subnet) {
  // RFC 4291's addresses that are not a link's global or unique local unicast.
  static const struct {
    const char* prefix;
    const char* what;
  } kSpecial[] = {
      {"::/128", "the unspecified address (::/128)"},
      {"::1/128", "loopback (::1/128)"},
      {"::ffff:0:0/96", "IPv4-mapped addresses (::ffff:0:0/96)"},
      {"fe80::/10", "link-local addresses (fe80::/10)"},
      {"ff00::/8", "multicast (ff00::/8)"},
  };
  for (const auto& s : kSpecial) {
    const Ipv6Prefix special = *Ipv6Prefix::parse(s.prefix);
    if (subnet.overlaps(special)) return std::string("it overlaps ") + s.what;
  }
  return std::nullopt;
}

std::optional<std::string> host_address_problem(Ipv4 ip, const Ipv4Prefix& subnet) {
  if (!subnet.contains(ip)) return "is outside subnet " + subnet.str();
  if (ip == subnet.addr) return "is the network address of subnet " + subnet.str();
  if (ip == subnet.broadcast()) return "is the broadcast address of subnet " + subnet.str();
  return std::nullopt;
}

std::optional<std::string> host_address_problem(const Ipv6& ip, const Ipv6Prefix& subnet) {
  if (!subnet.contains(ip)) return "is outside subnet " + subnet.str();
  if (ip == subnet.addr) return "is the network address of subnet " + subnet.str();
  return std::nullopt;
}

std::pair<int64_t, int64_t> limit_range(std::string_view key) {
  if (key == "conntrack") return {1024, 16 << 20};
  if (key == "endpoints") return {16, 65536};
  return {64, 1 << 20};  // published_ports, socket_nat
}

Parsed<Limits> parse_limit_flags(const std::vector<std::string>& items) {
  Limits out;
  for (const std::string& item : items) {
    auto eq = item.find('=');
    std::string key = item.substr(0, eq);
    std::optional<uint32_t>* dst = nullptr;
    for (auto [name, field] : out.fields())
      if (key == name) dst = field;
    if (!dst || eq == std::string::npos)
      return std::unexpected("--limit " + item +
                             ": expected KEY=N with KEY one of conntrack, endpoints, "
                             "published_ports, socket_nat");
    auto [low, high] = limit_range(key);
    std::string digits = item.substr(eq + 1);
    int64_t n = -1;
    if (!digits.empty() && digits.size() <= 9 &&
        digits.find_first_not_of("0123456789") == std::string::npos)
      n = std::stoll(digits);
    if (n < low || n > high)
      return std::unexpected("--limit " + item + ": " + key + " must be a whole number from " +
                             std::to_string(low) + " to " + std::to_string(high));
    *dst = static_cast<uint32_t>(n);
  }
  return out;
}

}  // namespace moat
