// model_ip6.cpp - the model's IPv6 rules.
//
// From README ("IPv6" under Architecture), issue 16, the dual-stack rules
// of 98ff011 (networks with an IPv6 subnet and gateway, attachments with an
// IPv6 address) and the IPv6 data path of 19788f5 and fc26016 (policy and
// connection tracking over IPv6, the world open, NAT66 at the uplinks),
// stated from their design, not transcribed from the BPF sources. At a
// container's veth, after the MAC checks:
//  1. a fixed header cut short, a version other than 6, or a payload length
//     beyond the frame: invalid-packet;
//  2. from the container the source is its link-local address (modified
//     EUI-64 of its MAC), its IPv6 address on this attachment, or ::
//     (spoofed-source);
//  3. the extension-header chain: at most 8, hop-by-hop only first, one
//     fragment header, whole (ipv6-extension-headers); a later fragment
//     ends it;
//  4. ICMPv6 that is not a later fragment: 4 bytes of header or
//     invalid-packet. Link messages (MLD 130/131/132/143; RS, NS, NA
//     133/135/136 with hop limit 255 else invalid-packet; RA and redirect
//     134/137: from the container router-advertisement, to it hop limit 255
//     else invalid-packet; MLD from a source neither link-local nor ::
//     invalid-packet): one that would pass with a fragment header is
//     invalid-packet (RFC 6980); from the container, one sent from :: that
//     these checks drop is spoofed-source, and the ND claims hold (their
//     own reasons, from :: too; :: only for DAD,
//     RS and MLD reports; an NA's target is one of its own addresses;
//     link-layer address options carry its MAC; options whole); to the
//     container the link-peer rule decides;
//  5. everything else is data: from :: spoofed-source (from the
//     container); an attachment without an IPv6 address: ipv6-not-enabled;
//     not a later fragment: TCP needs 20 bytes, UDP/SCTP 8, ICMPv6 8 after
//     the extension headers, within the payload length (invalid-packet).
//     ICMPv6 echo's id is its "port" (request: source side, reply:
//     destination side); types 1-4 are errors. The peer (destination from
//     the container, source to it): link-local or multicast passes from the
//     container and goes by the link-peer rule to it; otherwise isolation
//     as IPv4's on the networks' IPv6 gateways and subnets, anything else
//     being the world (internal network: internal-network; else on).
//     Then, while a policy revision is in force, policy exactly as IPv4's
//     (policy_judge.h: IPv6 addresses of a container are that container,
//     IPv6 ipBlocks match IPv6 only, other addresses are the IPv6 world,
//     which ::/0 covers and 0.0.0.0/0 does not), the container's side
//     being its network IPv6 address whichever own address it used, a
//     link-local or multicast peer the IPv6 world. Connection tracking as
//     IPv4's, but only between the container's network IPv6 address and a
//     peer neither link-local nor multicast: a SYN, echo request, UDP or
//     other protocol admitted opens a flow, its packets either way pass
//     (re-judged under a new revision: policy-revoked); otherwise each
//     packet is judged alone. An ICMPv6 error to the container's network
//     address, or from it about a packet it received, travelling to the
//     quoted packet's source, whose quote (an IPv6 header, then TCP/UDP
//     ports or an echo id) is a packet of a tracked flow either way, is
//     related and passes; any other error is judged alone.
// Link-peer rule (to the container): it passes when the network has icc on,
// or the host itself sent it (ingress_ifindex 0); else icc-disabled.
// Uplinks (IPv6 as IPv4's, world_impl): a packet that cannot be read
// (payload length, extension headers, L4 header) drops only when it comes
// from (to_world) or goes to (from_world) a container subnet, else passes.
// Connection tracking there knows a routed flow both ways, a flow only a
// container's hook tracked in its first packet's direction only.
// from_world: a packet of a flow routed out passes; to a container subnet
// not-published; the rest passes. to_world: a routed flow's packets pass;
// from a container subnet: internal network internal-network, a later
// fragment nat-rewrite-failed when masquerading else passes, policy for a
// flow no container hook tracked, a packet that opens no flow no-flow when
// masquerading else passes untracked; a routed network's flow is tracked
// and passes; masquerade (NAT66) needs the uplink's IPv6 address, which
// the fuzzer's uplinks lack: ipv6-not-enabled.
// Left to the kernel (Either), not modelled: at an uplink, an ICMPv6
// error quoting the addresses of a tracked flow (whether it is related);
// a later fragment between a tracked flow's ends (its first fragment's
// ports); a world packet with the tuple of a flow only a container's hook
// tracked; IPv6 to a host address on a port when the file publishes over
// IPv6 (publish6, NAT66 of published ports); a header too short to read at
// an uplink.
#include <netinet/in.h>

#include <algorithm>
#include <array>

#include "model_internal.h"

namespace fuzz {
namespace {

using Addr6 = std::array<uint8_t, 16>;

bool is_mld(uint8_t type) { return type == 130 || type == 131 || type == 132 || type == 143; }
bool is_link_message(uint8_t type) { return is_mld(type) || (type >= 133 && type <= 137); }

// The container's link-local address: fe80::/64 with the modified EUI-64
// interface id of its MAC (RFC 4291 appendix A).
Addr6 link_local_of(const Mac& m) {
  return {0xfe, 0x80, 0,    0,    0,    0,    0,   0, uint8_t(m[0] ^ 2),
          m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]};
}

Addr6 addr_at(const Bytes& f, size_t off) {
  Addr6 a{};
  std::copy(f.begin() + long(off), f.begin() + long(off + 16), a.begin());
  return a;
}

bool link_local(const Addr6& a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }
bool multicast(const Addr6& a) { return a[0] == 0xff; }

// The upper layer of an IPv6 packet after its extension headers (README
// "IPv6"; RFC 8200 4): at most 8 of them, hop-by-hop only first, one
// fragment header; a later fragment ends the chain.
struct Ext6 {
  bool ok = false;
  uint8_t proto = 0;
  size_t l4 = 0;
  bool fragmented = false;
  bool later_fragment = false;
};

Ext6 walk6(const Bytes& f, uint8_t next) {
  auto is_ext = [](uint8_t n) { return n == 0 || n == 43 || n == 44 || n == 51 || n == 60; };
  Ext6 e;
  size_t off = 14 + 40;
  for (int i = 0; i < 8 && is_ext(next) && !e.later_fragment; ++i) {
    if (next == 0 && i > 0) return e;
    if (next == 44) {
      if (e.fragmented || f.size() < off + 8) return e;
      e.fragmented = true;
      e.later_fragment = (get16(f, off + 2) & 0xfff8) != 0;
      next = f[off];
      off += 8;
      continue;
    }
    if (f.size() < off + 2) return e;
    const size_t len = next == 51 ? (size_t(f[off + 1]) + 2) * 4 : (size_t(f[off + 1]) + 1) * 8;
    next = f[off];
    off += len;
  }
  if (is_ext(next) && !e.later_fragment) return e;
  e.ok = true;
  e.proto = next;
  e.l4 = off;
  return e;
}

// Link-layer address options of type `lla` in [off, end) carry `own`.
Verdict nd_options(const Bytes& f, size_t off, size_t end, uint8_t lla, const Mac& own) {
  for (int i = 0; i < 8 && off < end; ++i) {
    if (off + 8 > end || f[off + 1] == 0 || off + size_t(f[off + 1]) * 8 > end)
      return drop("invalid-packet", "ND option zero-length or past the message", true);
    if (f[off] == lla && (f[off + 1] != 1 || mac_at(f, off + 2) != own))
      return drop("spoofed-mac", "ND link-layer address option not the container's MAC", true);
    off += size_t(f[off + 1]) * 8;
  }
  if (off < end) return drop("invalid-packet", "more than 8 ND options", true);
  return pass_as_is(f, "neighbour discovery");
}

}  // namespace

Verdict Model::ipv6(const Ctx& c) {
  const Bytes& f = c.frame;
  if (f.size() < 14 + 40) return drop("invalid-packet", "IPv6 header cut short");
  if (f[14] >> 4 != 6) return drop("invalid-packet", "IP version is not 6");
  const size_t end = 14 + 40 + get16(f, 14 + 4);
  if (end > f.size()) return drop("invalid-packet", "payload length beyond the frame");
  const bool from = c.hook == Hook::FromContainer;
  const Addr6 src = addr_at(f, 14 + 8);
  const bool unspecified = src == Addr6{};
  const bool own = src == link_local_of(c.att->mac) || (c.att->ip6 && src == *c.att->ip6);
  if (from && !unspecified && !own)
    return drop("spoofed-source",
                "IPv6 source neither its link-local address, its own IPv6 nor ::", true);
  const Ext6 x = walk6(f, f[14 + 6]);
  if (!x.ok || x.l4 > end)
    return drop("ipv6-extension-headers", "extension headers cut, malformed or more than 8", true);
  if (x.proto == IPPROTO_ICMPV6 && !x.later_fragment) {
    if (x.l4 + 4 > end) return drop("invalid-packet", "ICMPv6 header cut short");
    const uint8_t type = f[x.l4];
    if (is_link_message(type)) {
      return link_message(c, type, x.l4, end, x.fragmented);
    }
  }
  return data6(c, x.proto, x.l4, end, x.later_fragment);
}

std::optional<Verdict> Model::link_peer(const Ctx& c) const {
  if (topo_.nets[c.att->net].icc) return std::nullopt;
  if (c.ingress_ifindex == 0) return std::nullopt;
  return drop("icc-disabled",
              "a link peer (not the host) reaching a container of an icc-off network", true);
}

Verdict Model::link_message(const Ctx& c, uint8_t type, size_t l4, size_t end, bool fragmented) {
  const Bytes& f = c.frame;
  const bool from = c.hook == Hook::FromContainer;
  const uint8_t hop_limit = f[14 + 7];
  // A message that fails these checks from :: is a spoofed one first; what
  // the ND claims then find keeps its own reason (a foreign MAC, a
  // malformed option).
  const bool unspecified = addr_at(f, 14 + 8) == Addr6{};
  const auto refuse = [&](Verdict v) {
    if (!from || !unspecified) return v;
    return drop("spoofed-source", "a link message from :: that is dropped: " + v.rule, true);
  };
  if ((type == 133 || type == 135 || type == 136) && hop_limit != 255)
    return refuse(drop("invalid-packet", "RS/NS/NA with hop limit != 255"));
  // MLD comes from a link-local source (or :: for reports): routers do not
  // forward those, so one from any other address crossed networks.
  const Addr6 src = addr_at(f, 14 + 8);
  const bool link_local_src = src[0] == 0xfe && (src[1] & 0xc0) == 0x80;
  if (is_mld(type) && !link_local_src && !unspecified)
    return drop("invalid-packet", "MLD from a source neither link-local nor ::", true);
  if (type == 134 || type == 137) {
    if (from) return refuse(drop("router-advertisement", "RA or redirect from a container"));
    if (hop_limit != 255) return drop("invalid-packet", "RA/redirect with hop limit != 255");
  }
  if (fragmented)
    return refuse(
        drop("invalid-packet", "a link message with a fragment header (RFC 6980)", true));
  if (from) return nd_claims(c, type, l4, end);
  if (auto v = link_peer(c)) {
    v->rule = "link message: " + v->rule;
    return *v;
  }
  return pass_as_is(f,
                    is_mld(type) ? "MLD to the container" : "neighbour discovery to the container");
}

Verdict Model::nd_claims(const Ctx& c, uint8_t type, size_t l4, size_t end) {
  const Bytes& f = c.frame;
  const bool unspecified = addr_at(f, 14 + 8) == Addr6{};
  if (l4 + 8 > end) return either("ND/MLD message shorter than 8 bytes");
  switch (type) {
    case 133:
      return nd_options(f, l4 + 8, end, 1, c.att->mac);
    case 135:
      return nd_options(f, l4 + 24, end, 1, c.att->mac);
    case 136:
      if (unspecified) return drop("spoofed-source", "NA from ::", true);
      if (l4 + 24 > end) return drop("invalid-packet", "NA target cut short", true);
      // Its own addresses: the link-local one, and on a dual-stack network
      // its IPv6 address, which neighbours must be able to resolve.
      if (addr_at(f, l4 + 8) != link_local_of(c.att->mac) &&
          !(c.att->ip6 && addr_at(f, l4 + 8) == *c.att->ip6))
        return drop("spoofed-source", "NA for an address not the container's own", true);
      return nd_options(f, l4 + 24, end, 2, c.att->mac);
    case 131:
    case 132:
    case 143:
      if (f[14 + 7] != 1) return either("MLD report with hop limit != 1");
      return pass_as_is(f, "MLD report");
    default:  // 130, a query
      if (unspecified) return drop("spoofed-source", "MLD query from ::", true);
      return pass_as_is(f, "MLD query");
  }
}

namespace {

struct L46 {
  Tuple6 t;
  bool ports_known = false;  // TCP/UDP/SCTP ports or an echo id read
  bool opens = false;        // TCP SYN alone, echo request, any other protocol
  bool icmp_error = false;   // ICMPv6 types 1-4
  uint8_t tcp_flags = 0;
  uint32_t tcp_seq = 0;
};

// The L4 view of connection tracking: nullopt when the header the protocol
// promises is cut short (a later fragment has none to read).
std::optional<L46> parse_l46(const Bytes& f, uint8_t proto, size_t l4, size_t end, bool later) {
  L46 p;
  p.t.saddr = addr_at(f, 14 + 8);
  p.t.daddr = addr_at(f, 14 + 24);
  p.t.proto = proto;
  p.opens = proto != IPPROTO_TCP && proto != IPPROTO_ICMPV6;
  if (later) return p;
  switch (proto) {
    case IPPROTO_TCP:
    case IPPROTO_UDP:
    case IPPROTO_SCTP:
      if (l4 + (proto == IPPROTO_TCP ? 20 : 8) > end) return std::nullopt;
      p.t.sport = get16(f, l4);
      p.t.dport = get16(f, l4 + 2);
      p.ports_known = true;
      if (proto == IPPROTO_TCP) {
        p.tcp_flags = f[l4 + 13];
        p.tcp_seq = get32(f, l4 + 4);
        p.opens = (p.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn;
      }
      break;
    case IPPROTO_ICMPV6: {
      if (l4 + 8 > end) return std::nullopt;
      const uint8_t type = f[l4];
      if (type == 128) p.t.sport = get16(f, l4 + 4);
      if (type == 129) p.t.dport = get16(f, l4 + 4);
      p.ports_known = type == 128 || type == 129;
      p.opens = type == 128;
      p.icmp_error = type >= 1 && type <= 4;
      break;
    }
    default:
      break;
  }
  return p;
}

uint16_t policy_port6(const Tuple6& t) { return has_ports(t.proto) ? t.dport : 0; }

// The packet an ICMPv6 error at `l4` quotes, as connection tracking keys
// it: an IPv6 header right after the error's 8 bytes (no extension
// headers), TCP or UDP ports or an echo id; nullopt for anything else.
std::optional<Tuple6> quoted6(const Bytes& f, size_t l4) {
  const size_t in3 = l4 + 8, in4 = in3 + 40;
  if (f.size() < in4 + 6 || f[in3] >> 4 != 6) return std::nullopt;
  Tuple6 q;
  q.saddr = addr_at(f, in3 + 8);
  q.daddr = addr_at(f, in3 + 24);
  q.proto = f[in3 + 6];
  if (q.proto == IPPROTO_TCP || q.proto == IPPROTO_UDP) {
    q.sport = get16(f, in4);
    q.dport = get16(f, in4 + 2);
  } else if (q.proto == IPPROTO_ICMPV6 && f[in4] == 128) {
    q.sport = get16(f, in4 + 4);
  } else if (q.proto == IPPROTO_ICMPV6 && f[in4] == 129) {
    q.dport = get16(f, in4 + 4);
  } else {
    return std::nullopt;
  }
  return q;
}

}  // namespace

std::optional<size_t> Model::find6(const Tuple6& t) const {
  for (size_t i = 0; i < st_.flows6.size(); i++)
    if (st_.flows6[i].t == t || st_.flows6[i].t == t.reversed()) return i;
  return std::nullopt;
}

// A packet of TCP flow `i` past its close's hold (flows.h): either.
std::optional<Verdict> Model::closed6(size_t i, const Tuple6& t, uint8_t tcp_flags,
                                      uint32_t tcp_seq) {
  if (t.proto != IPPROTO_TCP) return std::nullopt;
  Flow6& fl = st_.flows6[i];
  if (fl.close.past_hold())
    return either("IPv6: a packet of a TCP flow closed longer ago than its hold: ended or not");
  if (!(fl.t == t) && fl.close.closed_ns >= 0 &&
      (tcp_flags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn)
    return either("IPv6: a SYN the reply way on a TCP flow maybe closed: refused in its hold");
  fl.close.see(tcp_flags, !(fl.t == t), tcp_seq);
  return std::nullopt;
}

bool Model::pair_has_flow6(const Ip6Addr& a, const Ip6Addr& b) const {
  for (const auto& fl : st_.flows6)
    if ((fl.t.saddr == a && fl.t.daddr == b) || (fl.t.saddr == b && fl.t.daddr == a)) return true;
  return false;
}

// A container's IPv6 address on any network is that container; anything
// else is the host (a gateway) or the IPv6 world, by address.
Side Model::side6(const Ip6Addr& a) const {
  Side s;
  s.ip6 = a;
  for (const auto& att : topo_.atts)
    if (att.ip6 && *att.ip6 == a) s.container = att.container;
  return s;
}

std::optional<Verdict> Model::policy6(const Side& from, const Side& to, uint8_t proto,
                                      uint16_t port, bool ports_known) const {
  const PolicyJudge j = judge();
  if (!j.active()) return std::nullopt;
  if (ports_known || !has_ports(proto)) {
    const PolicyDecision d = j.judge(from, to, proto, port);
    if (d.allowed) return std::nullopt;
    return drop(d.reason, "IPv6: " + d.why, true);
  }
  bool allow = false, deny = false;
  PolicyDecision denied;
  for (uint16_t q : j.telling_ports()) {
    const PolicyDecision d = j.judge(from, to, proto, q);
    (d.allowed ? allow : deny) = true;
    if (!d.allowed) denied = d;
  }
  if (!deny) return std::nullopt;
  if (allow)
    return either("IPv6: a later fragment without its ports, and the policy depends on them");
  return drop(denied.reason, "IPv6, for every port: " + denied.why, true);
}

// A tracked IPv6 flow met under another revision than the one that admitted it.
std::optional<Verdict> Model::rejudge6(size_t i) {
  Flow6& fl = st_.flows6[i];
  if (st_.rev == 0 || fl.rev == st_.rev) return std::nullopt;
  const PolicyDecision d =
      judge().judge(side6(fl.t.saddr), side6(fl.t.daddr), fl.t.proto, policy_port6(fl.t));
  if (d.allowed) {
    fl.rev = st_.rev;
    return std::nullopt;
  }
  st_.flows6.erase(st_.flows6.begin() + long(i));
  return drop("policy-revoked", "IPv6: the new revision no longer allows it: " + d.why, true);
}

Verdict Model::data6(const Ctx& c, uint8_t proto, size_t l4, size_t end, bool later) {
  const Bytes& f = c.frame;
  const bool from = c.hook == Hook::FromContainer;
  if (from && addr_at(f, 14 + 8) == Addr6{})
    return drop("spoofed-source", "IPv6 data from ::", true);
  if (!c.att->ip6) return drop("ipv6-not-enabled", "IPv6 data, the attachment has no IPv6 address");
  const auto p = parse_l46(f, proto, l4, end, later);
  if (!p) return drop("invalid-packet", "IPv6: the TCP/UDP/SCTP/ICMPv6 header cut short", true);
  const Addr6 own = from ? p->t.saddr : p->t.daddr;
  const Addr6 peer = from ? p->t.daddr : p->t.saddr;
  const bool link_scope = link_local(peer) || multicast(peer);
  const bool mine = own == *c.att->ip6;
  const bool tracked = mine && !link_scope;
  if (p->icmp_error && mine)
    if (const auto q = quoted6(f, l4)) {
      // Related: it travels to the quoted source, from the container only
      // about what it received, and the quote is a packet of a tracked
      // flow (either way). It is part of that flow: no policy of its own.
      const bool to_source = p->t.daddr == q->saddr;
      const bool about_received = !from || p->t.saddr == q->daddr;
      if (to_source && about_received && find6(*q))
        return pass_as_is(f, "an ICMPv6 error related to a tracked flow");
    }
  if (tracked && later && st_.rev != 0 && pair_has_flow6(own, peer))
    return either("a later fragment between the ends of a tracked flow: its first's ports");
  if (tracked && !later && !p->icmp_error)
    if (auto i = find6(p->t)) {
      if (auto v = closed6(*i, p->t, p->tcp_flags, p->tcp_seq)) return *v;
      if (auto v = rejudge6(*i)) return *v;
      return pass_as_is(f, "IPv6: a packet of a tracked flow");
    }
  std::string rule;
  if (link_scope) {
    if (!from)
      if (auto v = link_peer(c)) {
        v->rule = "IPv6 data from a link-local/multicast source: " + v->rule;
        return *v;
      }
    rule = "IPv6 data with a link-local or multicast peer";
  } else {
    const NetInfo& net = topo_.nets[c.att->net];
    const AddrClass k = topo_.classify6(peer);
    switch (k.kind) {
      case AddrKind::Gateway:
        if (net.internal && k.net != c.att->net)
          return drop("internal-network",
                      "IPv6: an internal network's container and another gateway", true);
        rule = "IPv6 data with a gateway";
        break;
      case AddrKind::Subnet:
        if (k.net != c.att->net)
          return drop("network-isolation", "IPv6 peer in another network's subnet", true);
        if (!net.icc) return drop("icc-disabled", "IPv6 peer in the own subnet, icc off", true);
        rule = "IPv6 data within the network";
        break;
      case AddrKind::Host:
      case AddrKind::World:
        if (net.internal)
          return drop("internal-network", "IPv6: an internal network's container and beyond", true);
        rule = "IPv6 data with the world";
        break;
    }
  }
  if (st_.rev == 0) return pass_as_is(f, rule + "; no policy");
  // Policy sees the container by its network address whatever own address
  // it used, and a link peer as the IPv6 world.
  Side self{c.att->container, 0, *c.att->ip6};
  Side other = link_scope ? Side{std::nullopt, 0, peer} : side6(peer);
  if (auto v = from ? policy6(self, other, proto, policy_port6(p->t), p->ports_known || !later)
                    : policy6(other, self, proto, policy_port6(p->t), p->ports_known || !later))
    return *v;
  if (tracked && !later && !p->icmp_error && p->opens)
    st_.flows6.push_back(Flow6{p->t, st_.rev, false, {}});
  return pass_as_is(f, rule + "; policy allows it");
}

Verdict Model::ipv6_uplink(const Ctx& c) {
  const Bytes& f = c.frame;
  if (f.size() < 14 + 40 || f[14] >> 4 != 6) return either("malformed IPv6 header at an uplink");
  const bool in = c.hook == Hook::FromWorld;
  const Addr6 inside = addr_at(f, in ? 14 + 24 : 14 + 8);
  const AddrClass k = topo_.classify6(inside);
  // Unreadable: the host's business unless it comes from or goes to a container network.
  const auto unreadable = [&](const char* reason, const char* rule) {
    if (k.kind == AddrKind::Subnet) return drop(reason, rule, true);
    return pass_as_is(f, std::string(rule) + ", not a container network's: the host's business");
  };
  const size_t end = 14 + 40 + get16(f, 14 + 4);
  if (end > f.size()) return unreadable("invalid-packet", "IPv6 payload length beyond the frame");
  const Ext6 x = walk6(f, f[14 + 6]);
  if (!x.ok || x.l4 > end)
    return unreadable("ipv6-extension-headers", "IPv6 extension headers cut or malformed");
  const auto p = parse_l46(f, x.proto, x.l4, end, x.later_fragment);
  if (!p) return unreadable("invalid-packet", "IPv6 L4 header cut short");
  if (p->icmp_error && f.size() >= x.l4 + 8 + 40 &&
      pair_has_flow6(addr_at(f, x.l4 + 8 + 8), addr_at(f, x.l4 + 8 + 24)))
    return either("an ICMPv6 error quoting the addresses of a tracked flow, at an uplink");
  if (x.later_fragment && pair_has_flow6(p->t.saddr, p->t.daddr))
    return either("a later fragment between the ends of a tracked flow, at an uplink");
  // A routed flow is known here both ways; one only a container's hook
  // tracked, as it was first seen.
  const std::optional<size_t> found = [&]() -> std::optional<size_t> {
    if (x.later_fragment || p->icmp_error) return std::nullopt;
    const auto i = find6(p->t);
    if (i && !st_.flows6[*i].left && !(st_.flows6[*i].t == p->t)) return std::nullopt;
    return i;
  }();
  if (found)
    if (auto v = closed6(*found, p->t, p->tcp_flags, p->tcp_seq)) return *v;
  if (in) {
    if (found) {
      if (!st_.flows6[*found].left)
        return either("from the world, the tuple of a flow a container's hook tracked");
      if (auto v = rejudge6(*found)) return *v;
      return pass_as_is(f, "IPv6 from the world, a routed flow's packet");
    }
    if (k.kind == AddrKind::Subnet)
      return drop("not-published", "IPv6 from the world to a container network's subnet", true);
    if (k.kind == AddrKind::Gateway && p->ports_known && has_ports(x.proto) &&
        published6(p->t.dport, x.proto))
      return either("IPv6 to the host on a port: published ports over IPv6 (publish6) unmodelled");
    return pass_as_is(f, "IPv6 from the world to the host or beyond");
  }
  if (k.kind != AddrKind::Subnet) return pass_as_is(f, "IPv6 towards the world: the host's own");
  const NetInfo& net = topo_.nets[k.net];
  bool tracked = false;
  if (found) {
    if (st_.flows6[*found].left) {
      if (auto v = rejudge6(*found)) return *v;
      return pass_as_is(f, "IPv6: a routed flow's packet");
    }
    tracked = true;
  }
  if (net.internal)
    return drop("internal-network", "IPv6: an internal network's container towards the world",
                true);
  if (x.later_fragment)
    return net.masquerade ? drop("nat-rewrite-failed",
                                 "IPv6: a later fragment whose first was never seen", true)
                          : pass_as_is(f, "IPv6: a later fragment, routed untracked");
  if (!tracked && st_.rev != 0)
    if (auto v =
            policy6(side6(p->t.saddr), side6(p->t.daddr), p->t.proto, policy_port6(p->t), true))
      return *v;
  if (!tracked && !p->opens)
    return net.masquerade
               ? drop("no-flow", "IPv6: a packet of no flow would need masquerading", true)
               : pass_as_is(f, "IPv6: a packet of no flow, routed untracked");
  if (net.masquerade)
    return drop("ipv6-not-enabled", "IPv6 masquerade behind an uplink without an IPv6 address",
                true);
  if (found)
    st_.flows6[*found].left = true;
  else
    st_.flows6.push_back(Flow6{p->t, st_.rev, true, {}});
  return pass_as_is(f, "IPv6 routed with its own address, tracked");
}

// Whether some publish6 entry may take `port`/`proto` (IPv6 publishes are
// not modelled: what they do is left to the kernel).
bool Model::published6(uint16_t port, uint8_t proto) const {
  for (const auto& ct : topo_.cfg.containers)
    for (const auto& pub : ct.publish)
      if (pub.on_ipv6() && moat::ip_protocol_number(pub.protocol) == proto &&
          port >= pub.host_port && port < pub.host_port + pub.count)
        return true;
  return false;
}

}  // namespace fuzz
