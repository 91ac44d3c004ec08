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
};

class Planner {
public:
  Planner(const Topology &topo, const Pools &pools, size_t variants,
          uint64_t seed)
      : topo_(topo), pools_(pools), variants_(variants), r_(seed) {
    mutating_ = r_.chance(0.3);
  }

  Case plan() {
    const uint32_t kind = r_.below(100);
    if (kind < 15 || topo_.atts.empty()) {
      c_.scenario = "link-layer";
      const uint32_t n = 1 + r_.below(4);
      for (uint32_t i = 0; i < n; i++)
        link_layer();
    } else {
      flow(kind < 25 ? 6 : 3);
    }
    return c_;
  }

private:
  int add(Step s) {
    const bool eligible =
        s.kind != Step::Kind::Forward && s.kind != Step::Kind::Rev;
    if (eligible && mutating_ && r_.chance(0.25))
      s.mutate = r_.next() | 1;
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

  // ---- flows
  // -------------------------------------------------------------------------

  void flow(uint32_t max_actions) {
    Opening o = opening();
    c_.scenario = std::string("flow ") + hook_name(o.hook) + " proto " +
                  std::to_string(o.craft.proto);
    const int s0 = send(o.hook, o.ifindex, build(o.craft));
    int init = refer(Step::Kind::Forward, s0);
    int resp = refer(Step::Kind::Forward,
                     refer(Step::Kind::Reply, init, kTcpSyn | kTcpAck));
    const uint32_t n = 1 + r_.below(max_actions);
    for (uint32_t k = 0; k < n; k++) {
      const uint32_t a = r_.below(100);
      if (a < 35) {
        init = refer(Step::Kind::Forward,
                     refer(Step::Kind::Again, s0, later_flags()));
      } else if (a < 60) {
        resp = refer(Step::Kind::Forward,
                     refer(Step::Kind::Reply, init, later_flags()));
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

  uint8_t later_flags() {
    static const uint8_t kFlags[] = {
        kTcpAck, kTcpAck,           kTcpPsh | kTcpAck, kTcpFin | kTcpAck,
        kTcpRst, kTcpRst | kTcpAck, kTcpSyn,           0x00};
    return kFlags[r_.below(sizeof kFlags)];
  }

  int error(int ref) {
    static const std::pair<uint8_t, uint8_t> kKinds[] = {
        {3, 3}, {3, 4}, {3, 1}, {11, 0}, {12, 0}};
    Step s;
    s.kind = Step::Kind::Error;
    s.ref = ref;
    std::tie(s.error.type, s.error.code) = kKinds[r_.below(5)];
    if (r_.chance(0.35))
      s.error.outer_src =
          r_.chance(0.5) ? r_.pick(pools_.routers) : r_.pick(pools_.addrs);
    if (r_.chance(0.3))
      s.error.outer_dst = r_.pick(pools_.addrs);
    s.error.quote_input = r_.chance(0.15);
    s.error.full_quote = r_.chance(0.3);
    if (r_.chance(0.1))
      s.error.forge_quoted_src = r_.pick(pools_.addrs);
    if (r_.chance(0.1))
      s.error.forge_quoted_dst = r_.pick(pools_.addrs);
    if (r_.chance(0.1))
      s.error.forge_quoted_sport = r_.pick(pools_.ports);
    return add(std::move(s));
  }

  Opening opening() {
    const uint32_t k = r_.below(100);
    if (k < 55 || topo_.uplinks.empty())
      return container_opening();
    if (k < 85)
      return world_opening();
    return host_opening();
  }

  void protocol(Craft &c, const PublishInfo *pub) {
    const uint32_t k = r_.below(100);
    c.proto = pub      ? pub->proto
              : k < 50 ? IPPROTO_TCP
              : k < 75 ? IPPROTO_UDP
              : k < 90 ? IPPROTO_ICMP
              : k < 95 ? IPPROTO_SCTP
                       : (r_.chance(0.5) ? 47 : 253);
    c.sport = uint16_t(r_.chance(0.9) ? 32768 + r_.below(28000)
                                      : r_.pick(pools_.ports));
    c.dport = pub ? pub->host_port : r_.pick(pools_.ports);
    if (c.proto == IPPROTO_SCTP && pub)
      c.dport = pub->host_port;
    c.tcp_flags = r_.chance(0.8) ? kTcpSyn : later_flags();
    c.icmp_type =
        r_.chance(0.9) ? 8 : r_.pick(std::vector<uint8_t>{0, 13, 3, 11});
    if (c.icmp_type == 3 || c.icmp_type == 11)
      c.quoted = Bytes(28, 0x45);
    c.ip_id = uint16_t(r_.next());
    c.payload = {'f', 'u', 'z', 'z'};
  }

  const PublishInfo *some_publish() {
    return topo_.publishes.empty() ? nullptr : &r_.pick(topo_.publishes);
  }

  uint32_t host_address_for(const PublishInfo *pub, const AttInfo *client) {
    if (pub && pub->host_ip && r_.chance(0.7))
      return *pub->host_ip;
    const uint32_t k = r_.below(3);
    if (k == 0 && client)
      return topo_.nets[client->net].gateway;
    if (k == 1 && !topo_.uplinks.empty())
      return r_.pick(topo_.uplinks).ip;
    return r_.pick(topo_.nets).gateway;
  }

  Opening container_opening() {
    const AttInfo &a = r_.pick(topo_.atts);
    Opening o{Hook::FromContainer, a.ifindex, {}};
    Craft &c = o.craft;
    const uint32_t k = r_.below(100);
    const PublishInfo *pub = k < 18 ? some_publish() : nullptr;
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

  uint32_t same_net_peer(const AttInfo &a) {
    std::vector<uint32_t> peers;
    for (const auto &b : topo_.atts)
      if (b.net == a.net && b.ip != a.ip)
        peers.push_back(b.ip);
    const auto &subnet = topo_.nets[a.net].subnet;
    if (peers.empty() || r_.chance(0.15))
      return r_.chance(0.5) ? subnet.broadcast().value
                            : subnet.addr.value + 200;
    return r_.pick(peers);
  }

  Mac next_hop_mac(const AttInfo &a, uint32_t dst) {
    if (const AttInfo *b = topo_.att_with_ip(dst); b && b->net == a.net)
      return b->mac;
    if (topo_.is_broadcast_for(a, dst))
      return (dst >> 28) == 0xe ? Mac{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb}
                                : kBroadcastMac;
    return topo_.nets[a.net].gateway_mac;
  }

  Opening world_opening() {
    const bool unknown = r_.chance(0.03);
    const UplinkInfo &u = r_.pick(topo_.uplinks);
    Opening o{Hook::FromWorld, unknown ? topo_.unknown_ifindex : u.ifindex, {}};
    Craft &c = o.craft;
    const PublishInfo *pub = r_.chance(0.6) ? some_publish() : nullptr;
    protocol(c, pub);
    c.src = r_.chance(0.8) && !pools_.world.empty() ? r_.pick(pools_.world)
                                                    : r_.pick(pools_.addrs);
    const uint32_t k = r_.below(100);
    c.dst = k < 50                          ? u.ip
            : k < 70                        ? host_address_for(pub, nullptr)
            : k < 85 && !topo_.atts.empty() ? r_.pick(topo_.atts).ip
                                            : r_.pick(pools_.addrs);
    if (pub && pub->host_ip && r_.chance(0.5))
      c.dst = *pub->host_ip;
    c.dst_mac = u.mac;
    c.src_mac = kRouterMac;
    return o;
  }

  Opening host_opening() {
    Craft c;
    protocol(c, nullptr);
    c.ip_id = uint16_t(r_.next());
    if (r_.chance(0.6)) {
      const AttInfo &a = r_.pick(topo_.atts);
      const NetInfo &n = topo_.nets[a.net];
      const uint32_t k = r_.below(100);
      c.src = k < 60   ? n.gateway
              : k < 80 ? r_.pick(topo_.uplinks).ip
                       : r_.pick(pools_.addrs);
      c.dst = r_.chance(0.9) ? a.ip : n.subnet.broadcast().value;
      c.src_mac = n.gateway_mac;
      c.dst_mac = r_.chance(0.9) ? a.mac : kBroadcastMac;
      return Opening{Hook::ToContainer, a.ifindex, c};
    }
    const UplinkInfo &u = r_.pick(topo_.uplinks);
    c.src = r_.chance(0.7) ? u.ip : r_.pick(pools_.addrs);
    c.dst =
        pools_.world.empty() ? r_.pick(pools_.addrs) : r_.pick(pools_.world);
    c.src_mac = u.mac;
    c.dst_mac = kRouterMac;
    return Opening{Hook::ToWorld, u.ifindex, c};
  }

  // ---- link layer
  // --------------------------------------------------------------------

  void link_layer() {
    const AttInfo &a = r_.pick(topo_.atts);
    switch (r_.below(8)) {
    case 0:
    case 1:
      return arp_from(a);
    case 2:
      return arp_to(a);
    case 3:
      return ipv6(a, Hook::FromContainer);
    case 4:
      return ipv6(a, Hook::ToContainer);
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
    return k < 60   ? 0
           : k < 80 ? 18
           : k < 90 ? 1 + r_.below(17)
                    : 19 + r_.below(40);
  }

  void arp_from(const AttInfo &a) {
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
    if (r_.chance(0.5))
      refer(Step::Kind::Forward, refer(Step::Kind::Reply, f));
  }

  void arp_to(const AttInfo &a) {
    ArpCraft p;
    p.op = r_.chance(0.6) ? 1 : 2;
    const uint32_t k = r_.below(100);
    const AttInfo &b = r_.pick(topo_.atts);
    p.spa = k < 30   ? topo_.nets[a.net].gateway
            : k < 60 ? b.ip
            : k < 75 ? 0
                     : r_.pick(pools_.addrs);
    p.sha = p.spa == b.ip ? b.mac : topo_.nets[a.net].gateway_mac;
    p.eth_src = p.sha;
    p.tpa = a.ip;
    p.tha = p.op == 2 ? a.mac : Mac{};
    p.eth_dst = p.op == 1 && r_.chance(0.8)
                    ? kBroadcastMac
                    : (r_.chance(0.85) ? a.mac : kForeignMac);
    p.trailer = trailer();
    // A neighbour's ARP enters the host by its veth; the gateway's is the
    // host's own.
    const bool bridged = p.spa == b.ip && &b != &a && b.net == a.net;
    send(Hook::ToContainer, a.ifindex, build_arp(p), bridged ? b.ifindex : 0);
  }

  void ipv6(const AttInfo &a, Hook h) {
    static const uint8_t kTypes[] = {133, 134, 135, 136, 137, 130,
                                     131, 132, 143, 128, 129, 1};
    const uint8_t type = kTypes[r_.below(sizeof kTypes)];
    const bool mld = type >= 130 && type <= 132 ? true : type == 143;
    const uint8_t hop = r_.chance(0.8)
                            ? (mld ? 1 : 255)
                            : r_.pick(std::vector<uint8_t>{1, 64, 254, 255});
    const uint8_t next =
        r_.chance(0.9) ? 58 : r_.pick(std::vector<uint8_t>{6, 17, 60, 44});
    const Mac multicast = {0x33, 0x33, 0xff, 0x14, 0x00, 0x03};
    const Mac src =
        h == Hook::FromContainer ? a.mac : topo_.nets[a.net].gateway_mac;
    const Mac dst =
        r_.chance(0.7)
            ? multicast
            : (h == Hook::ToContainer ? a.mac : topo_.nets[a.net].gateway_mac);
    const int s =
        send(h, a.ifindex,
             build_icmp6(dst, src, type, hop, mld || r_.chance(0.1), next));
    if (h == Hook::FromContainer)
      refer(Step::Kind::Forward, s);
  }

  void other_ethertype(const AttInfo &a) {
    const Hook h = r_.chance(0.5) ? Hook::FromContainer : Hook::ToContainer;
    Craft c;
    c.src = h == Hook::FromContainer ? a.ip : topo_.nets[a.net].gateway;
    c.dst = h == Hook::FromContainer ? topo_.nets[a.net].gateway : a.ip;
    c.src_mac =
        h == Hook::FromContainer ? a.mac : topo_.nets[a.net].gateway_mac;
    c.dst_mac =
        h == Hook::FromContainer ? topo_.nets[a.net].gateway_mac : a.mac;
    c.proto = IPPROTO_UDP;
    c.sport = 40000;
    c.dport = 53;
    Bytes f = build(c);
    const uint32_t k = r_.below(4);
    if (k < 2) { // 802.1Q / 802.1ad tag in the frame
      const Bytes tag = {0x00, uint8_t(1 + r_.below(200)), 0x08, 0x00};
      put16(f, 12, k == 0 ? kEthVlan : kEthQinQ);
      f.insert(f.begin() + 14, tag.begin(), tag.end());
    } else {
      static const uint16_t kTypes[] = {0x88cc, 0x88b5, 0x0042, 0x8035,
                                        0x9000, 0x0600, 0x05dc};
      put16(f, 12, kTypes[r_.below(7)]);
    }
    send(h, a.ifindex, f);
  }

  void at_uplink_or_unknown(const AttInfo &a) {
    if (r_.chance(0.5) || topo_.uplinks.empty()) {
      Craft c;
      c.src = a.ip;
      c.dst = topo_.nets[a.net].gateway;
      c.src_mac = a.mac;
      c.dst_mac = topo_.nets[a.net].gateway_mac;
      c.sport = 40000;
      c.dport = 80;
      send(r_.chance(0.5) ? Hook::FromContainer : Hook::ToContainer,
           topo_.unknown_ifindex, build(c));
      return;
    }
    const UplinkInfo &u = r_.pick(topo_.uplinks);
    const Hook h = r_.chance(0.5) ? Hook::FromWorld : Hook::ToWorld;
    ArpCraft p;
    p.eth_dst = kBroadcastMac;
    p.eth_src = kRouterMac;
    p.sha = kRouterMac;
    p.spa = r_.pick(pools_.routers);
    p.tpa = u.ip;
    send(h, u.ifindex,
         r_.chance(0.5)
             ? build_arp(p)
             : build_icmp6(kBroadcastMac, kRouterMac, 135, 255, false));
  }

  void foreign_macs(const AttInfo &a) {
    Craft c;
    protocol(c, nullptr);
    const bool out = r_.chance(0.5);
    c.src = out ? a.ip : topo_.nets[a.net].gateway;
    c.dst = out ? topo_.nets[a.net].gateway : a.ip;
    c.src_mac = out ? kForeignMac : topo_.nets[a.net].gateway_mac;
    c.dst_mac = out ? topo_.nets[a.net].gateway_mac
                    : (r_.chance(0.5) ? kForeignMac : kBroadcastMac);
    send(out ? Hook::FromContainer : Hook::ToContainer, a.ifindex, build(c));
  }

  const Topology &topo_;
  const Pools &pools_;
  size_t variants_;
  Rng r_;
  Case c_;
  bool mutating_ = false;
};

} // namespace

Case plan_case(const Topology &topo, const Pools &pools, size_t variants,
               uint64_t seed) {
  return Planner(topo, pools, variants, seed).plan();
}

} // namespace fuzz
