// proto.cpp - see proto.h.
#include "util/proto.h"

#include <netinet/in.h>

#include <algorithm>
#include <iterator>

#include "util/text.h"

namespace moat {
namespace {

static_assert(ip_protocol_number(Protocol::icmp) == IPPROTO_ICMP);
static_assert(ip_protocol_number(Protocol::tcp) == IPPROTO_TCP);
static_assert(ip_protocol_number(Protocol::udp) == IPPROTO_UDP);
static_assert(ip_protocol_number(Protocol::sctp) == IPPROTO_SCTP);

struct Name {
  Protocol protocol;
  std::string_view name;
};
constexpr Name kNames[] = {{Protocol::tcp, "tcp"},
                           {Protocol::udp, "udp"},
                           {Protocol::sctp, "sctp"},
                           {Protocol::icmp, "icmp"}};

const Name* find(Protocol p) {
  auto it = std::find_if(std::begin(kNames), std::end(kNames),
                         [p](const Name& n) { return n.protocol == p; });
  return it == std::end(kNames) ? nullptr : it;
}

}  // namespace

std::string to_string(Protocol p) {
  const Name* n = find(p);
  return n ? std::string(n->name) : std::to_string(ip_protocol_number(p));
}

std::string to_string_upper(Protocol p) { return upper(to_string(p)); }

std::optional<Protocol> parse_protocol(std::string_view text, bool any_case) {
  const std::string folded = any_case ? lower(text) : std::string(text);
  for (const Name& n : kNames) {
    if (folded == n.name) return n.protocol;
  }
  return std::nullopt;
}

std::string proto_name(uint8_t ipproto) {
  if (ipproto == 0) return "";
  // Not a Protocol rules name (policies say ICMP for both families).
  if (ipproto == IPPROTO_ICMPV6) return "icmpv6";
  return to_string(static_cast<Protocol>(ipproto));
}

}  // namespace moat
