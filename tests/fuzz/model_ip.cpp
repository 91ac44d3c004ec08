// model_ip.cpp - the model's IPv4 rules.
//
// From README (Architecture, Published ports and masquerade, Policies) and
// issue 13:
//  - A broken header (version, ihl, lengths, the TCP/UDP/ICMP header of a
//    first fragment cut short) is invalid-packet at container hooks.
//  - from_container: the source must be the container's own address.
//  - Isolation, judged on the peer (from_container: the destination,
//    to_container: the source): another network's subnet is
//    network-isolation; the own network's subnet needs icc; gateways and
//    uplink addresses are the host; an internal network reaches nothing
//    beyond its own subnet and gateway.
//  - Connection tracking: a flow is known by any of its tuples either way;
//    known flows pass isolation and policy (replies, later packets); ICMP
//    errors (3, 11, 12) are RELATED when they quote a tracked flow, go to
//    the quoted packet's source and, sent by a container (at its veth), come
//    from the quoted packet's destination; anything
//    else is judged as a new packet. A translated flow's tuples exist on
//    one side of the rewrite only: a packet (or quote) with the inside tuple
//    at an outside hook is no packet of the flow (flows.h, arrives()).
//    New (item 2): TCP flows are created only by a SYN without ACK, RST,
//    FIN; another segment without a flow is judged on its own and passes
//    untracked, or drops (no-flow) where it would need translation.
//    A FIN each way or a RST closes a TCP flow, which is forgotten a hold
//    later (1 s, not extended by its packets; one FIN is a half-close and
//    keeps it): past that, its packets are either (flows.h, TcpClose).
//  - Policy (only while one exists, revision != 0): a new packet is judged
//    for both ends at the first hook that meets it, admitted flows are
//    tracked; a new revision re-judges a flow at its next packet and cuts
//    it if no longer allowed (policy-revoked). The receiving container's
//    ingress is judged for what is delivered to it: a broadcast or
//    multicast tracked from the sender's side is judged again (isolation
//    and ingress policy) at each receiver.
//  - Published ports: a TCP/UDP/SCTP packet to a host address (gateway,
//    uplink) and a published host port (an address-bound entry before the
//    wildcard) is rewritten to the container (its address on the client's
//    network if it has one, else on its first non-internal network), at
//    from_world or at the dialling container's veth; its own published
//    port sends a container back to itself with the dialled address as
//    source (hairpin, redirected). Policy: the backend's ingress with the
//    real client as peer. Replies are rewritten back where the flow began.
//  - from_world: a container address is not-published unless the packet
//    answers a flow its container began that left by an uplink; the host's
//    other traffic passes.
//  - to_world: an internal network's container never leaves; a
//    masquerading network's new flow leaves behind the uplink's address and
//    a port in MOAT_NAT_PORT_MIN-MAX (echo id likewise; SCTP keeps its port; other
//    protocols only the address; no tuple left: nat-port-exhausted; a later
//    fragment whose first was never seen cannot be: nat-rewrite-failed);
//    other networks are routed as they are, and tracked so the reply comes
//    back. The host's own traffic passes.
#include <netinet/in.h>

#include "model_internal.h"

namespace fuzz {
namespace {

bool options_ok(const Bytes& f, const Ip4& ip) {
  for (size_t o = ip.off + 20; o < ip.off + ip.hlen;) {
    const uint8_t type = f[o];
    if (type == 0) break;
    if (type == 1) {
      o++;
      continue;
    }
    // Source routes: hosts do not accept them (accept_source_route 0).
    if (type == 131 || type == 137) return false;
    if (o + 1 >= ip.off + ip.hlen || f[o + 1] < 2 || o + f[o + 1] > ip.off + ip.hlen) return false;
    o += f[o + 1];
  }
  return true;
}

// The receiving IP stack's own checks, which drop the frame whatever moat does.
bool stack_drops(const Bytes& f, const Ip4& ip) {
  if (!ip_header_checksum_ok(f, ip.off, ip.hlen) || ip.tot_len > ip.avail) return true;
  if (!options_ok(f, ip)) return true;
  if ((ip.src >> 24) == 127 || ip.src >= 0xe0000000u) return true;  // martian source
  if ((ip.dst >> 24) == 127 || (ip.dst >> 24) == 0) return true;    // martian destination
  if (ip.later_fragment()) return false;
  const size_t len = size_t(ip.tot_len) - ip.hlen, o = ip.l4_off();
  switch (ip.proto) {
    case IPPROTO_TCP:
      if (len < 20 || (f[o + 12] >> 4) < 5 || size_t(f[o + 12] >> 4) * 4 > len) return true;
      break;
    case IPPROTO_UDP:
      if (len < 8 || get16(f, o + 4) < 8 || get16(f, o + 4) > len) return true;
      break;
    case IPPROTO_ICMP:
      if (len < 8) return true;
      break;
  }
  if (ip.fragment()) return false;
  const std::string bad = checksum_errors(f);
  return bad.find("TCP") != std::string::npos || bad.find("UDP") != std::string::npos ||
         bad.find("ICMP checksum") != std::string::npos;
}

bool needs_l4(uint8_t proto) {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_ICMP;
}

// README: only an echo request opens an ICMP flow. A reply or an error
// answers something (else an unsolicited reply would open the way back), and
// the other messages have no identifier to tell their flows apart.
bool icmp_opens(uint8_t type) { return type == 8; }

bool trackable(uint8_t proto, bool opening, uint8_t icmp_type, bool later_fragment) {
  if (later_fragment) return false;
  if (proto == IPPROTO_TCP) return opening;
  if (proto == IPPROTO_ICMP) return icmp_opens(icmp_type);
  return true;
}

uint16_t policy_port(const Tuple& t) { return has_ports(t.proto) ? t.dport : 0; }

Verdict passed(const Bytes& out, bool rewritten, bool redirect, std::string rule) {
  Verdict v;
  v.kind = redirect ? Verdict::Kind::Redirect : Verdict::Kind::Pass;
  v.out = out;
  v.rewritten = rewritten;
  v.rule = std::move(rule);
  if (redirect) swap_macs(v.out);
  return v;
}

}  // namespace

Side Model::side_of(uint32_t ip) const { return Side{topo_.container_of(ip), ip}; }

Verdict Model::ipv4(const Ctx& c) {
  Pkt p;
  p.ip = parse_ip4(c.frame, 14);
  if (!p.ip.header_ok)
    return c.uplink ? either("malformed IPv4 header at an uplink")
                    : drop("invalid-packet", "malformed IPv4 header");
  const bool later = p.ip.later_fragment();
  p.l4 = parse_l4(c.frame, p.ip);
  if (!later && !p.l4.complete && needs_l4(p.ip.proto))
    return c.uplink ? either("L4 header cut short at an uplink")
                    : drop("invalid-packet", "TCP/UDP/ICMP header cut short");
  if (!later && p.ip.proto == IPPROTO_SCTP && p.ip.l4_avail() < 4)
    return either("SCTP ports cut short");
  p.moot = stack_drops(c.frame, p.ip);
  // Not for this container, or claiming to come from its own address: its stack drops it.
  if (c.hook == Hook::ToContainer &&
      ((p.ip.dst != c.att->ip && !topo_.is_broadcast_for(*c.att, p.ip.dst)) ||
       p.ip.src == c.att->ip))
    p.moot = true;
  if (c.hook == Hook::FromContainer && p.ip.src != c.att->ip) {
    Verdict v = drop("spoofed-source", "IPv4 source is not the container's address");
    v.moot = p.moot;
    return v;
  }
  const auto key = std::tuple{p.ip.src, p.ip.dst, p.ip.id, p.ip.proto};
  if (!later) {
    p.t = tuple_of(p.ip, p.l4);
    p.opening = (p.l4.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst | kTcpFin)) == kTcpSyn;
  } else if (auto it = st_.frags.find(key); it != st_.frags.end()) {
    if (!it->second.second) return either("later fragment of a first fragment that was dropped");
    p.t = it->second.first;
  } else {
    p.t = Tuple{p.ip.src, p.ip.dst, 0, 0, p.ip.proto};
    p.ports_known = !has_ports(p.ip.proto) && p.ip.proto != IPPROTO_ICMP;
  }
  Verdict v = ipv4_checked(c, p);
  v.moot = v.moot || p.moot;
  if (!later && p.ip.more_fragments()) st_.frags[key] = {p.t, v.passes()};
  return v;
}

Verdict Model::ipv4_checked(const Ctx& c, Pkt& p) {
  const bool later = p.ip.later_fragment();
  // An error belongs to a flow through what it quotes, never through its own
  // addresses (which an identifier-less ICMP flow between the same ends shares).
  if (!later && p.ip.proto == IPPROTO_ICMP && is_icmp_error(p.l4.icmp_type)) {
    if (auto v = icmp_error(c, p)) return *v;
    return fresh(c, p);
  }
  if (p.ports_known)
    if (auto m = st_.flows.find_at(p.t, c.hook)) return known(c, p, *m);
  return fresh(c, p);
}

std::optional<Verdict> Model::icmp_error(const Ctx& c, const Pkt& p) {
  const Ip4 q = parse_ip4(c.frame, p.ip.l4_off() + 8);
  if (!q.header_ok) return std::nullopt;
  const L4 ql = parse_l4(c.frame, q);
  if (has_ports(q.proto) && q.l4_avail() < 4) return std::nullopt;
  if (q.proto == IPPROTO_ICMP && (q.l4_avail() < 6 || is_icmp_error(ql.icmp_type)))
    return std::nullopt;
  const Tuple qt = tuple_of(q, ql);
  if (p.ip.dst != qt.saddr) return std::nullopt;
  // Sent by a container (at its own veth), it can only report about a
  // packet that container received.
  const bool from_container = c.hook == Hook::FromContainer;
  if (from_container && p.ip.src != qt.daddr) return std::nullopt;
  const Tuple travel = qt.reversed();
  const auto m = st_.flows.find_at(travel, c.hook);
  if (!m) return std::nullopt;
  // A quoted later fragment carries no ports, only bytes where they would
  // be: whether those tie it to the flow, README leaves open.
  if (c.hook == Hook::FromWorld && topo_.classify(p.ip.dst).kind == AddrKind::Subnet &&
      !st_.flows.at(m->index).via_uplink)
    return std::nullopt;  // the world answers only what left by an uplink
  if (q.later_fragment() && !c.kernel_out)
    return either("an error quoting a later fragment, its \"ports\" matching a flow");
  if (auto v = rejudge(c, *m, true)) return v;
  const auto rw = st_.flows.rewrite(*m, travel, c.hook, c.ifindex);
  if (!rw) return pass_as_is(c.frame, "ICMP error related to a tracked flow");
  return passed(rewrite_icmp_error(c.frame, qt, rw->to.reversed()), true, rw->redirect,
                "ICMP error related to a translated flow, translated with it");
}

std::optional<Verdict> Model::rejudge(const Ctx& c, const FlowMatch& m, bool related) {
  Flow& f = st_.flows.at(m.index);
  if (st_.rev == 0 || f.rev == st_.rev) return std::nullopt;
  const PolicyJudge j = judge();
  const Tuple& t = f.t1;
  const Side client = side_of(f.t0.saddr), server = side_of(t.daddr);
  PolicyDecision d = j.judge(client, server, t.proto, policy_port(t));
  if (f.dnat == Dnat::Container || f.dnat == Dnat::Hairpin) {
    const bool via_host = j.egress(client, side_of(f.t0.daddr), t.proto, policy_port(t)).allowed &&
                          j.ingress(client, server, t.proto, policy_port(t)).allowed;
    // README leaves open whether that egress peer is the dialled host or the
    // backend; the kernel's answer settles it for this flow.
    if (via_host != d.allowed) d.allowed = c.kernel_out != nullptr;
  }
  if (d.allowed) {
    f.rev = st_.rev;
    return std::nullopt;
  }
  if (related) return either("an ICMP error of a flow the new revision no longer allows");
  st_.flows.erase(m.index);
  return drop("policy-revoked", "the new revision no longer allows it: " + d.why, d.ipblock_rule);
}

Verdict Model::known(const Ctx& c, const Pkt& p, const FlowMatch& m) {
  if (p.t.proto == IPPROTO_TCP && !p.ip.later_fragment()) {
    TcpClose& close = st_.flows.at(m.index).close;
    if (close.past_hold())
      return either("a packet of a TCP flow closed longer ago than its hold: ended or not");
    if (m.reply && p.opening && close.closed_ns >= 0)
      return either("a SYN the reply way on a TCP flow maybe closed: refused in its hold");
    close.see(p.l4.tcp_flags, m.reply, p.l4.tcp_seq);
  }
  if (auto v = rejudge(c, m, false)) return *v;
  const Flow& f = st_.flows.at(m.index);
  const AddrClass src = topo_.classify(p.t.saddr);
  if (c.hook == Hook::FromWorld && topo_.classify(p.t.daddr).kind == AddrKind::Subnet &&
      !(m.reply && f.via_uplink))
    return drop("not-published",
                "from the world to a container address, answering nothing it sent out");
  if (c.hook == Hook::ToWorld && src.kind == AddrKind::Subnet) {
    if (topo_.nets[src.net].internal)
      return drop("internal-network", "an internal network's container towards the world");
    if (!m.reply && f.dnat == Dnat::None && !f.snat && p.t == f.t1 &&
        topo_.nets[src.net].masquerade)
      return masquerade(c, p, m.index);
  }
  if (c.hook == Hook::ToWorld) st_.flows.at(m.index).via_uplink = true;
  if (c.hook == Hook::ToContainer && !m.reply && p.ip.dst != c.att->ip &&
      topo_.is_broadcast_for(*c.att, p.ip.dst)) {
    // The sender's hook judged a broadcast address; each receiver is a peer of its own.
    if (auto v = isolation(*c.att, p.t.saddr)) {
      v->rule = "a tracked broadcast reaching a receiver isolation keeps apart: " + v->rule;
      return *v;
    }
    const PolicyDecision d = judge().ingress(side_of(p.t.saddr), Side{c.att->container, c.att->ip},
                                             p.t.proto, policy_port(p.t));
    if (!d.allowed)
      return drop(d.reason, "a tracked broadcast reaching a receiver its ingress denies: " + d.why,
                  d.ipblock_rule);
  }
  const auto rw = st_.flows.rewrite(m, p.t, c.hook, c.ifindex);
  if (!rw) return pass_as_is(c.frame, "a packet of a tracked flow");
  return passed(rewrite_frame(c.frame, rw->to), true, rw->redirect, "a translated flow");
}

Verdict Model::fresh(const Ctx& c, const Pkt& p) {
  switch (c.hook) {
    case Hook::FromContainer:
      return fresh_from_container(c, p);
    case Hook::ToContainer:
      return fresh_to_container(c, p);
    case Hook::FromWorld:
      return fresh_from_world(c, p);
    case Hook::ToWorld:
      return fresh_to_world(c, p);
  }
  return either("unknown hook");
}

std::optional<Verdict> Model::isolation(const AttInfo& att, uint32_t peer) const {
  const AddrClass k = topo_.classify(peer);
  const NetInfo& own = topo_.nets[att.net];
  switch (k.kind) {
    case AddrKind::Subnet:
      if (k.net != att.net) return drop("network-isolation", "peer in another network");
      if (!own.icc) return drop("icc-disabled", "peer in the own network, icc off");
      return std::nullopt;
    case AddrKind::Gateway:
      if (own.internal && k.net != att.net)
        return drop("internal-network", "an internal network's container and another gateway");
      return std::nullopt;
    case AddrKind::Host:
    case AddrKind::World:
      if (own.internal)
        return drop("internal-network", "an internal network's container and beyond");
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<Verdict> Model::policy(const Pkt& p, const Side& from, const Side& to) const {
  const PolicyJudge j = judge();
  if (!j.active()) return std::nullopt;
  const uint8_t proto = p.t.proto;
  if (p.ports_known || !has_ports(proto)) {
    const PolicyDecision d = j.judge(from, to, proto, policy_port(p.t));
    if (d.allowed) return std::nullopt;
    return drop(d.reason, d.why, d.ipblock_rule);
  }
  bool allow = false, deny = false;
  PolicyDecision denied;
  for (uint16_t port : j.telling_ports()) {
    const PolicyDecision d = j.judge(from, to, proto, port);
    (d.allowed ? allow : deny) = true;
    if (!d.allowed) denied = d;
  }
  if (!deny) return std::nullopt;
  if (allow) return either("a later fragment without its ports, and the policy depends on them");
  return drop(denied.reason, "for every port: " + denied.why, denied.ipblock_rule);
}

Verdict Model::fresh_from_container(const Ctx& c, const Pkt& p) {
  const AddrKind k = topo_.classify(p.ip.dst).kind;
  if ((k == AddrKind::Gateway || k == AddrKind::Host) && p.ports_known && has_ports(p.t.proto))
    if (const PublishInfo* pub = topo_.publish_for(p.ip.dst, p.t.dport, p.t.proto))
      return published(c, p, *pub);
  if (auto v = isolation(*c.att, p.ip.dst)) return *v;
  return admit(c, p, Side{c.att->container, c.att->ip}, side_of(p.ip.dst));
}

Verdict Model::fresh_to_container(const Ctx& c, const Pkt& p) {
  if (auto v = isolation(*c.att, p.ip.src)) return *v;
  Verdict v = admit(c, p, side_of(p.ip.src), Side{c.att->container, c.att->ip});
  if (v.kind == Verdict::Kind::Drop && p.ip.dst != c.att->ip)
    v.rule += " [delivered as a broadcast/multicast: the receiver's ingress]";
  return v;
}

Verdict Model::admit(const Ctx& c, const Pkt& p, const Side& client, const Side& server) {
  const bool tcp_no_flow = p.t.proto == IPPROTO_TCP && !p.opening && !p.ip.later_fragment();
  if (auto v = policy(p, client, server)) {
    if (tcp_no_flow && v->kind == Verdict::Kind::Drop) {
      v->new_rule = true;
      v->rule += " [a TCP segment without a flow, judged on its own: issue 13 item 2]";
    }
    return *v;
  }
  if (judge().active() && trackable(p.t.proto, p.opening, p.l4.icmp_type, p.ip.later_fragment()))
    st_.flows.add(Flow{p.t, p.t, p.t, Dnat::None, false, 0, st_.rev, false, {}});
  return pass_as_is(c.frame, judge().active() ? "isolation and policy allow it"
                                              : "isolation allows it; no policy");
}

Verdict Model::published(const Ctx& c, const Pkt& p, const PublishInfo& pub) {
  const auto client_net = c.att ? std::optional(c.att->net) : std::nullopt;
  const auto backend = topo_.backend_ip(pub, client_net);
  if (!backend) return either("a published port without a backend address");
  if (c.att && topo_.nets[c.att->net].internal) {
    const NetInfo& own = topo_.nets[c.att->net];
    if (p.t.daddr != own.gateway || topo_.classify(*backend).net != c.att->net)
      return drop("internal-network", "an internal network's container dialling a published port");
    // Its own gateway's published port forwarding within its own network:
    // README does not say; the kernel's answer settles it.
    if (!c.kernel_out) return either("an internal network's container, a published port within it");
  }
  if (p.t.proto == IPPROTO_TCP && !p.opening)
    return drop("no-flow", "a TCP segment without a flow would need the published-port rewrite",
                true);
  // README: from the world, a container's or the host's own address is forged.
  if (!c.att && topo_.classify(p.t.saddr).kind != AddrKind::World)
    return drop("spoofed-source", "a world client claiming a moat address", true);
  const Tuple t1{p.t.saddr, *backend, p.t.sport, pub.container_port, p.t.proto};
  const PolicyJudge j = judge();
  const Side client = c.att ? Side{c.att->container, c.att->ip} : side_of(p.t.saddr);
  const PolicyDecision d = j.judge(client, side_of(*backend), t1.proto, t1.dport);
  bool allowed = d.allowed;
  if (c.att && j.active()) {
    // Whether the client's egress peer is the dialled host or the backend,
    // README leaves open: when the two differ, the kernel's answer settles it.
    const bool via_host = j.egress(client, side_of(p.t.daddr), t1.proto, t1.dport).allowed &&
                          j.ingress(client, side_of(*backend), t1.proto, t1.dport).allowed;
    if (via_host != allowed) {
      if (!c.kernel_out)
        return either("a container's egress policy towards a published port: host or backend");
      allowed = true;
    }
  }
  if (!allowed) return drop(d.reason, "published port: " + d.why, d.ipblock_rule);
  Flow f{p.t, t1, t1, c.att ? Dnat::Container : Dnat::World, false, 0, st_.rev, false, {}};
  const bool hairpin = c.att && *backend == c.att->ip;
  if (hairpin) f.t2 = Tuple{p.t.daddr, *backend, p.t.sport, pub.container_port, p.t.proto};
  if (hairpin) f.dnat = Dnat::Hairpin;
  if (c.att) f.client_ifindex = c.ifindex;
  st_.flows.add(f);
  return passed(rewrite_frame(c.frame, f.t2), true, hairpin,
                hairpin ? "own published port: hairpin" : "published port");
}

Verdict Model::fresh_from_world(const Ctx& c, const Pkt& p) {
  const AddrKind k = topo_.classify(p.ip.dst).kind;
  if (k == AddrKind::Subnet)
    return drop("not-published", "from the world straight to a container address");
  if (k == AddrKind::Gateway || k == AddrKind::Host) {
    if (p.ports_known && has_ports(p.t.proto))
      if (const PublishInfo* pub = topo_.publish_for(p.ip.dst, p.t.dport, p.t.proto))
        return published(c, p, *pub);
    return pass_as_is(c.frame, "the host's own traffic");
  }
  if ((p.ip.dst >> 24) == 127) return either("loopback destination at an uplink");
  return pass_as_is(c.frame, "to an address moat does not know");
}

Verdict Model::fresh_to_world(const Ctx& c, const Pkt& p) {
  const AddrClass s = topo_.classify(p.ip.src);
  if (s.kind != AddrKind::Subnet) return pass_as_is(c.frame, "not from a container network");
  const NetInfo& net = topo_.nets[s.net];
  if (net.internal)
    return drop("internal-network", "an internal network's container towards the world");
  if (auto v = policy(p, side_of(p.ip.src), side_of(p.ip.dst))) return *v;
  if (p.ip.later_fragment())  // no first fragment seen: no flow to translate it by
    return net.masquerade
               ? drop("nat-rewrite-failed", "a later fragment whose first was never seen")
               : pass_as_is(c.frame, "a later fragment, routed untracked");
  if (p.t.proto == IPPROTO_ICMP && !icmp_opens(p.l4.icmp_type))
    return net.masquerade ? either("masquerading an echo reply or an ICMP error without a flow")
                          : pass_as_is(c.frame, "ICMP routed untracked");
  if (p.t.proto == IPPROTO_TCP && !p.opening && !p.ip.later_fragment() && !net.masquerade)
    return pass_as_is(c.frame, "a TCP segment without a flow, routed untracked");
  if (net.masquerade) return masquerade(c, p, std::nullopt);
  if (!p.ip.later_fragment())
    st_.flows.add(Flow{p.t, p.t, p.t, Dnat::None, false, 0, st_.rev, true, {}});
  return pass_as_is(c.frame, "routed with its own address, tracked");
}

namespace {

// The port (or echo id) the kernel put where the masquerade port goes, if it passed the frame.
std::optional<uint16_t> kernel_port(const Bytes* out, const Ip4& ip) {
  if (!out) return std::nullopt;
  const Ip4 kip = parse_ip4(*out, 14);
  if (!kip.header_ok || kip.l4_off() != ip.l4_off()) return std::nullopt;
  const size_t o = ip.l4_off() + (ip.proto == IPPROTO_ICMP ? 4 : 0);
  if (out->size() < o + 2) return std::nullopt;
  return get16(*out, o);
}

}  // namespace

Verdict Model::masquerade(const Ctx& c, const Pkt& p, std::optional<size_t> track) {
  // A tracked flow whose first segment at the uplink is not its SYN: item 2
  // does not say; the kernel's answer settles it.
  if (p.t.proto == IPPROTO_TCP && !p.opening && !p.ip.later_fragment() && (!track || !c.kernel_out))
    return track
               ? either("a tracked TCP flow's first packet at the uplink is not its SYN")
               : drop("no-flow", "a TCP segment without a flow would need masquerading", true);
  if (p.t.proto == IPPROTO_ICMP && !icmp_opens(p.l4.icmp_type))
    return either("masquerading an echo reply or an ICMP error without a flow");
  Tuple t2 = p.t;
  t2.saddr = c.uplink->ip;
  const bool chooses = p.t.proto == IPPROTO_TCP || p.t.proto == IPPROTO_UDP ||
                       (p.t.proto == IPPROTO_ICMP && p.l4.icmp_type == 8);
  if (chooses) {
    const auto hint = kernel_port(c.kernel_out, p.ip);
    std::optional<uint16_t> port;
    if (hint && *hint >= MOAT_NAT_PORT_MIN && *hint <= MOAT_NAT_PORT_MAX) {
      t2.sport = *hint;
      if (!st_.flows.taken(t2)) port = hint;
    }
    for (uint32_t q = MOAT_NAT_PORT_MIN; !port && q <= MOAT_NAT_PORT_MAX; q++) {
      t2.sport = uint16_t(q);
      if (!st_.flows.taken(t2)) port = uint16_t(q);
    }
    if (!port) return drop("nat-port-exhausted", "no masquerade port left");
    t2.sport = *port;
  } else if (st_.flows.taken(t2)) {
    return drop("nat-port-exhausted", "this tuple behind the uplink's address is taken");
  }
  if (track) {
    st_.flows.at(*track).snat = true;
    st_.flows.at(*track).via_uplink = true;
    st_.flows.at(*track).t2 = t2;
  } else {
    st_.flows.add(Flow{p.t, p.t, t2, Dnat::None, true, 0, st_.rev, true, {}});
  }
  return passed(rewrite_frame(c.frame, t2), true, false, "masquerade");
}

}  // namespace fuzz
