// read.cpp - pass 2: the JSON tree of a moat file into entries
// (document.h), checking everything that concerns a single value: types,
// keys, names, CIDRs, port syntax. The file's policies and namespaces are
// read by policy/read.cpp through the same Reader.
#include "policy/read.h"

#include <algorithm>

#include "config/document.h"
#include "config/values.h"

namespace moat {
namespace {

constexpr int kLongestSubnetPrefix = 30;  // room for a gateway and one container
// Not about room: a longer IPv6 prefix is a typo (or a point-to-point link)
// rather than a container network; Docker's own default is /64.
constexpr int kLongestSubnet6Prefix = 120;

void read_subnet(Reader& r, const Json& f, const std::string& p, NetworkEntry& e) {
  e.addressing_ok = false;  // until proven usable
  auto text = r.string(f, p);
  if (!text) return;
  std::string why;
  auto subnet = Ipv4Prefix::parse(*text, &why);
  if (!subnet) return r.problem(p, "invalid subnet " + quote(*text) + ": " + why);
  e.net.subnet = *subnet;
  e.subnet_given = true;
  if (auto why = special_subnet_problem(*subnet)) {
    return r.problem(p, "subnet " + subnet->str() + " cannot be a container network: " + *why);
  }
  if (subnet->len > kLongestSubnetPrefix) {
    return r.problem(p, "subnet " + subnet->str() + " is too small: a network needs /" +
                            std::to_string(kLongestSubnetPrefix) +
                            " or shorter to hold a gateway and a container");
  }
  e.addressing_ok = true;
}

void read_gateway(Reader& r, const Json& network, const Json& f, const std::string& p,
                  NetworkEntry& e) {
  auto gateway = r.ip(f, p);
  if (!gateway) {
    e.addressing_ok = false;
    return;
  }
  e.net.gateway = *gateway;
  e.gateway_given = true;
  if (!network.contains("subnet")) {
    e.addressing_ok = false;
    return r.problem(p, "a gateway needs an explicit \"subnet\"");
  }
  if (!e.addressing_ok) return;  // the subnet's problem is reported
  if (auto why = host_address_problem(*gateway, e.net.subnet)) {
    e.addressing_ok = false;
    r.problem(p, "gateway " + gateway->str() + " " + *why);
  }
}

void read_subnet6(Reader& r, const Json& f, const std::string& p, NetworkEntry& e) {
  e.addressing6_ok = false;  // until proven usable
  auto text = r.string(f, p);
  if (!text) return;
  std::string why;
  auto subnet = Ipv6Prefix::parse(*text, &why);
  if (!subnet) return r.problem(p, "invalid IPv6 subnet " + quote(*text) + ": " + why);
  e.net.subnet6 = *subnet;
  e.subnet6_given = true;
  if (auto why = special_subnet_problem(*subnet)) {
    return r.problem(p, "IPv6 subnet " + subnet->str() + " cannot be a container network: " + *why);
  }
  if (subnet->len > kLongestSubnet6Prefix) {
    return r.problem(p, "IPv6 subnet " + subnet->str() + " is too small: an IPv6 network needs /" +
                            std::to_string(kLongestSubnet6Prefix) + " or shorter (/64 is usual)");
  }
  e.addressing6_ok = true;
}

void read_gateway6(Reader& r, const Json& network, const Json& f, const std::string& p,
                   NetworkEntry& e) {
  auto gateway = r.ip6(f, p);
  if (!gateway) {
    e.addressing6_ok = false;
    return;
  }
  e.net.gateway6 = *gateway;
  e.gateway6_given = true;
  if (!network.contains("ipv6_subnet")) {
    e.addressing6_ok = false;
    return r.problem(p, "an IPv6 gateway needs an explicit \"ipv6_subnet\"");
  }
  if (!e.addressing6_ok) return;  // the subnet's problem is reported
  if (auto why = host_address_problem(*gateway, *e.net.subnet6)) {
    e.addressing6_ok = false;
    r.problem(p, "IPv6 gateway " + gateway->str() + " " + *why);
  }
}

// Docker's --ipv6 is "ipv6": true; an "ipv6_subnet" implies it.
void read_ipv6(Reader& r, const Json& v, const std::string& path, NetworkEntry& e) {
  bool enabled = false;
  r.boolean(v, path, "ipv6", enabled);
  const bool flag_given = v.contains("ipv6") && v.at("ipv6").is_boolean();
  if (!v.contains("ipv6_subnet")) {
    e.ipv6 = enabled;
    return;
  }
  e.ipv6 = true;
  if (flag_given && !enabled) {
    e.addressing6_ok = false;
    r.problem(key_path(path, "ipv6"),
              "is false, but the network has an \"ipv6_subnet\"; remove one of them");
  }
}

// Keys of the other spelling, which a did-you-mean would not find.
const Hints kNetworkHints = {
    {"subnet6", "did you mean " + quote("ipv6_subnet") + "?"},
    {"gateway6", "did you mean " + quote("ipv6_gateway") + "?"},
};
const Hints kAttachmentHints = {
    {"ipv4", "did you mean " + quote("ip") + "?"},
    {"ip6", "did you mean " + quote("ipv6") + "?"},
};

NetworkEntry read_network(Reader& r, const Json& v, const std::string& path) {
  NetworkEntry e{.path = path};
  if (!r.object(v, path,
                {{"name", kRequired},
                 {"subnet"},
                 {"gateway"},
                 {"ipv6"},
                 {"ipv6_subnet"},
                 {"ipv6_gateway"},
                 {"icc"},
                 {"internal"},
                 {"masquerade"},
                 {"bridge"}},
                kNetworkHints)) {
    e.addressing_ok = false;
    e.addressing6_ok = false;
    return e;
  }
  r.member(v, path, "name", [&](const Json& f, const std::string& p) {
    e.net.name = r.name(f, p, "network", docker_name_problem).value_or("");
  });
  r.member(v, path, "subnet",
           [&](const Json& f, const std::string& p) { read_subnet(r, f, p, e); });
  r.member(v, path, "gateway",
           [&](const Json& f, const std::string& p) { read_gateway(r, v, f, p, e); });
  r.member(v, path, "ipv6_subnet",
           [&](const Json& f, const std::string& p) { read_subnet6(r, f, p, e); });
  r.member(v, path, "ipv6_gateway",
           [&](const Json& f, const std::string& p) { read_gateway6(r, v, f, p, e); });
  read_ipv6(r, v, path, e);
  r.boolean(v, path, "icc", e.net.icc);
  r.boolean(v, path, "internal", e.net.internal);
  r.boolean(v, path, "masquerade", e.net.masquerade);
  r.member(v, path, "bridge", [&](const Json& f, const std::string& p) {
    e.net.bridge = r.name(f, p, "bridge", ifname_problem).value_or("");
  });
  return e;
}

std::optional<AttachmentEntry> read_attachment(Reader& r, const Json& v, const std::string& path) {
  AttachmentEntry a{.path = path};
  if (v.is_string()) {  // "backend" is short for {"network": "backend"}
    a.att.network = v.get<std::string>();
    a.network_path = path;
    return a;
  }
  if (!v.is_object()) {
    r.problem(path, "must be a network name or an object like {\"network\": \"backend\"}, not " +
                        describe(v));
    return std::nullopt;
  }
  if (!r.object(v, path, {{"network", kRequired}, {"ip"}, {"ipv6"}, {"interface"}, {"mac"}},
                kAttachmentHints))
    return std::nullopt;
  bool has_network = false;
  r.member(v, path, "network", [&](const Json& f, const std::string& p) {
    a.network_path = p;
    if (auto name = r.string(f, p)) {
      a.att.network = *name;
      has_network = true;
    }
  });
  r.member(v, path, "ip", [&](const Json& f, const std::string& p) {
    a.ip_path = p;
    a.att.ip_from_file = true;
    auto ip = r.ip(f, p);
    a.ip_ok = ip.has_value();
    a.att.ip = ip.value_or(Ipv4{});
  });
  r.member(v, path, "ipv6", [&](const Json& f, const std::string& p) {
    a.ip6_path = p;
    a.att.ip6_from_file = true;
    // A container with IPv6 turned off has no address there (Docker gives
    // it none): one allocated for it would be an address it may send from.
    if (f.is_boolean() && !f.get<bool>()) return;
    a.att.ip6 = r.ip6(f, p);
    a.ip6_ok = a.att.ip6.has_value();
  });
  r.member(v, path, "interface", [&](const Json& f, const std::string& p) {
    a.att.host_interface = r.name(f, p, "interface", ifname_problem).value_or("");
  });
  r.member(v, path, "mac", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    if (!text) return;
    auto mac = parse_mac(*text);
    if (!mac)
      r.problem(p, "\"" + *text + "\" is not a MAC address like \"02:42:ac:12:00:02\"");
    else if ((*mac)[0] & 1)
      r.problem(p, mac_str(*mac) + " is a group (multicast) address; a container's MAC is unicast");
    else
      a.att.mac = mac;
  });
  if (!has_network) return std::nullopt;
  return a;
}

std::optional<Publish> read_publish_object(Reader& r, const Json& v, const std::string& path) {
  if (!r.object(
          v, path,
          {{"host_ip"}, {"host_port", kRequired}, {"container_port", kRequired}, {"protocol"}})) {
    return std::nullopt;
  }
  HostAddress host_ip;
  std::optional<PortRange> host, container;
  std::optional<Protocol> protocol = Protocol::tcp;
  bool host_ip_ok = true;
  auto read_range = [&r](std::optional<PortRange>& out) {
    return [&r, &out](const Json& f, const std::string& p) {
      if (auto text = r.port_text(f, p, "a port number or a range like \"8000-8010\"")) {
        out = r.check(parse_port_range(*text), p, "");
      }
    };
  };
  r.member(v, path, "host_ip", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    auto parsed = text ? r.check(parse_host_address(*text), p, "") : std::nullopt;
    host_ip_ok = parsed.has_value();
    if (parsed) host_ip = *parsed;
  });
  r.member(v, path, "host_port", read_range(host));
  r.member(v, path, "container_port", read_range(container));
  r.member(v, path, "protocol", [&](const Json& f, const std::string& p) {
    auto text = r.string(f, p);
    protocol = text ? r.check(parse_port_protocol(*text), p, "") : std::nullopt;
  });
  if (!host_ip_ok || !host || !container || !protocol) return std::nullopt;
  auto publish = r.check(make_publish(host_ip, *host, *container, *protocol), path, "");
  if (publish) publish->text = render_publish(*publish);
  return publish;
}

std::optional<Publish> read_publish(Reader& r, const Json& v, const std::string& path) {
  if (v.is_object()) return read_publish_object(r, v, path);
  if (!v.is_string()) {
    r.problem(path, "must be a string like \"8080:80/tcp\" or an object, not " + describe(v));
    return std::nullopt;
  }
  const auto& text = v.get_ref<const std::string&>();
  return r.check(parse_publish(text), path, "invalid port mapping " + quote(text) + ": ");
}

std::optional<Expose> read_expose(Reader& r, const Json& v, const std::string& path) {
  auto text = r.port_text(v, path, "a port like \"6000/tcp\" or a number");
  if (!text) return std::nullopt;
  return r.check(parse_expose(*text), path, "invalid exposed port " + quote(*text) + ": ");
}

ContainerEntry read_container(Reader& r, const Json& v, const std::string& path) {
  ContainerEntry e{.path = path};
  if (!r.object(v, path,
                {{"name", kRequired},
                 {"namespace"},
                 {"labels"},
                 {"networks"},
                 {"publish"},
                 {"expose"}})) {
    return e;
  }
  r.member(v, path, "name", [&](const Json& f, const std::string& p) {
    e.c.name = r.name(f, p, "container", docker_name_problem).value_or("");
  });
  r.member(v, path, "namespace", [&](const Json& f, const std::string& p) {
    e.c.ns = r.name(f, p, "namespace", dns_label_problem).value_or(e.c.ns);
  });
  r.member(v, path, "labels",
           [&](const Json& f, const std::string& p) { r.labels(f, p, e.c.labels); });
  r.member(v, path, "networks", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "network attachments", [&](const Json& el, const std::string& ep) {
      if (auto a = read_attachment(r, el, ep)) e.attachments.push_back(std::move(*a));
    });
  });
  r.member(v, path, "publish", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "port mappings", [&](const Json& el, const std::string& ep) {
      if (auto pub = read_publish(r, el, ep)) e.publishes.push_back({std::move(*pub), ep});
    });
  });
  r.member(v, path, "expose", [&](const Json& f, const std::string& p) {
    r.elements(f, p, "ports", [&](const Json& el, const std::string& ep) {
      if (auto expose = read_expose(r, el, ep)) e.c.expose.push_back(*expose);
    });
  });
  return e;
}

// The host's side: which interfaces lead to the world (published ports
// arrive there, masquerade leaves there).
void read_host(Reader& r, const Json& v, const std::string& p, Document& doc) {
  if (!r.object(v, p, {{"uplinks"}})) return;
  r.member(v, p, "uplinks", [&](const Json& f, const std::string& fp) {
    r.elements(f, fp, "interface names", [&](const Json& el, const std::string& ep) {
      auto name = r.name(el, ep, "uplink interface", ifname_problem);
      if (!name || ifname_problem(*name)) return;
      doc.uplinks.push_back(*name);
      doc.uplink_paths.push_back(ep);
    });
  });
}

// `limits`: each a whole number in its range (plan/limits.h); what they
// cost in memory is checked against the host where the maps are made.
void read_limits(Reader& r, const Json& v, const std::string& p, Limits& out) {
  if (!r.object(v, p, {{"conntrack"}, {"endpoints"}, {"published_ports"}, {"socket_nat"}})) return;
  auto one = [&](const char* key, std::optional<uint32_t>& dst) {
    r.member(v, p, key, [&](const Json& n, const std::string& np) {
      auto range = limit_range(key);
      if (!n.is_number_integer() || n.get<int64_t>() < range.first ||
          n.get<int64_t>() > range.second) {
        r.problem(np, "must be a whole number from " + std::to_string(range.first) + " to " +
                          std::to_string(range.second) + ", not " + describe(n));
        return;
      }
      dst = static_cast<uint32_t>(n.get<int64_t>());
    });
  };
  for (auto [key, dst] : out.fields()) one(key, *dst);
}

}  // namespace

std::string entry_label(std::string_view kind, const std::string& name, const std::string& path) {
  if (name.empty()) return "the " + std::string(kind) + " at " + path;
  return std::string(kind) + " " + quote(name);
}

Document read_document(Reader& r, const Json& root, const std::string& source) {
  Document doc;
  r.visit("");
  if (!root.is_object()) {
    r.problem("",
              "the document must be an object with \"networks\", \"containers\" and "
              "\"policies\", not " +
                  describe(root));
    return doc;
  }
  r.object(root, "",
           {{"networks"}, {"containers"}, {"namespaces"}, {"policies"}, {"host"}, {"limits"}});
  r.member(root, "", "host",
           [&](const Json& v, const std::string& p) { read_host(r, v, p, doc); });
  r.member(root, "", "limits",
           [&](const Json& v, const std::string& p) { read_limits(r, v, p, doc.limits); });
  r.member(root, "", "networks", [&](const Json& v, const std::string& p) {
    r.elements(v, p, "networks", [&](const Json& el, const std::string& ep) {
      doc.networks.push_back(read_network(r, el, ep));
    });
  });
  r.member(root, "", "containers", [&](const Json& v, const std::string& p) {
    r.elements(v, p, "containers", [&](const Json& el, const std::string& ep) {
      doc.containers.push_back(read_container(r, el, ep));
    });
  });
  r.member(root, "", "namespaces", [&](const Json& v, const std::string& p) {
    policy_read::read_namespaces(v, p, source, r, doc.namespaces);
  });
  r.member(root, "", "policies", [&](const Json& v, const std::string& p) {
    policy_read::read_policies(v, p, source, r, doc.policies);
  });
  policy_read::check_unique(doc.namespaces, doc.policies, r);
  return doc;
}

}  // namespace moat
