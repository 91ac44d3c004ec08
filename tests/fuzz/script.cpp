// script.cpp - resolving a planned step into the frame it feeds: where a
// passed packet goes next, who answers it and from where, what an ICMP
// error about it looks like.
#include "script.h"

#include <netinet/in.h>

#include <algorithm>
#include <stdexcept>

#include "craft.h"

namespace fuzz {
namespace {

struct Where {
  Hook hook;
  uint32_t ifindex;
};

bool ipv4_frame(const Bytes& f) { return f.size() >= 34 && get16(f, 12) == kEthIp; }

// Attachments of `att`'s network other than `att`, where a flood reaches.
std::vector<const AttInfo*> neighbours(const Topology& topo, const AttInfo& att) {
  std::vector<const AttInfo*> out;
  for (const auto& a : topo.atts)
    if (a.net == att.net && &a != &att) out.push_back(&a);
  return out;
}

// An IPv6 packet a container or the world sent, on its way: bridged by
// MAC within the container's network, or routed by the host.
std::optional<Resolved> forward6(const Topology& topo, const Played& p, const AttInfo* from,
                                 Bytes f, uint32_t pick, uint32_t via) {
  const Ip6Addr dst = ip6_at(f, 14 + 24);
  if (from) {
    const auto n = neighbours(topo, *from);
    for (const auto* a : n)
      if (a->mac == mac_at(f, 0)) return Resolved{Hook::ToContainer, a->ifindex, f, via};
    if (!is_unicast(mac_at(f, 0))) {
      if (n.empty()) return std::nullopt;
      return Resolved{Hook::ToContainer, n[pick % n.size()]->ifindex, f, via};
    }
    if (mac_at(f, 0) != topo.nets[from->net].gateway_mac) return std::nullopt;
  }
  if (ip6_link_local(dst) || ip6_multicast(dst)) return std::nullopt;  // not routed
  if (const AttInfo* a = topo.att_with_ip6(dst)) {
    put_mac(f, 0, a->mac);
    put_mac(f, 6, topo.nets[a->net].gateway_mac);
    return Resolved{Hook::ToContainer, a->ifindex, f, via};
  }
  if (!from || topo.classify6(dst).kind != AddrKind::World || topo.uplinks.empty())
    return std::nullopt;
  (void)p;
  const UplinkInfo& u = topo.uplinks[pick % topo.uplinks.size()];
  put_mac(f, 0, kRouterMac);
  put_mac(f, 6, u.mac);
  return Resolved{Hook::ToWorld, u.ifindex, f, 0};
}

// The next hook of what `p` passed, and the frame as it arrives there.
std::optional<Resolved> forward(const Topology& topo, const Played& p, uint32_t pick) {
  if (!p.ran || !p.passed) return std::nullopt;
  Bytes f = p.out;
  // What a container sent enters the host by its veth; the world's arrives
  // through the host's routing (0, as the host's own).
  const uint32_t via = p.hook == Hook::FromContainer ? p.ifindex : 0;
  if (p.hook == Hook::FromContainer && p.redirected && !p.peer)
    return Resolved{Hook::ToContainer, p.ifindex, f, via};
  if (p.hook != Hook::FromContainer && p.hook != Hook::FromWorld) return std::nullopt;
  const AttInfo* from = p.hook == Hook::FromContainer ? topo.att_at(p.ifindex) : nullptr;
  if (ipv6_frame(f)) return forward6(topo, p, from, std::move(f), pick, via);
  if (!ipv4_frame(f)) {
    // ARP, ND, MLD: the bridge floods or delivers by MAC within the network.
    if (!from) return std::nullopt;
    for (const auto* a : neighbours(topo, *from))
      if (a->mac == mac_at(f, 0)) return Resolved{Hook::ToContainer, a->ifindex, f, via};
    const auto n = neighbours(topo, *from);
    if (n.empty() || is_unicast(mac_at(f, 0))) return std::nullopt;
    return Resolved{Hook::ToContainer, n[pick % n.size()]->ifindex, f, via};
  }
  const uint32_t dst = get32(f, 14 + 16);
  if (const AttInfo* a = topo.att_with_ip(dst)) {
    if (mac_at(f, 0) != a->mac) {
      put_mac(f, 0, a->mac);
      put_mac(f, 6, topo.nets[a->net].gateway_mac);
    }
    return Resolved{Hook::ToContainer, a->ifindex, f, via};
  }
  if (from && topo.is_broadcast_for(*from, dst)) {
    const auto n = neighbours(topo, *from);
    if (n.empty()) return std::nullopt;
    return Resolved{Hook::ToContainer, n[pick % n.size()]->ifindex, f, via};
  }
  if (!from || topo.is_host(dst) || topo.uplinks.empty()) return std::nullopt;
  const UplinkInfo& u = topo.uplinks[pick % topo.uplinks.size()];
  put_mac(f, 0, kRouterMac);
  put_mac(f, 6, u.mac);
  return Resolved{Hook::ToWorld, u.ifindex, f};
}

// Who answers the packet of `p` (as it arrived, or as it was sent when it
// was dropped), and where that answer enters.
std::optional<Where> responder(const Topology& topo, const Played& p, const Bytes& f,
                               uint32_t pick) {
  switch (p.hook) {
    case Hook::ToContainer:
      return Where{Hook::FromContainer, p.ifindex};
    case Hook::ToWorld:
      if (topo.uplinks.empty()) return std::nullopt;
      return Where{Hook::FromWorld, topo.uplinks[pick % topo.uplinks.size()].ifindex};
    case Hook::FromContainer:
    case Hook::FromWorld:
      break;
  }
  if (ipv6_frame(f)) {
    const Ip6Addr dst = ip6_at(f, 14 + 24);
    const AttInfo* from = p.hook == Hook::FromContainer ? topo.att_at(p.ifindex) : nullptr;
    if (const AttInfo* a = topo.att_with_ip6(dst)) return Where{Hook::FromContainer, a->ifindex};
    if (ip6_multicast(dst) && from) {
      const auto n = neighbours(topo, *from);
      if (n.empty()) return std::nullopt;
      return Where{Hook::FromContainer, n[pick % n.size()]->ifindex};
    }
    const AddrKind k = topo.classify6(dst).kind;
    if (k == AddrKind::Gateway || (from && ip6_link_local(dst)))  // the host answers
      return Where{from ? Hook::ToContainer : Hook::ToWorld, p.ifindex};
    if (k != AddrKind::World || !from || topo.uplinks.empty() || ip6_multicast(dst) ||
        ip6_link_local(dst))
      return std::nullopt;
    return Where{Hook::FromWorld, topo.uplinks[pick % topo.uplinks.size()].ifindex};
  }
  if (!ipv4_frame(f)) return std::nullopt;
  const uint32_t dst = get32(f, 14 + 16);
  if (const AttInfo* a = topo.att_with_ip(dst)) return Where{Hook::FromContainer, a->ifindex};
  // A broadcast is answered by a neighbour, never from the world.
  if (const AttInfo* from = topo.att_at(p.ifindex);
      from && p.hook == Hook::FromContainer && topo.is_broadcast_for(*from, dst)) {
    const auto n = neighbours(topo, *from);
    if (n.empty()) return std::nullopt;
    return Where{Hook::FromContainer, n[pick % n.size()]->ifindex};
  }
  if (topo.is_host(dst))
    return Where{p.hook == Hook::FromContainer ? Hook::ToContainer : Hook::ToWorld, p.ifindex};
  if (topo.uplinks.empty()) return std::nullopt;
  return Where{Hook::FromWorld, topo.uplinks[pick % topo.uplinks.size()].ifindex};
}

// The frame the step's reference left behind: its output if it passed, else its input.
const Bytes* seen(const Played& p) {
  if (!p.ran) return nullptr;
  return p.passed ? &p.out : &p.in;
}

Bytes reply_frame(const Bytes& f, uint8_t flags, uint16_t ip_id) {
  const Ip4 ip = parse_ip4(f, 14);
  const L4 l4 = parse_l4(f, ip);
  Craft c;
  c.dst_mac = mac_at(f, 6);
  c.src_mac = mac_at(f, 0);
  c.src = ip.dst;
  c.dst = ip.src;
  c.proto = ip.proto;
  c.sport = l4.dport;
  c.dport = l4.sport;
  c.tcp_flags = flags;
  c.ip_id = ip_id;
  c.payload = {'r', 'e', 'p', 'l', 'y'};
  if (ip.proto == IPPROTO_ICMP) {
    c.icmp_type = l4.icmp_type == 8 ? 0 : l4.icmp_type == 0 ? 8 : l4.icmp_type;
    c.sport = l4.icmp_id;
  }
  return build(c);
}

Bytes again_frame(const Bytes& f, uint8_t flags, uint16_t ip_id) {
  Bytes out = reply_frame(f, flags, ip_id);
  // Back to the sender's direction: swap once more.
  return reply_frame(out, flags, ip_id);
}

Bytes arp_reply(const Topology& topo, const Bytes& req, uint32_t ifindex) {
  const AttInfo* a = topo.att_at(ifindex);
  ArpCraft r;
  r.op = 2;
  r.eth_dst = mac_at(req, 6);
  r.eth_src = a ? a->mac : Mac{};
  r.sha = r.eth_src;
  r.spa = get32(req, 14 + 24);
  r.tha = mac_at(req, 14 + 8);
  r.tpa = get32(req, 14 + 14);
  return build_arp(r);
}

Bytes error_frame(const Topology& topo, const Played& p, const Bytes& about, const ErrorSpec& e,
                  const Where& w, uint16_t ip_id) {
  const Bytes& quoted_frame = e.quote_input ? p.in : about;
  Bytes quoted = quote_of(quoted_frame, e.full_quote);
  const Ip4 q = parse_ip4(quoted_frame, 14);
  if (quoted.size() >= 20) {
    if (e.forge_quoted_src) put32(quoted, 12, e.forge_quoted_src);
    if (e.forge_quoted_dst) put32(quoted, 16, e.forge_quoted_dst);
    if (e.forge_quoted_sport >= 0 && quoted.size() >= q.hlen + 2)
      put16(quoted, q.hlen, uint16_t(e.forge_quoted_sport));
  }
  Craft c;
  c.dst_mac = mac_at(about, 6);
  c.src_mac = mac_at(about, 0);
  c.proto = IPPROTO_ICMP;
  c.icmp_type = e.type;
  c.icmp_code = e.code;
  c.quoted = quoted;
  c.ip_id = ip_id;
  c.dst = e.outer_dst ? e.outer_dst : q.src;
  c.src = e.outer_src ? e.outer_src : q.dst;
  // A router's error from the world, a gateway's to a container: the hook says who can send it.
  if (!e.outer_src && w.hook == Hook::ToContainer)
    if (const AttInfo* a = topo.att_at(w.ifindex)) c.src = topo.nets[a->net].gateway;
  return build(c);
}

// ---- IPv6 answers ------------------------------------------------------------------

bool link_message(uint8_t type) {
  return type == 130 || type == 131 || type == 132 || type == 143 || (type >= 133 && type <= 137);
}

// The Ethernet addresses and, for a multicast it answers, the source address
// of whoever answers at `w` a packet from `peer`.
void answer_from(const Topology& topo, const Where& w, const Ip6Addr& peer, Craft6& c) {
  if (w.hook == Hook::FromContainer) {
    const AttInfo* a = topo.att_at(w.ifindex);
    if (!a) return;
    c.src_mac = a->mac;
    const AttInfo* b = topo.att_with_ip6(peer);
    c.dst_mac = b && b->net == a->net ? b->mac : topo.nets[a->net].gateway_mac;
    if (ip6_multicast(c.src)) c.src = a->ip6 && !ip6_link_local(peer) ? *a->ip6 : a->ll;
  } else if (w.hook == Hook::ToContainer) {
    const AttInfo* a = topo.att_at(w.ifindex);
    if (!a) return;
    c.dst_mac = a->mac;
    c.src_mac = topo.nets[a->net].gateway_mac;
  } else if (w.hook == Hook::FromWorld) {
    c.src_mac = kRouterMac;
    for (const auto& u : topo.uplinks)
      if (u.ifindex == w.ifindex) c.dst_mac = u.mac;
  } else {
    c.dst_mac = kRouterMac;
    for (const auto& u : topo.uplinks)
      if (u.ifindex == w.ifindex) c.src_mac = u.mac;
  }
}

std::optional<Bytes> reply6(const Topology& topo, const Bytes& f, const Where& w, uint8_t flags) {
  const Ip6 ip = parse_ip6(f);
  if (!ip.ok || ip.later_fragment) return std::nullopt;
  if (ip.proto == IPPROTO_ICMPV6 && link_message(ip.icmp_type)) return std::nullopt;
  Craft6 c;
  c.src = ip.dst;
  c.dst = ip.src;
  c.dst_mac = mac_at(f, 6);
  c.src_mac = mac_at(f, 0);
  c.proto = ip.proto;
  c.sport = ip.dport;
  c.dport = ip.sport;
  c.tcp_flags = flags;
  c.payload = {'r', 'e', 'p', 'l', 'y'};
  if (ip.proto == IPPROTO_ICMPV6) {
    c.icmp_type = ip.icmp_type == 128 ? 129 : ip.icmp_type == 129 ? 128 : ip.icmp_type;
    c.sport = ip.sport;
    if (c.icmp_type != 128 && c.icmp_type != 129) c.body = c.payload;
  }
  answer_from(topo, w, c.dst, c);
  return build6(c);
}

// The sender of `f` again on the same flow.
std::optional<Bytes> again6(const Bytes& f, uint8_t flags) {
  const Ip6 ip = parse_ip6(f);
  if (!ip.ok || ip.later_fragment) return std::nullopt;
  if (ip.proto == IPPROTO_ICMPV6 && link_message(ip.icmp_type)) return std::nullopt;
  Craft6 c;
  c.src = ip.src;
  c.dst = ip.dst;
  c.dst_mac = mac_at(f, 0);
  c.src_mac = mac_at(f, 6);
  c.proto = ip.proto;
  c.sport = ip.sport;
  c.dport = ip.dport;
  c.tcp_flags = flags;
  c.icmp_type = ip.icmp_type;
  c.payload = {'a', 'g', 'a', 'i', 'n'};
  if (ip.proto == IPPROTO_ICMPV6 && c.icmp_type != 128 && c.icmp_type != 129) c.body = c.payload;
  return build6(c);
}

// An ICMPv6 error (destination unreachable, packet too big, time exceeded,
// parameter problem: the IPv4 spec's type picks one) about `f`, from whoever answers at `w`.
std::optional<Bytes> error6(const Topology& topo, const Bytes& f, const ErrorSpec& e,
                            const Where& w) {
  const Ip6 ip = parse_ip6(f);
  if (f.size() < 14 + 40 || (ip.proto == IPPROTO_ICMPV6 && ip.icmp_type < 128)) return std::nullopt;
  Craft6 c;
  c.proto = IPPROTO_ICMPV6;
  c.icmp_type = e.type == 3 ? 1 : e.type == 11 ? 3 : e.type == 12 ? 4 : 2;
  c.icmp_code = c.icmp_type == 1 ? uint8_t(e.code % 5) : 0;
  c.dst = ip6_at(f, 14 + 8);
  c.src = ip6_at(f, 14 + 24);
  const size_t n = std::min(f.size() - 14, e.full_quote ? size_t(1232) : size_t(48));
  c.body.assign(f.begin() + 14, f.begin() + long(14 + n));
  answer_from(topo, w, c.dst, c);
  if (w.hook == Hook::ToContainer)  // the host reports: from its gateway on that network
    if (const AttInfo* a = topo.att_at(w.ifindex); a && topo.nets[a->net].subnet6)
      c.src = topo.nets[a->net].gateway6;
  return build6(c);
}

const char* const kKinds[] = {"send", "forward", "reply", "again", "error", "rev"};

}  // namespace

nlohmann::json step_to_json(const Step& s, const std::string& dev, const std::string& ingress_dev) {
  nlohmann::json j = {{"kind", kKinds[int(s.kind)]}};
  switch (s.kind) {
    case Step::Kind::Send:
      j.update({{"hook", hook_name(s.hook)}, {"dev", dev}, {"frame", hex(s.frame)}});
      if (s.ingress_ifindex) j["ingress_dev"] = ingress_dev;
      break;
    case Step::Kind::Rev:
      j["variant"] = s.variant;
      return j;
    case Step::Kind::Error:
      j["error"] = {{"type", s.error.type},
                    {"code", s.error.code},
                    {"outer_src", s.error.outer_src},
                    {"outer_dst", s.error.outer_dst},
                    {"quote_input", s.error.quote_input},
                    {"full_quote", s.error.full_quote},
                    {"forge_quoted_src", s.error.forge_quoted_src},
                    {"forge_quoted_dst", s.error.forge_quoted_dst},
                    {"forge_quoted_sport", s.error.forge_quoted_sport}};
      [[fallthrough]];
    default:
      j.update({{"ref", s.ref}, {"tcp_flags", s.tcp_flags}});
  }
  j["pick"] = s.pick;
  if (s.mutate) j["mutate"] = s.mutate;
  if (s.forge) j["forge"] = true;
  return j;
}

Step step_from_json(const nlohmann::json& j, const std::map<std::string, uint32_t>& ifindex) {
  Step s;
  const std::string kind = j.at("kind");
  const auto k = std::find(std::begin(kKinds), std::end(kKinds), kind);
  if (k == std::end(kKinds)) throw std::runtime_error("replay: unknown step kind " + kind);
  s.kind = Step::Kind(k - std::begin(kKinds));
  s.variant = j.value("variant", size_t(0));
  s.ref = j.value("ref", -1);
  s.tcp_flags = j.value("tcp_flags", uint8_t(0));
  s.pick = j.value("pick", uint32_t(0));
  s.mutate = j.value("mutate", uint64_t(0));
  s.forge = j.value("forge", false);
  if (s.kind == Step::Kind::Send) {
    const auto hook = hook_from_name(j.at("hook"));
    const auto frame = from_hex(j.at("frame"));
    const std::string dev = j.at("dev");
    if (!hook || !frame || !ifindex.contains(dev))
      throw std::runtime_error("replay: bad send step " + j.dump());
    s.hook = *hook;
    s.ifindex = ifindex.at(dev);
    s.frame = *frame;
    if (j.contains("ingress_dev")) {
      const std::string in = j["ingress_dev"];
      if (!ifindex.contains(in)) throw std::runtime_error("replay: unknown device " + in);
      s.ingress_ifindex = ifindex.at(in);
    }
  }
  if (j.contains("error")) {
    const auto& e = j["error"];
    s.error = {e.at("type"),
               e.at("code"),
               e.at("outer_src"),
               e.at("outer_dst"),
               e.at("quote_input"),
               e.at("full_quote"),
               e.at("forge_quoted_src"),
               e.at("forge_quoted_dst"),
               e.at("forge_quoted_sport")};
  }
  return s;
}

uint32_t ingress_at(Hook h, uint32_t ifindex, uint32_t resolved) {
  switch (h) {
    case Hook::FromContainer:
    case Hook::FromWorld:
      return ifindex;
    case Hook::ToContainer:
      return resolved;
    case Hook::ToWorld:
      return 0;
  }
  return 0;
}

// A TCP frame's seq and ack moved half the sequence space (Step::forge).
void forge_seq(Bytes& f) {
  size_t l4 = 0;
  if (ipv6_frame(f)) {
    const Ip6 ip = parse_ip6(f);
    if (!ip.ok || ip.later_fragment || ip.proto != IPPROTO_TCP || ip.l4 + 20 > ip.end) return;
    l4 = ip.l4;
  } else if (ipv4_frame(f)) {
    const Ip4 ip = parse_ip4(f, 14);
    if (!ip.header_ok || ip.proto != IPPROTO_TCP || ip.l4_avail() < 20) return;
    l4 = ip.l4_off();
  } else {
    return;
  }
  put32(f, l4 + 4, get32(f, l4 + 4) + kForgeShift);
  put32(f, l4 + 8, get32(f, l4 + 8) + kForgeShift);
  if (ipv6_frame(f))
    fix_checksums6(f);
  else
    fix_checksums(f);
}

std::optional<Resolved> resolve(const Topology& topo, const Case& c, size_t i,
                                const std::vector<Played>& h) {
  const Step& s = c.steps[i];
  const uint16_t ip_id = uint16_t(0x100 + i);
  std::optional<Resolved> r;
  // A reply or an error answers the last hop that ran on its packet's way.
  int at = s.ref;
  while (at >= 0 && (s.kind == Step::Kind::Reply || s.kind == Step::Kind::Error) &&
         !h[size_t(at)].ran && c.steps[size_t(at)].kind == Step::Kind::Forward)
    at = c.steps[size_t(at)].ref;
  const Played* ref = at >= 0 ? &h[size_t(at)] : nullptr;
  if (s.kind != Step::Kind::Send && s.kind != Step::Kind::Rev && !ref) return std::nullopt;
  switch (s.kind) {
    case Step::Kind::Send:
      r = Resolved{s.hook, s.ifindex, s.frame, s.ingress_ifindex};
      break;
    case Step::Kind::Forward:
      return forward(topo, *ref, s.pick);
    case Step::Kind::Again:
      if (!ref->ran) return std::nullopt;
      if (ipv6_frame(ref->in)) {
        auto f = again6(ref->in, s.tcp_flags);
        if (!f) return std::nullopt;
        r = Resolved{ref->hook, ref->ifindex, std::move(*f), ref->ingress_ifindex};
        break;
      }
      if (!ipv4_frame(ref->in)) return std::nullopt;
      r = Resolved{ref->hook, ref->ifindex, again_frame(ref->in, s.tcp_flags, ip_id),
                   ref->ingress_ifindex};
      break;
    case Step::Kind::Reply:
    case Step::Kind::Error: {
      const Bytes* f = seen(*ref);
      if (!f) return std::nullopt;
      const auto w = responder(topo, *ref, *f, s.pick);
      if (!w) return std::nullopt;
      if (get16(*f, 12) == kEthArp && s.kind == Step::Kind::Reply) {
        r = Resolved{w->hook, w->ifindex, arp_reply(topo, *f, w->ifindex)};
        break;
      }
      if (ipv6_frame(*f)) {
        auto out = s.kind == Step::Kind::Reply ? reply6(topo, *f, *w, s.tcp_flags)
                                               : error6(topo, *f, s.error, *w);
        if (!out) return std::nullopt;
        r = Resolved{w->hook, w->ifindex, std::move(*out)};
        break;
      }
      if (!ipv4_frame(*f)) return std::nullopt;
      r = Resolved{w->hook, w->ifindex,
                   s.kind == Step::Kind::Reply ? reply_frame(*f, s.tcp_flags, ip_id)
                                               : error_frame(topo, *ref, *f, s.error, *w, ip_id)};
      break;
    }
    case Step::Kind::Rev:
      return std::nullopt;
  }
  if (r && s.forge) forge_seq(r->frame);
  return r;
}

}  // namespace fuzz
