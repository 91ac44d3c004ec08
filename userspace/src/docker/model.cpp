// model.cpp - see model.h.
//
// Docker's reports are read for what dockerd actually did, not for what was
// asked: published ports come from NetworkSettings.Ports (the bindings
// dockerd holds, random host ports filled in, none for a container on
// internal networks only), not from HostConfig.PortBindings. Whatever moat
// cannot express is skipped and reported rather than approximated, and the
// result is read back by parse_config(), so the agent never hands reconcile()
// a Config that `moat apply` would refuse.
#include "docker/model.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>

#include "config/values.h"

namespace moat::docker {
namespace {

using nlohmann::json;

constexpr std::string_view kBridgeOption = "com.docker.network.bridge.";

const json& member(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// Iterating a member that may be missing or of another type.
const json& object(const json& v) {
  static const json kEmpty = json::object();
  return v.is_object() ? v : kEmpty;
}

std::string str(const json& j, const char* key) {
  const json& v = member(j, key);
  return v.is_string() ? v.get<std::string>() : "";
}

// dockerd reads its options with Go's strconv.ParseBool.
std::optional<bool> go_bool(std::string_view s) {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (s == t) return true;
  }
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (s == f) return false;
  }
  return std::nullopt;
}

std::string option(const json& network, std::string_view name) {
  return str(member(network, "Options"), (std::string(kBridgeOption) + std::string(name)).c_str());
}

bool bool_option(const json& network, std::string_view name, bool fallback) {
  return go_bool(option(network, name)).value_or(fallback);
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

struct FollowedNetwork {
  Network net;
  std::string id;
  bool gateway_known = false;
  bool gateway6_known = false;
  std::optional<Ipv4> host_binding;  // host_binding_ipv4: where its ports are published
};

struct Endpoint {
  FollowedNetwork* network;
  Attachment att;
  bool primary;  // HostConfig.NetworkMode's network: Docker maps the ports there
};

struct Builder {
  const TranslateOptions& options;
  const InterfaceMap& interfaces;
  Translation& out;
  std::map<std::string, FollowedNetwork> by_id;
  std::map<std::string, std::string> id_by_name;
  std::map<std::string, std::string> not_followed;  // id -> why, for attachments to it

  void skip(Skipped::Kind kind, std::string id, std::string name, std::string why) {
    out.skipped.push_back({kind, std::move(id), std::move(name), std::move(why)});
  }

  void add_network(const json& j);
  void add_pool6(const json& pool, FollowedNetwork& f);
  void add_container(const json& j);
  std::optional<Ipv6> endpoint_ip6(const json& ep, FollowedNetwork& f, const std::string& id,
                                   const std::string& where);
  std::vector<Endpoint> endpoints_of(const json& c, const std::string& id, const std::string& name,
                                     const std::string& mode);
  void attach_resolved(const json& c, const std::string& id, const std::vector<Endpoint>& eps,
                       Container& out_c);
  void drop_publish_conflicts();
  Config config() const;
};

// What parse_config() refuses of an IPv6 subnet, which would fail the whole
// translation.
std::optional<std::string> subnet6_problem(const Ipv6Prefix& subnet) {
  if (auto why = special_subnet_problem(subnet)) return why;
  if (subnet.len > 120) return std::string("it is smaller than /120");
  return std::nullopt;
}

void Builder::add_pool6(const json& pool, FollowedNetwork& f) {
  std::string text = str(pool, "Subnet");
  auto ignore = [&](std::string why) {
    skip(Skipped::Kind::network, f.id, f.net.name, "IPv6 subnet " + quote(text) + " " + why);
  };
  std::string why;
  auto subnet = Ipv6Prefix::parse(text, &why);
  if (!subnet) return ignore("is not followed: " + why);
  if (f.net.subnet6) {
    return skip(Skipped::Kind::network, f.id, f.net.name,
                "moat follows one IPv6 subnet per network: " + subnet->str() + " is ignored");
  }
  if (auto why = subnet6_problem(*subnet)) return ignore("is not followed: " + *why);
  f.net.subnet6 = *subnet;
  auto gateway = Ipv6::parse(str(pool, "Gateway"));
  if (gateway && !host_address_problem(*gateway, *subnet)) {
    f.net.gateway6 = *gateway;
    f.gateway6_known = true;
  }
}

void Builder::add_network(const json& j) {
  std::string name = str(j, "Name");
  std::string id = str(j, "Id");
  std::string driver = str(j, "Driver");
  auto refuse = [&](std::string why) {
    not_followed[id] = why;
    skip(Skipped::Kind::network, id, name, std::move(why));
  };
  if (name.empty() || id.empty()) return refuse("the network has no name or id");
  if (driver != "bridge") {
    if (name == "host" || name == "none") return refuse("Docker's `" + name + "` network");
    return refuse("driver " + quote(driver) + ": moat enforces bridge networks only");
  }
  if (auto why = docker_name_problem(name)) return refuse("moat refuses the name: " + *why);
  if (id_by_name.contains(name)) {  // the API lets two networks share a name; moat cannot
    return refuse("another network is named " + quote(name) + " (id " + short_id(id_by_name[name]) +
                  ")");
  }

  FollowedNetwork f;
  f.id = id;
  f.net.name = name;
  bool have_subnet = false;
  const json& ipam = member(member(j, "IPAM"), "Config");
  const json& pools = ipam.is_array() ? ipam : json::array();
  auto is_ipv6 = [](const json& pool) {
    return str(pool, "Subnet").find(':') != std::string::npos;
  };
  for (const json& pool : pools) {
    if (is_ipv6(pool)) continue;
    std::string subnet_text = str(pool, "Subnet");
    auto subnet = Ipv4Prefix::parse(subnet_text);
    if (!subnet) continue;
    if (have_subnet) {
      skip(Skipped::Kind::network, id, name,
           "moat follows one IPv4 subnet per network: " + subnet->str() + " is ignored");
      continue;
    }
    have_subnet = true;
    f.net.subnet = *subnet;
    auto gateway = Ipv4::parse(str(pool, "Gateway"));
    if (gateway && !host_address_problem(*gateway, *subnet)) {
      f.net.gateway = *gateway;
      f.gateway_known = true;
    }
  }
  if (!have_subnet) return refuse("no IPv4 subnet");
  if (f.net.subnet.len > 30) return refuse("subnet " + f.net.subnet.str() + " is smaller than /30");
  if (!f.gateway_known) f.net.gateway = f.net.subnet.first_host();  // until an endpoint says
  // Without EnableIPv6 Docker gives no endpoint an address from an IPv6 pool.
  if (member(j, "EnableIPv6").is_boolean() && member(j, "EnableIPv6").get<bool>()) {
    bool listed = false;
    for (const json& pool : pools) {
      if (!is_ipv6(pool)) continue;
      listed = true;
      add_pool6(pool, f);
    }
    if (!listed) skip(Skipped::Kind::network, id, name, "EnableIPv6 without an IPv6 subnet");
    if (f.net.subnet6 && !f.gateway6_known) f.net.gateway6 = f.net.subnet6->first_host();
  }

  f.net.internal = member(j, "Internal").is_boolean() && member(j, "Internal").get<bool>();
  f.net.icc = bool_option(j, "enable_icc", true);
  // The default bridge follows the daemon's `ip-masq`, which dockerd reports
  // as "false" whenever `iptables: false`, user's choice or not (see model.h).
  // A user network's option is the user's own: `-o ...enable_ip_masquerade`.
  bool default_bridge = bool_option(j, "default_bridge", false);
  f.net.masquerade = default_bridge ? options.default_bridge_masquerade
                                    : bool_option(j, "enable_ip_masquerade", true);
  if (auto ip = Ipv4::parse(option(j, "host_binding_ipv4")); ip && ip->value != 0) {
    f.host_binding = ip;
  }
  f.net.bridge = bridge_name(j);
  out.networks.push_back({id, name, f.net.bridge});
  id_by_name[name] = id;
  by_id.emplace(id, std::move(f));
}

// Docker maps the published ports on the container's first non-internal
// endpoint, normally the network it was started on, and moat publishes on
// the first non-internal attachment: that one goes first. libnetwork picks the
// default route by the same rule (non-internal first, then by name), which
// only matters inside the container.
void order_endpoints(std::vector<Endpoint>& eps) {
  std::stable_sort(eps.begin(), eps.end(), [](const Endpoint& a, const Endpoint& b) {
    if (a.network->net.internal != b.network->net.internal) return b.network->net.internal;
    if (a.primary != b.primary) return a.primary;
    return a.att.network < b.att.network;
  });
}

// One port dockerd holds, before the families are paired.
struct Binding {
  Publish p;  // one port
  std::string label;
  bool any4 = false;  // HostIp "0.0.0.0": every IPv4 address, and only those
};

// `target`: the endpoint Docker maps the ports on. Docker lists `-p 8080:80`
// as two bindings, 0.0.0.0 and :: (the latter only when the container has
// an IPv6 address, or its userland proxy forwards [::] to the IPv4 one),
// `-p 0.0.0.0:8080:80` as 0.0.0.0 alone, `-p [::1]:8080:80` as ::1 alone.
std::vector<Publish> read_publishes(const json& c, const std::string& id, const std::string& name,
                                    const Endpoint& target, Builder& b) {
  std::vector<Binding> bindings;
  const json& ports = member(member(c, "NetworkSettings"), "Ports");
  if (!ports.is_object()) return {};
  const std::string& network = target.network->net.name;
  for (auto it = ports.begin(); it != ports.end(); ++it) {
    if (!it.value().is_array()) continue;  // null: exposed, not published
    auto container = parse_expose(it.key());
    if (!container) {
      b.skip(Skipped::Kind::publish, id, name + " " + it.key(), container.error());
      continue;
    }
    for (const json& binding : it.value()) {
      std::string host_ip_text = str(binding, "HostIp");
      std::string host_port_text = str(binding, "HostPort");
      std::string label = name + " " + host_ip_text + ":" + host_port_text + "->" + it.key();
      // Docker's default for an empty HostIp (the network's
      // host_binding_ipv4, else every address).
      HostAddress host_ip{target.network->host_binding, std::nullopt};
      bool any4 = false;
      if (!host_ip_text.empty()) {
        auto parsed = parse_host_address(host_ip_text);
        if (!parsed) {
          b.skip(Skipped::Kind::publish, id, label, parsed.error());
          continue;
        }
        host_ip = *parsed;
        any4 = host_ip.v4 && host_ip.v4->value == 0;
      }
      if (host_ip.v6 && !target.att.ip6) {
        b.skip(Skipped::Kind::publish, id, label,
               "the container has no IPv6 address on network " + quote(network) +
                   ", which its ports are published from: Docker's userland proxy would forward "
                   "IPv6 to its IPv4 address, which moat does not translate");
        continue;
      }
      auto host_port = parse_port(host_port_text);
      if (!host_port) {
        b.skip(Skipped::Kind::publish, id, label, host_port.error());
        continue;
      }
      auto p = make_publish(host_ip, PortRange{*host_port, 1}, PortRange{container->port, 1},
                            container->protocol);
      if (!p) {
        b.skip(Skipped::Kind::publish, id, label, p.error());
        continue;
      }
      bindings.push_back({*p, label, any4});
    }
  }
  // Docker lists 0.0.0.0 and :: for a port published on every address of
  // both families: moat says that with no address at all. 0.0.0.0 alone
  // stays IPv4's, unless the container has no IPv6 address, which makes the
  // two the same (and keeps the text Docker users know: 8080:80/tcp).
  auto any6_twin = [&bindings](const Binding& v4) {
    return std::find_if(bindings.begin(), bindings.end(), [&v4](const Binding& x) {
      return x.p.host_ip6 && *x.p.host_ip6 == Ipv6{} && x.p.protocol == v4.p.protocol &&
             x.p.host_port == v4.p.host_port && x.p.container_port == v4.p.container_port;
    });
  };
  std::vector<Publish> list;
  std::vector<const Binding*> paired;
  for (const Binding& bnd : bindings) {
    if (!bnd.any4) continue;
    Publish p = bnd.p;
    if (auto twin = any6_twin(bnd); twin != bindings.end()) {
      paired.push_back(&*twin);
      p.host_ip.reset();
    } else if (!target.att.ip6) {
      p.host_ip.reset();
    }
    list.push_back(p);
  }
  for (const Binding& bnd : bindings) {
    if (!bnd.any4 && std::find(paired.begin(), paired.end(), &bnd) == paired.end()) {
      list.push_back(bnd.p);
    }
  }
  // Docker lists a range port by port; moat keeps ranges, which read better in
  // `moat explain` and cost one rule each.
  auto key = [](const Publish& p) {
    return std::tuple(p.protocol, p.host_ip.value_or(Ipv4{}).value, p.host_ip.has_value(),
                      p.host_ip6.value_or(Ipv6{}), p.host_ip6.has_value(), p.container_port,
                      p.host_port);
  };
  std::sort(list.begin(), list.end(),
            [&key](const Publish& a, const Publish& x) { return key(a) < key(x); });
  std::vector<Publish> merged;
  for (const Publish& p : list) {
    if (!merged.empty()) {
      Publish& last = merged.back();
      if (key(last) == key(p)) continue;  // the same binding twice
      bool next = last.protocol == p.protocol && last.host_ip == p.host_ip &&
                  last.host_ip6 == p.host_ip6 && last.host_port + last.count == p.host_port &&
                  last.container_port + last.count == p.container_port;
      if (next) {
        ++last.count;
        continue;
      }
    }
    merged.push_back(p);
  }
  for (Publish& p : merged) p.text = render_publish(p);
  return merged;
}

// The endpoint's IPv6 address on `f`, which has IPv6. None for a container
// with IPv6 turned off, and for an address moat cannot use: the attachment
// is followed over IPv4 then, and its IPv6 has no address to pass.
std::optional<Ipv6> Builder::endpoint_ip6(const json& ep, FollowedNetwork& f, const std::string& id,
                                          const std::string& where) {
  std::string text = str(ep, "GlobalIPv6Address");
  if (text.empty()) return std::nullopt;
  const Ipv6Prefix& subnet = *f.net.subnet6;
  auto ignore = [&](std::string why) -> std::optional<Ipv6> {
    skip(Skipped::Kind::attachment, id, where, std::move(why) + ": followed over IPv4 only");
    return std::nullopt;
  };
  auto ip6 = Ipv6::parse(text);
  if (!ip6) return ignore(quote(text) + " is not an IPv6 address");
  if (auto why = host_address_problem(*ip6, subnet)) return ignore(ip6->str() + " " + *why);
  const json& len = member(ep, "GlobalIPv6PrefixLen");
  if (len.is_number_integer() && len.get<int64_t>() != 0 && len.get<int64_t>() != subnet.len) {
    return ignore(ip6->str() + "/" + len.dump() + " disagrees with subnet " + subnet.str());
  }
  if (auto gw = Ipv6::parse(str(ep, "IPv6Gateway"));
      !f.gateway6_known && gw && !host_address_problem(*gw, subnet) && *gw != *ip6) {
    f.net.gateway6 = *gw;
    f.gateway6_known = true;
  }
  return ip6;
}

// The container's endpoints on networks moat follows, in enforcement order.
std::vector<Endpoint> Builder::endpoints_of(const json& c, const std::string& id,
                                            const std::string& name, const std::string& mode) {
  std::vector<Endpoint> eps;
  const json& nets = member(member(c, "NetworkSettings"), "Networks");
  for (const auto& [net_name, ep] : object(nets).items()) {
    std::string net_id = str(ep, "NetworkID");
    std::string where = name + " on " + net_name;
    auto found = by_id.find(net_id);
    if (found == by_id.end()) {
      auto why = not_followed.find(net_id);
      skip(Skipped::Kind::attachment, id, where,
           why != not_followed.end() ? why->second : "unknown network " + quote(net_name));
      continue;
    }
    FollowedNetwork& f = found->second;
    auto ip = Ipv4::parse(str(ep, "IPAddress"));
    if (!ip) {
      skip(Skipped::Kind::attachment, id, where, "no IPv4 address");
      continue;
    }
    if (auto why = host_address_problem(*ip, f.net.subnet)) {
      skip(Skipped::Kind::attachment, id, where, ip->str() + " " + *why);
      continue;
    }
    // The default bridge's IPAM has no gateway; its endpoints do.
    if (auto gw = Ipv4::parse(str(ep, "Gateway"));
        !f.gateway_known && gw && !host_address_problem(*gw, f.net.subnet) && *gw != *ip) {
      f.net.gateway = *gw;
      f.gateway_known = true;
    }
    Attachment att;
    att.network = f.net.name;
    att.ip = *ip;
    att.ip_from_file = true;  // as parse_config() marks an address the file gives
    if (f.net.subnet6) {
      att.ip6 = endpoint_ip6(ep, f, id, where);
      att.ip6_from_file = true;  // an address or `"ipv6": false`
    }
    // Docker's word for the MAC it gave the container's veth (the veth is
    // found by it); without one, apply reads it from the veth's peer.
    att.mac = parse_mac(str(ep, "MacAddress"));
    eps.push_back({&f, std::move(att), f.net.name == mode});
  }
  order_endpoints(eps);
  return eps;
}

// Labels (Compose's among them: policies select by them) and exposed ports.
void read_identity(const json& c, Container& out_c) {
  const json& labels = member(member(c, "Config"), "Labels");
  for (const auto& [key, value] : object(labels).items()) {
    if (!key.empty() && value.is_string()) out_c.labels[key] = value.get<std::string>();
  }
  const json& exposed = member(member(c, "Config"), "ExposedPorts");
  std::set<std::pair<uint16_t, Protocol>> expose;
  for (const auto& [key, value] : object(exposed).items()) {
    if (auto e = parse_expose(key)) expose.emplace(e->port, e->protocol);
  }
  for (auto [port, protocol] : expose) out_c.expose.push_back({port, protocol});
}

// The endpoints whose host-side veth is known; the others wait in `pending`.
void Builder::attach_resolved(const json& c, const std::string& id,
                              const std::vector<Endpoint>& eps, Container& out_c) {
  bool target_resolved = false;
  const Endpoint* target = nullptr;
  for (const Endpoint& e : eps) {
    auto iface = interfaces.find({id, e.network->id});
    bool resolved = iface != interfaces.end() && !iface->second.empty();
    if (!target && !e.network->net.internal) {
      target = &e;
      target_resolved = resolved;
    }
    if (!resolved) {
      out.pending.push_back({id, out_c.name, e.network->id, e.network->net.name});
      continue;
    }
    Attachment att = e.att;
    att.host_interface = iface->second;
    out_c.networks.push_back(std::move(att));
  }
  if (out_c.networks.empty()) return;
  // Until the endpoint Docker maps the ports on is resolved, they would be
  // forwarded to another network: they come with it.
  if (target && target_resolved) {
    out_c.publish = read_publishes(c, id, out_c.name, *target, *this);
  }
}

void Builder::add_container(const json& c) {
  std::string id = str(c, "Id");
  std::string name = str(c, "Name");
  if (name.starts_with('/')) name.erase(0, 1);
  auto skip_container = [&](std::string why) {
    skip(Skipped::Kind::container, id, name, std::move(why));
  };
  if (id.empty() || name.empty()) return skip_container("the container has no id or name");
  const json& running = member(member(c, "State"), "Running");
  if (!running.is_boolean() || !running.get<bool>()) return skip_container("not running");
  std::string mode = str(member(c, "HostConfig"), "NetworkMode");
  if (mode == "host") return skip_container("uses the host's network (--network host)");
  if (mode == "none") return skip_container("has no network (--network none)");
  if (mode.starts_with("container:")) {
    return skip_container("shares the network of another container (--network " + mode + ")");
  }
  if (mode == "default") mode = "bridge";  // what `default` means on Linux
  if (auto why = docker_name_problem(name)) return skip_container("moat refuses the name: " + *why);

  std::vector<Endpoint> eps = endpoints_of(c, id, name, mode);
  if (eps.empty()) return skip_container("attached to no bridge network moat follows");

  Container out_c;
  out_c.name = name;
  read_identity(c, out_c);
  attach_resolved(c, id, eps, out_c);
  if (out_c.networks.empty()) return;  // all pending: nothing to enforce yet
  out.config.containers.push_back(std::move(out_c));
}

// dockerd holds every published port, so two containers never share one;
// between two snapshots of a restart they can. The first (by name) keeps it
// rather than the whole file being refused.
void Builder::drop_publish_conflicts() {
  std::vector<const Publish*> kept;
  for (Container& c : out.config.containers) {
    std::vector<Publish> mine;
    for (Publish& p : c.publish) {
      auto clash = std::find_if(kept.begin(), kept.end(), [&p](const Publish* k) {
        return first_shared_port(*k, p).has_value();
      });
      if (clash != kept.end()) {
        skip(Skipped::Kind::publish, "", c.name + " " + p.text,
             "the host port is already published (" + (*clash)->text + ")");
        continue;
      }
      mine.push_back(p);
    }
    c.publish = std::move(mine);
    for (const Publish& p : c.publish) kept.push_back(&p);
  }
}

}  // namespace

std::string bridge_name(const json& network) {
  std::string name = option(network, "name");
  return name.empty() ? "br-" + short_id(str(network, "Id")) : name;
}

Translation translate(const json& networks, const std::vector<json>& containers,
                      const InterfaceMap& interfaces, const TranslateOptions& options) {
  Translation out;
  try {
    Builder b{options, interfaces, out, {}, {}, {}};
    if (networks.is_array()) {
      // By id: which of two same-named networks is followed must not depend
      // on the order of the API's answer.
      std::vector<const json*> sorted;
      for (const json& n : networks) sorted.push_back(&n);
      std::stable_sort(sorted.begin(), sorted.end(),
                       [](const json* a, const json* x) { return str(*a, "Id") < str(*x, "Id"); });
      for (const json* n : sorted) b.add_network(*n);
    } else {
      out.problems.push_back({"", "GET /networks did not return an array"});
    }
    for (const json& c : containers) b.add_container(c);

    for (auto& [id, f] : b.by_id) out.config.networks.push_back(f.net);
    auto by_name = [](const auto& a, const auto& x) { return a.name < x.name; };
    std::sort(out.config.networks.begin(), out.config.networks.end(), by_name);
    std::sort(out.networks.begin(), out.networks.end(), by_name);
    std::sort(out.config.containers.begin(), out.config.containers.end(), by_name);
    b.drop_publish_conflicts();
    out.config.source = options.source;
    out.config.uplinks = options.uplinks;
    out.config.limits = options.limits;
    if (!out.problems.empty()) return out;

    out.text = config_to_json(out.config);
    ParseResult parsed = parse_config(out.text, options.source);
    if (parsed.config) {
      out.config = std::move(*parsed.config);
    } else {
      out.problems = std::move(parsed.problems);
    }
  } catch (const std::exception& e) {  // bad_alloc, or a bug: never throw
    out.problems.push_back({"", std::string("internal error: ") + e.what()});
  }
  return out;
}

}  // namespace moat::docker
