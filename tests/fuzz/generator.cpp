// generator.cpp - the scenarios of generator.h.
#include "generator.h"

#include <netinet/in.h>

#include "craft.h"

namespace fuzz {
namespace {

constexpr Mac kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr Mac kForeignMac = {0x02, 0x42, 0xde, 0xad, 0xbe, 0xef};

struct Opening {
  Hook hook;
  uint32_t ifindex;
  Craft craft;
  Bytes frame{};         // IPv6 openings: built already
  uint32_t ingress = 0;  // to_container: the sending container's veth, 0: the host
  std::string what{};    // IPv6 openings: the scenario
};

// The Ethernet multicast address of an IPv6 multicast group (RFC 2464).
Mac multicast_mac(const Ip6Addr& a) { return {0x33, 0x33, a[12], a[13], a[14], a[15]}; }

// The solicited-node multicast group of `a` (RFC 4291 2.7.1).
Ip6Addr solicited_node(const Ip6Addr& a) {
  Ip6Addr g = ip6_from_text("ff02::1:ff00:0");
  g[13] = a[13];
  g[14] = a[14];
  g[15] = a[15];
  return g;
}

class Planner {
 public:
  Planner(const Topology& topo, const Pools& pools, size_t variants, uint64_t seed)
      : topo_(topo), pools_(pools), variants_(variants), r_(seed) {
    mutating_ = r_.chance(0.3);
  }

  Case plan() {
    const uint32_t kind = r_.below(100);
    if (kind < 15 || topo_.atts.empty()) {
      c_.scenario = "link-layer";
      const uint32_t n = 1 + r_.below(4);
      for (uint32_t i = 0; i < n; i++) link_layer();
    } else if (kind >= 75 && topo_.has_ipv6()) {
      flow(kind >= 95 ? 6 : 3, true);
    } else {
      flow(kind < 25 ? 6 : 3, false);
    }
    return c_;
  }

 private:
  int add(Step s) {
    const bool eligible = s.kind != Step::Kind::Forward && s.kind != Step::Kind::Rev;
    if (eligible && mutating_ && r_.chance(0.25)) s.mutate = r_.next() | 1;
    s.pick = uint32_t(r_.next());
    c_.steps.push_back(std::move(s));
    return int(c_.steps.size() - 1);
  }
  int send(Hook h, uint32_t ifindex, Bytes f, uint32_t ingress = 0) {
    Step s;
    s.hook = h;
    s.ifindex = ifindex;
    s.ingress_ifindex = h == Hook::ToContainer ? ingress : 0;
    s.frame = std::move(f);
    return add(std::move(s));
  }
  int refer(Step::Kind k, int ref, uint8_t flags = 0) {
    Step s;
    s.kind = k;
    s.ref = ref;
    s.tcp_flags = flags;
    return add(std::move(s));
  }

  // ---- flows -------------------------------------------------------------------------

  void flow(uint32_t max_actions, bool v6) {
    Opening o = v6 ? opening6() : opening();
    c_.scenario =
        v6 ? "ipv6 " + o.what
           : std::string("flow ") + hook_name(o.hook) + " proto " + std::to_string(o.craft.proto);
    const int s0 = send(o.hook, o.ifindex, v6 ? o.frame : build(o.craft), o.ingress);
    int init = refer(Step::Kind::Forward, s0);
    int resp = refer(Step::Kind::Forward, refer(Step::Kind::Reply, init, kTcpSyn | kTcpAck));
    const uint32_t n = 1 + r_.below(max_actions);
    for (uint32_t k = 0; k < n; k++) {
      const uint32_t a = r_.below(100);
      if (a < 30) {
        init = refer(Step::Kind::Forward, refer(Step::Kind::Again, s0, later_flags()));
      } else if (a < 50) {
        resp = refer(Step::Kind::Forward, refer(Step::Kind::Reply, init, later_flags()));
      } else if (a < 60) {
        // Either side's RST or FIN forged blind: the flow goes on (README).
        const int f = r_.chance(0.5) ? refer(Step::Kind::Again, s0, forged_flags())
                                     : refer(Step::Kind::Reply, init, forged_flags());
        c_.steps[size_t(f)].forge = true;
        refer(Step::Kind::Forward, f);
      } else if (a < 75) {
        refer(Step::Kind::Forward, error(init));
      } else if (a < 85) {
        refer(Step::Kind::Forward, error(resp));
      } else if (a < 93) {
        Step s;
        s.kind = Step::Kind::Rev;
        s.variant = r_.below(uint32_t(variants_));
        add(std::move(s));
      } else {
        link_layer();
      }
    }
  }

  uint8_t forged_flags() {
    static const uint8_t kFlags[] = {kTcpRst, kTcpRst | kTcpAck, kTcpFin | kTcpAck, kTcpAck};
    return kFlags[r_.below(sizeof kFlags)];
  }

  uint8_t later_flags() {
    static const uint8_t kFlags[] = {kTcpAck,           kTcpAck, kTcpPsh | kTcpAck,
                                     kTcpFin | kTcpAck, kTcpRst, kTcpRst | kTcpAck,
                                     kTcpSyn,           0x00};
    return kFlags[r_.below(sizeof kFlags)];
  }

  int error(int ref) {
    static const std::pair<uint8_t, uint8_t> kKinds[] = {{3, 3}, {3, 4}, {3, 1}, {11, 0}, {12, 0}};
    Step s;
    s.kind = Step::Kind::Error;
    s.ref = ref;
    std::tie(s.error.type, s.error.code) = kKinds[r_.below(5)];
    if (r_.chance(0.35))
      s.error.outer_src = r_.chance(0.5) ? r_.pick(pools_.routers) : r_.pick(pools_.addrs);
    if (r_.chance(0.3)) s.error.outer_dst = r_.pick(pools_.addrs);
    s.error.quote_input = r_.chance(0.15);
    s.error.full_quote = r_.chance(0.3);
    if (r_.chance(0.1)) s.error.forge_quoted_src = r_.pick(pools_.addrs);
    if (r_.chance(0.1)) s.error.forge_quoted_dst = r_.pick(pools_.addrs);
    if (r_.chance(0.1)) s.error.forge_quoted_sport = r_.pick(pools_.ports);
    return add(std::move(s));
  }

  Opening opening() {
    const uint32_t k = r_.below(100);
    if (k < 55 || topo_.uplinks.empty()) return container_opening();
    if (k < 85) return world_opening();
    return host_opening();
  }

  void protocol(Craft& c, const PublishInfo* pub) {
    const uint32_t k = r_.below(100);
    c.proto = pub      ? pub->proto
              : k < 50 ? IPPROTO_TCP
              : k < 75 ? IPPROTO_UDP
              : k < 90 ? IPPROTO_ICMP
              : k < 95 ? IPPROTO_SCTP
                       : (r_.chance(0.5) ? 47 : 253);
    c.sport = uint16_t(r_.chance(0.9) ? 32768 + r_.below(28000) : r_.pick(pools_.ports));
    c.dport = pub ? pub->host_port : r_.pick(pools_.ports);
    if (c.proto == IPPROTO_SCTP && pub) c.dport = pub->host_port;
    c.tcp_flags = r_.chance(0.8) ? kTcpSyn : later_flags();
    c.icmp_type = r_.chance(0.9) ? 8 : r_.pick(std::vector<uint8_t>{0, 13, 3, 11});
    if (c.icmp_type == 3 || c.icmp_type == 11) c.quoted = Bytes(28, 0x45);
    c.ip_id = uint16_t(r_.next());
    c.payload = {'f', 'u', 'z', 'z'};
  }

  const PublishInfo* some_publish() {
    return topo_.publishes.empty() ? nullptr : &r_.pick(topo_.publishes);
  }

  uint32_t host_address_for(const PublishInfo* pub, const AttInfo* client) {
    if (pub && pub->host_ip && r_.chance(0.7)) return *pub->host_ip;
    const uint32_t k = r_.below(3);
    if (k == 0 && client) return topo_.nets[client->net].gateway;
    if (k == 1 && !topo_.uplinks.empty()) return r_.pick(topo_.uplinks).ip;
    return r_.pick(topo_.nets).gateway;
  }

  Opening container_opening() {
    const AttInfo& a = r_.pick(topo_.atts);
    Opening o{Hook::FromContainer, a.ifindex, {}};
    Craft& c = o.craft;
    const uint32_t k = r_.below(100);
    const PublishInfo* pub = k < 18 ? some_publish() : nullptr;
    protocol(c, pub);
    c.src = a.ip;
    c.src_mac = a.mac;
    if (pub)
      c.dst = host_address_for(pub, &a);
    else if (k < 45)
      c.dst = same_net_peer(a);
    else if (k < 55)
      c.dst = r_.pick(topo_.atts).ip;
    else if (k < 75 && !pools_.world.empty())
      c.dst = r_.pick(pools_.world);
    else if (k < 85)
      c.dst = host_address_for(nullptr, &a);
    else
      c.dst = r_.pick(pools_.addrs);
    c.dst_mac = next_hop_mac(a, c.dst);
    return o;
  }

  uint32_t same_net_peer(const AttInfo& a) {
    std::vector<uint32_t> peers;
    for (const auto& b : topo_.atts)
      if (b.net == a.net && b.ip != a.ip) peers.push_back(b.ip);
    const auto& subnet = topo_.nets[a.net].subnet;
    if (peers.empty() || r_.chance(0.15))
      return r_.chance(0.5) ? subnet.broadcast().value : subnet.addr.value + 200;
    return r_.pick(peers);
  }

  Mac next_hop_mac(const AttInfo& a, uint32_t dst) {
    if (const AttInfo* b = topo_.att_with_ip(dst); b && b->net == a.net) return b->mac;
    if (topo_.is_broadcast_for(a, dst))
      return (dst >> 28) == 0xe ? Mac{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb} : kBroadcastMac;
    return topo_.nets[a.net].gateway_mac;
  }

  Opening world_opening() {
    const bool unknown = r_.chance(0.03);
    const UplinkInfo& u = r_.pick(topo_.uplinks);
    Opening o{Hook::FromWorld, unknown ? topo_.unknown_ifindex : u.ifindex, {}};
    Craft& c = o.craft;
    const PublishInfo* pub = r_.chance(0.6) ? some_publish() : nullptr;
    protocol(c, pub);
    c.src = r_.chance(0.8) && !pools_.world.empty() ? r_.pick(pools_.world) : r_.pick(pools_.addrs);
    const uint32_t k = r_.below(100);
    c.dst = k < 50                          ? u.ip
            : k < 70                        ? host_address_for(pub, nullptr)
            : k < 85 && !topo_.atts.empty() ? r_.pick(topo_.atts).ip
                                            : r_.pick(pools_.addrs);
    if (pub && pub->host_ip && r_.chance(0.5)) c.dst = *pub->host_ip;
    c.dst_mac = u.mac;
    c.src_mac = kRouterMac;
    return o;
  }

  Opening host_opening() {
    Craft c;
    protocol(c, nullptr);
    c.ip_id = uint16_t(r_.next());
    if (r_.chance(0.6)) {
      const AttInfo& a = r_.pick(topo_.atts);
      const NetInfo& n = topo_.nets[a.net];
      const uint32_t k = r_.below(100);
      c.src = k < 60 ? n.gateway : k < 80 ? r_.pick(topo_.uplinks).ip : r_.pick(pools_.addrs);
      c.dst = r_.chance(0.9) ? a.ip : n.subnet.broadcast().value;
      c.src_mac = n.gateway_mac;
      c.dst_mac = r_.chance(0.9) ? a.mac : kBroadcastMac;
      return Opening{Hook::ToContainer, a.ifindex, c};
    }
    const UplinkInfo& u = r_.pick(topo_.uplinks);
    c.src = r_.chance(0.7) ? u.ip : r_.pick(pools_.addrs);
    c.dst = pools_.world.empty() ? r_.pick(pools_.addrs) : r_.pick(pools_.world);
    c.src_mac = u.mac;
    c.dst_mac = kRouterMac;
    return Opening{Hook::ToWorld, u.ifindex, c};
  }

  // ---- link layer --------------------------------------------------------------------

  void link_layer() {
    const AttInfo& a = r_.pick(topo_.atts);
    switch (r_.below(8)) {
      case 0:
      case 1:
        return arp_from(a);
      case 2:
        return arp_to(a);
      case 3:
        return link6(a, Hook::FromContainer);
      case 4:
        return link6(a, Hook::ToContainer);
      case 5:
        return other_ethertype(a);
      case 6:
        return at_uplink_or_unknown(a);
      default:
        return foreign_macs(a);
    }
  }

  size_t trailer() {
    const uint32_t k = r_.below(100);
    return k < 60 ? 0 : k < 80 ? 18 : k < 90 ? 1 + r_.below(17) : 19 + r_.below(40);
  }

  void arp_from(const AttInfo& a) {
    ArpCraft p;
    p.op = r_.chance(0.8) ? 1 : 2;
    const uint32_t k = r_.below(100);
    p.spa = k < 65 ? a.ip : k < 75 ? 0 : r_.pick(pools_.addrs);
    p.sha = r_.chance(0.85) ? a.mac : kForeignMac;
    p.eth_src = r_.chance(0.9) ? a.mac : kForeignMac;
    p.tpa = r_.chance(0.5) ? topo_.nets[a.net].gateway : r_.pick(pools_.addrs);
    p.eth_dst = p.op == 1 ? kBroadcastMac : topo_.nets[a.net].gateway_mac;
    p.trailer = trailer();
    const int s = send(Hook::FromContainer, a.ifindex, build_arp(p));
    const int f = refer(Step::Kind::Forward, s);
    if (r_.chance(0.5)) refer(Step::Kind::Forward, refer(Step::Kind::Reply, f));
  }

  void arp_to(const AttInfo& a) {
    ArpCraft p;
    p.op = r_.chance(0.6) ? 1 : 2;
    const uint32_t k = r_.below(100);
    const AttInfo& b = r_.pick(topo_.atts);
    p.spa = k < 30 ? topo_.nets[a.net].gateway : k < 60 ? b.ip : k < 75 ? 0 : r_.pick(pools_.addrs);
    p.sha = p.spa == b.ip ? b.mac : topo_.nets[a.net].gateway_mac;
    p.eth_src = p.sha;
    p.tpa = a.ip;
    p.tha = p.op == 2 ? a.mac : Mac{};
    p.eth_dst =
        p.op == 1 && r_.chance(0.8) ? kBroadcastMac : (r_.chance(0.85) ? a.mac : kForeignMac);
    p.trailer = trailer();
    // A neighbour's ARP enters the host by its veth; the gateway's is the host's own.
    const bool bridged = p.spa == b.ip && &b != &a && b.net == a.net;
    send(Hook::ToContainer, a.ifindex, build_arp(p), bridged ? b.ifindex : 0);
  }

  // ---- IPv6 -------------------------------------------------------------------------

  std::vector<const AttInfo*> with_ip6() const {
    std::vector<const AttInfo*> out;
    for (const auto& a : topo_.atts)
      if (a.ip6) out.push_back(&a);
    return out;
  }

  const AttInfo& some_att6() {
    const auto v = with_ip6();
    if (!v.empty() && r_.chance(0.85)) return *r_.pick(v);
    return r_.pick(topo_.atts);
  }

  std::vector<const AttInfo*> neighbours(const AttInfo& a) const {
    std::vector<const AttInfo*> out;
    for (const auto& b : topo_.atts)
      if (b.net == a.net && &b != &a) out.push_back(&b);
    return out;
  }

  Ip6Addr host_ll(const AttInfo& a) const {
    return eui64_link_local(topo_.nets[a.net].gateway_mac);
  }

  // Somewhere in `a`'s own IPv6 subnet that nobody has.
  Ip6Addr spare6(const AttInfo& a) {
    const NetInfo& n = topo_.nets[a.net];
    if (!n.subnet6) return r_.pick(pools_.addrs6);
    Ip6Addr x = n.subnet6->addr.bytes;
    x[14] = 0x01;
    x[15] = 0xc8;
    return x;
  }

  // A container's address: its global one mostly, else its link-local one.
  Ip6Addr addr_of(const AttInfo& b, double global = 0.75) {
    return b.ip6 && r_.chance(global) ? *b.ip6 : b.ll;
  }

  void protocol6(Craft6& c) {
    const uint32_t k = r_.below(100);
    c.proto = k < 38   ? uint8_t(IPPROTO_TCP)
              : k < 62 ? uint8_t(IPPROTO_UDP)
              : k < 90 ? uint8_t(IPPROTO_ICMPV6)
                       : r_.pick(std::vector<uint8_t>{132, 47, 59, 253});
    c.sport = uint16_t(r_.chance(0.9) ? 32768 + r_.below(28000) : r_.pick(pools_.ports));
    c.dport = r_.pick(pools_.ports);
    c.tcp_flags = r_.chance(0.8) ? kTcpSyn : later_flags();
    if (c.proto == IPPROTO_ICMPV6) {
      c.icmp_type = r_.chance(0.8) ? 128 : r_.pick(std::vector<uint8_t>{129, 1, 2, 3, 4, 139, 200});
      if (c.icmp_type < 128) c.body = Bytes(48, 0x60);
    }
    c.hop_limit = r_.chance(0.85) ? 64 : r_.pick(std::vector<uint8_t>{0, 1, 255});
    c.payload = {'f', 'u', 'z', 'z', '6'};
    extension_headers(c, 0.2);
  }

  void extension_headers(Craft6& c, double p) {
    if (!r_.chance(p)) return;
    switch (r_.below(11)) {
      case 0:
        c.ext = {0};
        break;
      case 1:
        c.ext = {60};
        break;
      case 2:
        c.ext = {0, 60};
        break;
      case 3:
        c.ext = {43};
        break;
      case 4:  // a first fragment
        c.ext = {44};
        c.more_fragments = true;
        break;
      case 5:  // a later fragment
        c.ext = {44};
        c.frag_offset = uint16_t(1 + r_.below(200));
        c.more_fragments = r_.chance(0.5);
        break;
      case 6:  // an atomic fragment
        c.ext = {0, 44};
        break;
      case 7:  // more than 8 headers
        c.ext = std::vector<uint8_t>(8 + r_.below(3), 60);
        break;
      case 8:  // hop-by-hop not first
        c.ext = {60, 0};
        break;
      case 9:  // two fragment headers
        c.ext = {44, 44};
        break;
      default:  // an authentication header, a chain of 8
        c.ext = r_.chance(0.5) ? std::vector<uint8_t>{51} : std::vector<uint8_t>(8, 60);
    }
  }

  Opening opening6() {
    const uint32_t k = r_.below(100);
    if (k < 55) return container_opening6();
    if (k < 80) return to_container6(some_att6(), "to a container");
    if (topo_.uplinks.empty()) return container_opening6();
    return k < 95 ? world_opening6() : host_to_world6();
  }

  Mac next_hop_mac6(const AttInfo& a, const Ip6Addr& dst) {
    if (ip6_multicast(dst)) return multicast_mac(dst);
    if (const AttInfo* b = topo_.att_with_ip6(dst); b && b->net == a.net) return b->mac;
    return topo_.nets[a.net].gateway_mac;
  }

  Opening container_opening6() {
    const AttInfo& a = some_att6();
    Craft6 c;
    protocol6(c);
    const uint32_t ks = r_.below(100);
    c.src = ks < 70 && a.ip6 ? *a.ip6
            : ks < 88        ? a.ll
            : ks < 92        ? Ip6Addr{}
                             : r_.pick(pools_.addrs6);
    const auto n = neighbours(a);
    const uint32_t k = r_.below(100);
    const NetInfo& net = topo_.nets[a.net];
    std::string what;
    if (k < 30) {
      c.dst = n.empty() || r_.chance(0.1) ? spare6(a) : addr_of(*r_.pick(n), 0.7);
      what = "to its network";
    } else if (k < 40) {
      c.dst = addr_of(*r_.pick(with_ip6().empty() ? std::vector<const AttInfo*>{&a} : with_ip6()));
      what = "to a container";
    } else if (k < 50) {
      c.dst = net.subnet6 && r_.chance(0.8) ? net.gateway6 : host_ll(a);
      what = "to its gateway";
    } else if (k < 55) {
      const NetInfo& other = r_.pick(topo_.nets);
      c.dst = other.subnet6 ? other.gateway6 : r_.pick(pools_.addrs6);
      what = "to a gateway";
    } else if (k < 67) {
      c.dst = r_.pick(pools_.world6);
      what = "to the world";
    } else if (k < 79) {
      c.dst = r_.pick(std::vector<Ip6Addr>{ip6_from_text("ff02::1"), ip6_from_text("ff02::fb"),
                                           ip6_from_text("ff05::1:3"), solicited_node(a.ll)});
      what = "to a multicast group";
    } else {
      c.dst = r_.pick(pools_.addrs6);
      what = "to anywhere";
    }
    c.src_mac = r_.chance(0.97) ? a.mac : kForeignMac;
    c.dst_mac = next_hop_mac6(a, c.dst);
    return Opening{Hook::FromContainer, a.ifindex, {}, build6(c), 0, "from a container " + what};
  }

  // A packet for `a`: from the host (its gateway or link-local address, the
  // world through it) or from a neighbour the bridge forwards it from.
  Opening to_container6(const AttInfo& a, const std::string& what) {
    Craft6 c;
    protocol6(c);
    const auto n = neighbours(a);
    uint32_t ingress = 0;
    const NetInfo& net = topo_.nets[a.net];
    const auto all6 = with_ip6();
    if (!n.empty() && r_.chance(0.5)) {
      const AttInfo& b = *r_.pick(n);
      c.src = r_.chance(0.95) ? addr_of(b, 0.6) : Ip6Addr{};
      c.src_mac = b.mac;
      ingress = b.ifindex;
    } else if (!all6.empty() && r_.chance(0.15)) {  // routed by the host from any network
      const AttInfo& b = *r_.pick(all6);
      c.src = *b.ip6;
      c.src_mac = net.gateway_mac;
      ingress = b.ifindex;
    } else {
      const uint32_t k = r_.below(100);
      c.src = k < 40 && net.subnet6 ? net.gateway6
              : k < 65              ? host_ll(a)
              : k < 85              ? r_.pick(pools_.world6)
                                    : r_.pick(pools_.addrs6);
      c.src_mac = net.gateway_mac;
    }
    const uint32_t k = r_.below(100);
    c.dst = k < 60 && a.ip6 ? *a.ip6
            : k < 80        ? a.ll
            : k < 95        ? ip6_from_text("ff02::1")
                            : r_.pick(pools_.addrs6);
    c.dst_mac = ip6_multicast(c.dst) ? multicast_mac(c.dst) : r_.chance(0.97) ? a.mac : kForeignMac;
    return Opening{
        Hook::ToContainer, a.ifindex, {},
        build6(c),         ingress,   what + (ingress ? " from a neighbour" : " from the host")};
  }

  Opening world_opening6() {
    const bool unknown = r_.chance(0.03);
    const UplinkInfo& u = r_.pick(topo_.uplinks);
    Craft6 c;
    protocol6(c);
    c.src = r_.chance(0.85) ? r_.pick(pools_.world6) : r_.pick(pools_.addrs6);
    const AttInfo& a = some_att6();
    const NetInfo& net = topo_.nets[a.net];
    const uint32_t k = r_.below(100);
    c.dst = k < 35 && a.ip6         ? *a.ip6
            : k < 55 && net.subnet6 ? net.gateway6
            : k < 65                ? spare6(a)
            : k < 75                ? r_.pick(pools_.world6)
                                    : r_.pick(pools_.addrs6);
    c.src_mac = kRouterMac;
    c.dst_mac = u.mac;
    return Opening{Hook::FromWorld, unknown ? topo_.unknown_ifindex : u.ifindex, {}, build6(c), 0,
                   "from the world"};
  }

  Opening host_to_world6() {
    const UplinkInfo& u = r_.pick(topo_.uplinks);
    Craft6 c;
    protocol6(c);
    c.src = r_.pick(pools_.addrs6);
    c.dst = r_.pick(pools_.world6);
    c.src_mac = u.mac;
    c.dst_mac = kRouterMac;
    return Opening{Hook::ToWorld, u.ifindex, {}, build6(c), 0, "the host to the world"};
  }

  // Link-layer address option `type` (1 source, 2 target) carrying `m`.
  static Bytes lla(uint8_t type, const Mac& m) {
    Bytes o(8, 0);
    o[0] = type;
    o[1] = 1;
    std::copy(m.begin(), m.end(), o.begin() + 2);
    return o;
  }

  Bytes options(uint8_t type, const Mac& own) {
    const uint32_t k = r_.below(100);
    if (k < 60) return lla(type, own);
    if (k < 75) return {};
    if (k < 85) return lla(type, kForeignMac);
    if (k < 92) return Bytes{type, 0, 0, 0, 0, 0, 0, 0};  // zero length
    Bytes o = lla(type, own);
    o[1] = 2;  // runs past the message
    return o;
  }

  static Bytes with(Ip6Addr a, const Bytes& rest) {
    Bytes b(a.begin(), a.end());
    b.insert(b.end(), rest.begin(), rest.end());
    return b;
  }

  // Neighbour discovery, MLD, RA and redirects, as a container sends them
  // (h from_container) or receives them from the host or a neighbour.
  void link6(const AttInfo& a, Hook h) {
    static const uint8_t kTypes[] = {133, 134, 135, 136, 137, 130, 131, 132, 143, 128, 129, 1};
    const uint8_t type = kTypes[r_.below(sizeof kTypes)];
    const bool mld = type == 130 || type == 131 || type == 132 || type == 143;
    const auto n = neighbours(a);
    const AttInfo* peer = n.empty() ? nullptr : r_.pick(n);
    Craft6 c;
    c.proto = IPPROTO_ICMPV6;
    c.icmp_type = type;
    c.hop_limit = r_.chance(0.8) ? (mld ? 1 : 255) : r_.pick(std::vector<uint8_t>{1, 64, 254, 255});
    uint32_t ingress = 0;
    Mac mac_self = a.mac;
    if (h == Hook::FromContainer) {
      const uint32_t k = r_.below(100);
      c.src = k < 60            ? a.ll
              : k < 78          ? Ip6Addr{}
              : k < 88 && a.ip6 ? *a.ip6
                                : r_.pick(pools_.addrs6);
      c.src_mac = r_.chance(0.95) ? a.mac : kForeignMac;
    } else if (peer && r_.chance(0.5)) {
      c.src = r_.chance(0.8) ? peer->ll : r_.chance(0.5) && peer->ip6 ? *peer->ip6 : Ip6Addr{};
      c.src_mac = peer->mac;
      mac_self = peer->mac;
      ingress = peer->ifindex;
    } else {
      const NetInfo& net = topo_.nets[a.net];
      c.src = r_.chance(0.7) || !net.subnet6 ? host_ll(a) : net.gateway6;
      c.src_mac = net.gateway_mac;
      mac_self = net.gateway_mac;
    }
    // What the message is about, and where it goes.
    const Ip6Addr own_target =
        h == Hook::FromContainer ? a.ll : (peer && ingress ? peer->ll : host_ll(a));
    const uint32_t kt = r_.below(100);
    Ip6Addr target = kt < 55            ? own_target
                     : kt < 75 && a.ip6 ? *a.ip6
                     : kt < 90 && peer  ? addr_of(*peer, 0.5)
                                        : r_.pick(pools_.addrs6);
    if (h == Hook::FromContainer && kt >= 55 && kt < 75 && a.ip6) target = *a.ip6;
    const Ip6Addr group = ip6_from_text(r_.chance(0.5) ? "ff02::fb" : "ff05::1:3");
    switch (type) {
      case 133:
        c.dst = ip6_from_text("ff02::2");
        c.body = options(1, mac_self);
        break;
      case 134:
        c.dst = ip6_from_text("ff02::1");
        c.body = Bytes(8, 0);
        {
          const Bytes o = options(1, mac_self);
          c.body.insert(c.body.end(), o.begin(), o.end());
        }
        break;
      case 135:
        c.dst = r_.chance(0.7) ? solicited_node(target)
                               : (h == Hook::FromContainer && peer ? peer->ll : a.ll);
        c.body = with(target, options(1, mac_self));
        break;
      case 136:
        c.dst = r_.chance(0.5) ? ip6_from_text("ff02::1")
                               : (h == Hook::FromContainer && peer ? peer->ll : a.ll);
        c.body = with(target, options(2, mac_self));
        break;
      case 137:
        c.dst = a.ll;
        c.body = with(target, Bytes(16, 0));
        break;
      case 130:
        c.dst = ip6_from_text("ff02::1");
        c.body = Bytes(16, 0);
        break;
      case 131:
      case 132:
        c.dst = group;
        c.body = Bytes(group.begin(), group.end());
        break;
      case 143: {
        c.dst = ip6_from_text("ff02::16");
        c.body = {4, 0, 0, 0};
        c.body.insert(c.body.end(), group.begin(), group.end());
        break;
      }
      case 1:
        c.dst = h == Hook::FromContainer && peer ? peer->ll : a.ll;
        c.body = Bytes(48, 0x60);
        break;
      default:  // echo
        c.dst = h == Hook::FromContainer && peer ? addr_of(*peer, 0.3) : addr_of(a, 0.3);
        c.sport = uint16_t(r_.next());
    }
    if (mld && r_.chance(0.8)) c.ext = {0};
    const uint32_t kf = r_.below(100);
    if (kf < 8) {
      c.ext.push_back(44);  // a first (or only) fragment: RFC 6980
      c.more_fragments = r_.chance(0.5);
    } else if (kf < 11) {
      c.ext.push_back(44);
      c.frag_offset = uint16_t(1 + r_.below(20));
    } else if (kf < 13) {
      c.ext.push_back(r_.chance(0.5) ? 60 : 43);
    }
    Bytes f = build6(c);
    if (r_.chance(0.06)) {  // the message cut short: under 4 or 8 bytes, or a body cut
      const Ip6 ip = parse_ip6(f);
      const size_t keep = ip.l4 + r_.below(12);
      if (keep < f.size()) {
        f.resize(keep);
        put16(f, 14 + 4, uint16_t(keep - 14 - 40));
      }
    }
    // Ethernet: the group's multicast MAC, else the addressee's.
    if (ip6_multicast(c.dst))
      put_mac(f, 0, multicast_mac(c.dst));
    else if (h == Hook::ToContainer)
      put_mac(f, 0, a.mac);
    else if (const AttInfo* b = topo_.att_with_ip6(c.dst); b && b->net == a.net)
      put_mac(f, 0, b->mac);
    else
      put_mac(f, 0, topo_.nets[a.net].gateway_mac);
    const int s = send(h, a.ifindex, f, ingress);
    if (h == Hook::FromContainer) refer(Step::Kind::Forward, s);
  }

  void other_ethertype(const AttInfo& a) {
    const Hook h = r_.chance(0.5) ? Hook::FromContainer : Hook::ToContainer;
    Craft c;
    c.src = h == Hook::FromContainer ? a.ip : topo_.nets[a.net].gateway;
    c.dst = h == Hook::FromContainer ? topo_.nets[a.net].gateway : a.ip;
    c.src_mac = h == Hook::FromContainer ? a.mac : topo_.nets[a.net].gateway_mac;
    c.dst_mac = h == Hook::FromContainer ? topo_.nets[a.net].gateway_mac : a.mac;
    c.proto = IPPROTO_UDP;
    c.sport = 40000;
    c.dport = 53;
    Bytes f = build(c);
    const uint32_t k = r_.below(4);
    if (k < 2) {  // 802.1Q / 802.1ad tag in the frame
      const Bytes tag = {0x00, uint8_t(1 + r_.below(200)), 0x08, 0x00};
      put16(f, 12, k == 0 ? kEthVlan : kEthQinQ);
      f.insert(f.begin() + 14, tag.begin(), tag.end());
    } else {
      static const uint16_t kTypes[] = {0x88cc, 0x88b5, 0x0042, 0x8035, 0x9000, 0x0600, 0x05dc};
      put16(f, 12, kTypes[r_.below(7)]);
    }
    send(h, a.ifindex, f);
  }

  void at_uplink_or_unknown(const AttInfo& a) {
    if (r_.chance(0.5) || topo_.uplinks.empty()) {
      Craft c;
      c.src = a.ip;
      c.dst = topo_.nets[a.net].gateway;
      c.src_mac = a.mac;
      c.dst_mac = topo_.nets[a.net].gateway_mac;
      c.sport = 40000;
      c.dport = 80;
      send(r_.chance(0.5) ? Hook::FromContainer : Hook::ToContainer, topo_.unknown_ifindex,
           build(c));
      return;
    }
    const UplinkInfo& u = r_.pick(topo_.uplinks);
    const Hook h = r_.chance(0.5) ? Hook::FromWorld : Hook::ToWorld;
    ArpCraft p;
    p.eth_dst = kBroadcastMac;
    p.eth_src = kRouterMac;
    p.sha = kRouterMac;
    p.spa = r_.pick(pools_.routers);
    p.tpa = u.ip;
    send(h, u.ifindex,
         r_.chance(0.5) ? build_arp(p) : build_icmp6(kBroadcastMac, kRouterMac, 135, 255, false));
  }

  void foreign_macs(const AttInfo& a) {
    Craft c;
    protocol(c, nullptr);
    const bool out = r_.chance(0.5);
    c.src = out ? a.ip : topo_.nets[a.net].gateway;
    c.dst = out ? topo_.nets[a.net].gateway : a.ip;
    c.src_mac = out ? kForeignMac : topo_.nets[a.net].gateway_mac;
    c.dst_mac =
        out ? topo_.nets[a.net].gateway_mac : (r_.chance(0.5) ? kForeignMac : kBroadcastMac);
    send(out ? Hook::FromContainer : Hook::ToContainer, a.ifindex, build(c));
  }

  const Topology& topo_;
  const Pools& pools_;
  size_t variants_;
  Rng r_;
  Case c_;
  bool mutating_ = false;
};

}  // namespace

Case plan_case(const Topology& topo, const Pools& pools, size_t variants, uint64_t seed) {
  return Planner(topo, pools, variants, seed).plan();
}

}  // namespace fuzz
