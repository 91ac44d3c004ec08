#include "lab/expectations.h"

#include <netinet/in.h>

#include <algorithm>
#include <tuple>

#include "plan/plan.h"
#include "policy/policy.h"

namespace moat {

namespace {

// SCTP is never probed: callers skip it first.
// A container's exposed ports and the first few of each published range,
// sorted and without repeats.
std::vector<Expose> probed_ports(const Container& dst) {
  std::vector<Expose> ports = dst.expose;
  for (const auto& p : dst.publish)
    for (uint16_t i = 0; i < std::min<uint16_t>(p.count, 4); ++i)
      ports.push_back({static_cast<uint16_t>(p.container_port + i), p.protocol});
  std::sort(ports.begin(), ports.end(), [](auto& a, auto& b) {
    return std::tie(a.port, a.protocol) < std::tie(b.port, b.protocol);
  });
  ports.erase(
      std::unique(ports.begin(), ports.end(),
                  [](auto& a, auto& b) { return a.port == b.port && a.protocol == b.protocol; }),
      ports.end());
  return ports;
}

bool has_ipv6(const Container& c) {
  return std::any_of(c.networks.begin(), c.networks.end(),
                     [](const Attachment& a) { return a.ip6.has_value(); });
}

const Attachment* attachment_on(const Container& c, const std::string& network) {
  for (const Attachment& a : c.networks)
    if (a.network == network) return &a;
  return nullptr;
}

// Over IPv6 a container reaches a network's addresses from its own IPv6
// address there: without one its kernel routes through another network (or
// nowhere), which isolation stops as it stops any crossing.
bool isolation_allows6(const Config& cfg, const Container* src, const Container& dst,
                       const Attachment& dst_att) {
  if (!dst_att.ip6 || !isolation_allows(cfg, src, dst, dst_att)) return false;
  if (!src) return true;
  const Attachment* own = attachment_on(*src, dst_att.network);
  return own && own->ip6;
}

}  // namespace

std::vector<Probe> lab_probes(const Config& cfg, const std::string& lab) {
  std::vector<Probe> out;
  std::vector<std::pair<std::string, const Container*>> sources;
  for (const auto& c : cfg.containers) sources.emplace_back(c.name, &c);
  sources.emplace_back("host", nullptr);
  // Every IPv4 probe first, then the same over IPv6 to every IPv6 address,
  // from the host and every container with an IPv6 address of its own.
  for (bool v6 : {false, true}) {
    for (const auto& [label, src] : sources) {
      if (v6 && src && !has_ipv6(*src)) continue;
      std::string ns = "/run/netns/" + (src ? lab_container_ns(lab, src->name) : lab_host_ns(lab));
      for (const auto& dst : cfg.containers) {
        if (src == &dst || (src && src->networks.empty())) continue;
        for (const auto& att : dst.networks) {
          if (v6 && !att.ip6) continue;
          bool expected =
              v6 ? isolation_allows6(cfg, src, dst, att) : isolation_allows(cfg, src, dst, att);
          auto add = [&](Protocol proto, uint16_t port) {
            out.push_back({label, ns, dst.name + "@" + att.network, att.ip, proto, port, expected,
                           proto == Protocol::icmp ? "" : dst.name, v6 ? att.ip6 : std::nullopt});
          };
          for (const auto& p : probed_ports(dst)) {
            if (p.protocol == Protocol::sctp) continue;
            add(p.protocol, p.port);
          }
          add(Protocol::icmp, 0);
        }
      }
    }
  }
  return out;
}

namespace {

struct Source {
  std::string label, ns;
  Ipv4 via;
  bool from_host;  // 127.0.0.1-bound publishes are for the host only
  bool internal;   // an internal network's container
  std::optional<Ipv6> via6;  // set: the source dials this IPv6 address (via unused)
};

const Ipv6 kLoopback6 = *Ipv6::parse("::1");

// The outside, the host at 127.0.0.1 (second: unpublished ports are probed
// from the first two) and at the uplink address, then every container.
std::vector<Source> publish_sources(const Config& cfg, const std::string& lab, Ipv4 uplink,
                                    Ipv4 loopback) {
  std::vector<Source> sources = {
      {"outside", "/run/netns/" + lab_outside_ns(lab), uplink, false, false, std::nullopt},
      {"host@127.0.0.1", "/run/netns/" + lab_host_ns(lab), loopback, true, false, std::nullopt},
      {"host@" + uplink.str(), "/run/netns/" + lab_host_ns(lab), uplink, true, false,
       std::nullopt}};
  for (const auto& c : cfg.containers) {
    if (c.networks.empty()) continue;
    const Network* n = cfg.find_network(c.networks.front().network);
    if (!n) continue;
    sources.push_back({c.name + "@gateway", "/run/netns/" + lab_container_ns(lab, c.name),
                       n->gateway, false, n->internal, std::nullopt});
  }
  return sources;
}

// The same over IPv6, in a dual-stack lab: the outside at the uplink's IPv6
// address, the host at [::1] and at that address, every container with an
// IPv6 address on its first network at that network's IPv6 gateway.
std::vector<Source> publish_sources6(const Config& cfg, const std::string& lab,
                                     const Ipv6& uplink) {
  const std::string host = "/run/netns/" + lab_host_ns(lab);
  std::vector<Source> sources = {
      {"outside", "/run/netns/" + lab_outside_ns(lab), Ipv4{}, false, false, uplink},
      {"host@::1", host, Ipv4{}, true, false, kLoopback6},
      {"host@" + uplink.str(), host, Ipv4{}, true, false, uplink}};
  for (const auto& c : cfg.containers) {
    if (c.networks.empty() || !c.networks.front().ip6) continue;
    const Network* n = cfg.find_network(c.networks.front().network);
    if (!n || !n->subnet6) continue;
    sources.push_back({c.name + "@gateway6", "/run/netns/" + lab_container_ns(lab, c.name), Ipv4{},
                       false, n->internal, n->gateway6});
  }
  return sources;
}

// Whether `p` answers `src` at the address it dials: one the publish is bound
// to (or every one of the family), the loopback for the host only, and no
// container of an internal network.
bool publish_reaches(const Publish& p, const Source& src, Ipv4 loopback) {
  if (src.internal) return false;
  if (src.via6) {
    if (!p.any_ipv6() && *p.host_ip6 != *src.via6) return false;
    return src.from_host || *src.via6 != kLoopback6;
  }
  if (!p.any_ipv4() && p.host_ip->value != src.via.value) return false;
  return src.from_host || src.via.value != loopback.value;
}

// Published ports of the sources' family (the first source's): over IPv6
// only a container with an IPv6 address where its ports are published
// answers, as Docker publishes on [::] only then.
void add_published(std::vector<Probe>& out, const Config& cfg, const Container& dst,
                   const std::vector<Source>& sources, Ipv4 loopback) {
  const bool v6 = !sources.empty() && sources.front().via6;
  const Attachment* target = publish_target(cfg, dst);
  const bool backend = !v6 || (target && target->ip6);
  for (const auto& p : dst.publish) {
    if (p.protocol == Protocol::sctp || !(v6 ? p.on_ipv6() : p.on_ipv4())) continue;
    std::string bound = p.host_ip    ? p.host_ip->str() + ":"
                        : p.host_ip6 ? "[" + p.host_ip6->str() + "]:"
                                     : "";
    for (uint16_t i = 0; i < std::min<uint16_t>(p.count, 2); ++i) {
      uint16_t port = static_cast<uint16_t>(p.host_port + i);
      std::string label = dst.name + " -p " + bound + std::to_string(port) + ":" +
                          std::to_string(p.container_port + i) + "/" + to_string(p.protocol);
      for (const auto& src : sources) {
        bool expected = backend && publish_reaches(p, src, loopback);
        out.push_back(
            {src.label, src.ns, label, src.via, p.protocol, port, expected, dst.name, src.via6});
      }
    }
  }
}

void add_unpublished(std::vector<Probe>& out, const Container& dst,
                     const std::vector<Source>& sources) {
  for (const auto& e : dst.expose) {
    bool published = false;
    for (const auto& p : dst.publish)
      published |= p.protocol == e.protocol && e.port >= p.container_port &&
                   e.port < p.container_port + p.count && p.host_port == p.container_port;
    if (published || e.protocol == Protocol::sctp) continue;
    for (size_t i = 0; i < 2; ++i)  // outside, and the host at 127.0.0.1
      out.push_back({sources[i].label, sources[i].ns,
                     dst.name + " " + std::to_string(e.port) + "/" + to_string(e.protocol) +
                         " (not published)",
                     sources[i].via, e.protocol, e.port, false, "", sources[i].via6});
  }
}

}  // namespace

std::vector<Probe> lab_publish_probes(const Config& cfg, const std::string& lab,
                                      const LabInfo& info) {
  std::vector<Probe> out;
  auto uplink = Ipv4::parse(info.uplink_host_ip);
  if (!uplink) return out;
  const Ipv4 loopback{0x7f000001};
  auto sources = publish_sources(cfg, lab, *uplink, loopback);
  for (const auto& dst : cfg.containers) {
    add_published(out, cfg, dst, sources, loopback);
    add_unpublished(out, dst, sources);
  }
  auto uplink6 = Ipv6::parse(info.uplink_host_ip6);
  if (!uplink6 || !lab_has_ipv6(cfg)) return out;
  auto sources6 = publish_sources6(cfg, lab, *uplink6);
  for (const auto& dst : cfg.containers) {
    add_published(out, cfg, dst, sources6, loopback);
    add_unpublished(out, dst, sources6);
  }
  return out;
}

namespace {

// A container at one attachment's addresses, an IPv6 flow's side when `v6`.
PolicyEndpoint attachment_ep(const std::string& name, const Attachment* a, bool v6) {
  PolicyEndpoint e;
  e.kind = PolicyEndpoint::Kind::container;
  e.container = name;
  if (a) {
    e.ip = a->ip;
    e.ip6 = a->ip6;
  }
  e.v6 = v6 && e.ip6;
  return e;
}

PolicyEndpoint container_ep(const Config& cfg, const std::string& name, bool v6 = false) {
  const Container* c = cfg.find_container(name);
  return attachment_ep(name, c && !c->networks.empty() ? &c->networks[0] : nullptr, v6);
}

// A probe's source label ("host@...", "outside", "NAME@gateway[6]") as a
// policy peer, of the probe's family.
PolicyEndpoint source_ep(const Config& cfg, const LabInfo& info, const std::string& label,
                         bool v6) {
  std::string who = label.substr(0, label.find('@'));
  PolicyEndpoint e;
  if (who == "host") {
    e.kind = PolicyEndpoint::Kind::host;
    auto uplink = Ipv4::parse(info.uplink_host_ip);
    e.ip = uplink ? *uplink : Ipv4{0x7f000001};
    if (v6) e = ipv6_endpoint(cfg, e).value_or(e);
  } else if (who == "outside") {
    e.kind = PolicyEndpoint::Kind::address;
    if (auto outside = Ipv4::parse(info.uplink_outside_ip)) e.ip = *outside;
    if (v6) {
      e.ip6 = Ipv6::parse(info.uplink_outside_ip6);
      e.v6 = e.ip6.has_value();
    }
  } else {
    e = container_ep(cfg, who, v6);
  }
  return e;
}

// The source of a probe to `p.dst` ("NAME@NETWORK") with the address the
// kernel sees: the host and a container attached there dial from their own
// address on that network. ipBlocks match addresses, so it matters.
PolicyEndpoint isolation_source(const Config& cfg, const LabInfo& info, const Probe& p) {
  PolicyEndpoint from = source_ep(cfg, info, p.src, p.ipv6());
  const std::string net = p.dst.substr(p.dst.find('@') + 1);
  if (from.kind == PolicyEndpoint::Kind::host) {
    if (const Network* n = cfg.find_network(net)) {
      from.ip = n->gateway;
      if (p.ipv6() && n->subnet6) from.ip6 = n->gateway6;
    }
  } else if (const Container* c = cfg.find_container(from.container)) {
    if (const Attachment* a = attachment_on(*c, net); a && (!p.ipv6() || a->ip6))
      from = attachment_ep(c->name, a, p.ipv6());
  }
  return from;
}

}  // namespace

void expect_policy(const Config& cfg, const LabInfo& info, std::vector<Probe>& isolation,
                   std::vector<Probe>& published) {
  if (cfg.policies.empty()) return;
  for (auto& p : isolation) {
    if (!p.expected) continue;
    const std::string name = p.dst.substr(0, p.dst.find('@'));
    const Container* dst = cfg.find_container(name);
    if (!dst) continue;
    PolicyEndpoint to =
        attachment_ep(name, attachment_on(*dst, p.dst.substr(p.dst.find('@') + 1)), p.ipv6());
    p.expected =
        evaluate_model(cfg, isolation_source(cfg, info, p), to, ip_protocol_number(p.proto), p.port)
            .allowed;
  }
  for (auto& p : published) {
    if (!p.expected || p.expect_reply.empty()) continue;
    const Container* c = cfg.find_container(p.expect_reply);
    if (!c) continue;
    for (const auto& pub : c->publish) {
      if (p.port < pub.host_port || p.port >= pub.host_port + pub.count) continue;
      uint16_t cport = static_cast<uint16_t>(pub.container_port + (p.port - pub.host_port));
      // Over IPv6 the port forwards to the publish target's IPv6 address.
      PolicyEndpoint to = p.ipv6() ? attachment_ep(c->name, publish_target(cfg, *c), true)
                                   : container_ep(cfg, c->name);
      p.expected = evaluate_model(cfg, source_ep(cfg, info, p.src, p.ipv6()), to,
                                  ip_protocol_number(p.proto), cport)
                       .allowed;
      break;
    }
  }
}

}  // namespace moat
