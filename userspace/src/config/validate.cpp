// validate.cpp - pass 3: what spans entries (unique names, references,
// subnet overlaps, port collisions). A value that is wrong on its own was
// reported when it was read (read.cpp); here it is skipped, so one mistake is
// reported once.
#include <algorithm>

#include "config/document.h"
#include "config/values.h"

namespace moat {
namespace {

template <class Entry>
void check_unique(const std::vector<Entry>& entries, std::string_view kind, Problems& problems) {
  std::map<std::string, const std::string*> first_path;
  for (const Entry& e : entries) {
    if (e.name().empty()) continue;
    auto [first, added] = first_path.emplace(e.name(), &e.path);
    if (!added) {
      problems.add(key_path(e.path, "name"), "duplicate " + std::string(kind) + " name " +
                                                 quote(e.name()) + " (first used at " +
                                                 *first->second + ")");
    }
  }
}

// A publish on an IPv6 host address forwards to the container's IPv6
// address on the network it is published from (the first non-internal
// one, as plan/ picks it): without one it could reach nothing.
void check_published_ipv6(const Document& doc, const ContainerEntry& c, Problems& problems) {
  auto target = std::find_if(c.attachments.begin(), c.attachments.end(), [&doc](const auto& a) {
    return a.network >= 0 && !doc.networks[a.network].net.internal;
  });
  if (target == c.attachments.end() || target->att.ip6) return;
  for (const PublishEntry& p : c.publishes) {
    if (!p.pub.host_ip6) continue;
    problems.add(p.path, quote(p.pub.text) + " publishes on an IPv6 address, but " + c.label() +
                             " has no IPv6 address on network " + quote(target->att.network) +
                             ", which it is published from; give the network an " +
                             "\"ipv6_subnet\" or publish on an IPv4 address");
  }
}

}  // namespace

void check_unique_names(const Document& doc, Problems& problems) {
  check_unique(doc.networks, "network", problems);
  check_unique(doc.containers, "container", problems);
}

void check_subnet_overlaps(const Document& doc, Problems& problems) {
  auto& nets = doc.networks;
  for (size_t j = 0; j < nets.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      if (!nets[i].subnet_given || !nets[j].subnet_given) continue;
      if (!nets[i].net.subnet.overlaps(nets[j].net.subnet)) continue;
      problems.add(key_path(nets[j].path, "subnet"),
                   "subnet " + nets[j].net.subnet.str() + " of " + nets[j].label() +
                       " overlaps subnet " + nets[i].net.subnet.str() + " of " + nets[i].label() +
                       " (" + nets[i].path + ")");
    }
  }
  for (size_t j = 0; j < nets.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      if (!nets[i].subnet6_given || !nets[j].subnet6_given) continue;
      const Ipv6Prefix &earlier = *nets[i].net.subnet6, &later = *nets[j].net.subnet6;
      if (!earlier.overlaps(later)) continue;
      problems.add(key_path(nets[j].path, "ipv6_subnet"),
                   "IPv6 subnet " + later.str() + " of " + nets[j].label() +
                       " overlaps IPv6 subnet " + earlier.str() + " of " + nets[i].label() + " (" +
                       nets[i].path + ")");
    }
  }
}

void resolve_attachments(Document& doc, Problems& problems) {
  std::map<std::string, int> index;
  std::vector<std::string> names;
  for (size_t i = 0; i < doc.networks.size(); ++i) {
    const std::string& name = doc.networks[i].name();
    if (!name.empty() && index.emplace(name, static_cast<int>(i)).second) names.push_back(name);
  }
  for (ContainerEntry& c : doc.containers) {
    std::map<std::string, const std::string*> attached;  // network -> first attachment's path
    for (AttachmentEntry& a : c.attachments) {
      auto it = index.find(a.att.network);
      if (it == index.end()) {
        problems.add(a.network_path, "unknown network " + quote(a.att.network) +
                                         (names.empty() ? ": the file defines no networks"
                                                        : did_you_mean(a.att.network, names)));
        continue;
      }
      a.network = it->second;
      auto [first, added] = attached.emplace(a.att.network, &a.path);
      if (!added) {
        problems.add(a.network_path, c.label() + " is already attached to network " +
                                         quote(a.att.network) + " (at " + *first->second + ")");
      }
    }
  }
}

// Every host-side interface is one container attachment's or an uplink,
// never two things: apply would attach two programs to one device (the
// later one winning), or judge an uplink as a container.
void check_interfaces(const Document& doc, Problems& problems) {
  std::map<std::string, std::string> owner;  // interface -> who took it first, and where
  for (const ContainerEntry& c : doc.containers) {
    for (const AttachmentEntry& a : c.attachments) {
      const std::string& ifname = a.att.host_interface;
      if (ifname.empty()) continue;
      auto [first, added] = owner.emplace(ifname, c.label() + " (" + a.path + ")");
      if (!added) {
        problems.add(key_path(a.path, "interface"), "interface " + quote(ifname) +
                                                        " is already used by " + first->second);
      }
    }
  }
  for (size_t i = 0; i < doc.uplinks.size(); ++i) {
    const std::string& ifname = doc.uplinks[i];
    const std::string& path = doc.uplink_paths[i];
    auto [first, added] = owner.emplace(ifname, "uplink (" + path + ")");
    if (!added) {
      problems.add(path, "uplink " + quote(ifname) + " is already used by " + first->second);
    }
  }
}

void check_publish_conflicts(const Document& doc, Problems& problems) {
  std::vector<std::pair<const ContainerEntry*, const PublishEntry*>> earlier;
  for (const ContainerEntry& c : doc.containers) {
    for (const PublishEntry& p : c.publishes) {
      for (const auto& [other_container, other] : earlier) {
        auto port = first_shared_port(other->pub, p.pub);
        if (!port) continue;
        problems.add(p.path, "host port " + std::to_string(*port) + "/" +
                                 to_string(p.pub.protocol) + " is already published by " +
                                 other_container->label() + " (" + other->path + ": " +
                                 quote(other->pub.text) + ")");
        break;
      }
      earlier.emplace_back(&c, &p);
    }
  }
}

// Docker silently ignores -p for a container that only has internal
// networks (or none); a policy tool should say so instead.
void check_published_reachable(const Document& doc, Problems& problems) {
  for (const ContainerEntry& c : doc.containers) {
    if (c.publishes.empty()) continue;
    std::string path = key_path(c.path, "publish");
    if (c.attachments.empty()) {
      problems.add(path, "a container without networks cannot be published");
      continue;
    }
    // An unknown network is reported already and might be the public one.
    bool only_internal =
        std::all_of(c.attachments.begin(), c.attachments.end(), [&doc](const AttachmentEntry& a) {
          return a.network >= 0 && doc.networks[a.network].net.internal;
        });
    if (!only_internal) {
      check_published_ipv6(doc, c, problems);
      continue;
    }
    std::vector<std::string> names;
    for (const AttachmentEntry& a : c.attachments) names.push_back(quote(a.att.network));
    problems.add(path, "internal network containers cannot be published: " + c.label() +
                           " is only on internal networks (" + join(names, ", ") +
                           "); attach it to a non-internal network too");
  }
}

}  // namespace moat
