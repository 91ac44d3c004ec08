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

}  // namespace

std::vector<Probe> lab_probes(const Config& cfg, const std::string& lab) {
  std::vector<Probe> out;
  std::vector<std::pair<std::string, const Container*>> sources;
  for (const auto& c : cfg.containers) sources.emplace_back(c.name, &c);
  sources.emplace_back("host", nullptr);
  for (const auto& [label, src] : sources) {
    std::string ns = "/run/netns/" + (src ? lab_container_ns(lab, src->name) : lab_host_ns(lab));
    for (const auto& dst : cfg.containers) {
      if (src == &dst || (src && src->networks.empty())) continue;
      for (const auto& att : dst.networks) {
        bool expected = isolation_allows(cfg, src, dst, att);
        auto add = [&](Protocol proto, uint16_t port) {
          out.push_back({label, ns, dst.name + "@" + att.network, att.ip, proto, port, expected,
                         proto == Protocol::icmp ? "" : dst.name});
        };
        for (const auto& p : probed_ports(dst)) {
          if (p.protocol == Protocol::sctp) continue;
          add(p.protocol, p.port);
        }
        add(Protocol::icmp, 0);
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
};

// The outside, the host at 127.0.0.1 (second: unpublished ports are probed
// from the first two) and at the uplink address, then every container.
std::vector<Source> publish_sources(const Config& cfg, const std::string& lab, Ipv4 uplink,
                                    Ipv4 loopback) {
  std::vector<Source> sources = {
      {"outside", "/run/netns/" + lab_outside_ns(lab), uplink, false, false},
      {"host@127.0.0.1", "/run/netns/" + lab_host_ns(lab), loopback, true, false},
      {"host@" + uplink.str(), "/run/netns/" + lab_host_ns(lab), uplink, true, false}};
  for (const auto& c : cfg.containers) {
    if (c.networks.empty()) continue;
    const Network* n = cfg.find_network(c.networks.front().network);
    if (!n) continue;
    sources.push_back({c.name + "@gateway", "/run/netns/" + lab_container_ns(lab, c.name),
                       n->gateway, false, n->internal});
  }
  return sources;
}

void add_published(std::vector<Probe>& out, const Container& dst,
                   const std::vector<Source>& sources, Ipv4 loopback) {
  for (const auto& p : dst.publish) {
    // The lab probes published ports over IPv4: an IPv6 address's are not.
    if (p.protocol == Protocol::sctp || !p.on_ipv4()) continue;
    for (uint16_t i = 0; i < std::min<uint16_t>(p.count, 2); ++i) {
      uint16_t port = static_cast<uint16_t>(p.host_port + i);
      std::string label = dst.name + " -p " + (p.host_ip ? p.host_ip->str() + ":" : "") +
                          std::to_string(port) + ":" + std::to_string(p.container_port + i) + "/" +
                          to_string(p.protocol);
      for (const auto& src : sources) {
        bool bound_ok = !p.host_ip || p.host_ip->value == src.via.value;
        bool expected =
            bound_ok && !src.internal && (src.from_host || src.via.value != loopback.value);
        out.push_back(
            {src.label, src.ns, label, src.via, p.protocol, port, expected, dst.name});
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
                     sources[i].via, e.protocol, e.port, false, ""});
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
    add_published(out, dst, sources, loopback);
    add_unpublished(out, dst, sources);
  }
  return out;
}

namespace {

PolicyEndpoint container_ep(const Config& cfg, const std::string& name) {
  PolicyEndpoint e;
  e.kind = PolicyEndpoint::Kind::container;
  e.container = name;
  if (const auto* c = cfg.find_container(name); c && !c->networks.empty()) e.ip = c->networks[0].ip;
  return e;
}

// A probe's source label ("host@...", "outside", "NAME@gateway") as a policy peer.
PolicyEndpoint source_ep(const Config& cfg, const LabInfo& info, const std::string& label) {
  auto uplink = Ipv4::parse(info.uplink_host_ip);
  auto outside = Ipv4::parse(info.uplink_outside_ip);
  std::string who = label.substr(0, label.find('@'));
  PolicyEndpoint e;
  if (who == "host") {
    e.kind = PolicyEndpoint::Kind::host;
    e.ip = uplink ? *uplink : Ipv4{0x7f000001};
  } else if (who == "outside") {
    e.kind = PolicyEndpoint::Kind::address;
    if (outside) e.ip = *outside;
  } else {
    e = container_ep(cfg, who);
  }
  return e;
}

// The source of a probe to `p.dst` ("NAME@NETWORK") with the address the
// kernel sees: the host and a container attached there dial from their own
// address on that network. ipBlocks match addresses, so it matters.
PolicyEndpoint isolation_source(const Config& cfg, const LabInfo& info, const Probe& p) {
  PolicyEndpoint from = source_ep(cfg, info, p.src);
  const std::string net = p.dst.substr(p.dst.find('@') + 1);
  if (from.kind == PolicyEndpoint::Kind::host) {
    if (const Network* n = cfg.find_network(net)) from.ip = n->gateway;
  } else if (const Container* c = cfg.find_container(from.container)) {
    for (const Attachment& a : c->networks)
      if (a.network == net) from.ip = a.ip;
  }
  return from;
}

}  // namespace

void expect_policy(const Config& cfg, const LabInfo& info, std::vector<Probe>& isolation,
                   std::vector<Probe>& published) {
  if (cfg.policies.empty()) return;
  for (auto& p : isolation) {
    if (!p.expected) continue;
    PolicyEndpoint to = container_ep(cfg, p.dst.substr(0, p.dst.find('@')));
    to.ip = p.dst_ip;
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
      p.expected = evaluate_model(cfg, source_ep(cfg, info, p.src), container_ep(cfg, c->name),
                                  ip_protocol_number(p.proto), cport)
                       .allowed;
      break;
    }
  }
}

}  // namespace moat
