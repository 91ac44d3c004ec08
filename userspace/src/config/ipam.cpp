// ipam.cpp - addresses like Docker's IPAM: a network without a subnet gets
// the first free one of Docker's default pools, a gateway defaults to the
// first host, and containers get the lowest free address after the
// addresses written in the file are reserved, so that adding a container
// never moves another one.
#include <algorithm>

#include "config/document.h"
#include "config/values.h"

namespace moat {
namespace {

// Docker's default address pools, in its order; 172.17.0.0/16 is its default bridge.
std::vector<Ipv4Prefix> default_subnet_pool() {
  std::vector<Ipv4Prefix> pool;
  for (uint32_t b = 18; b <= 31; ++b) pool.push_back({Ipv4{172u << 24 | b << 16}, 16});
  for (uint32_t c = 0; c < 256; c += 16)
    pool.push_back({Ipv4{192u << 24 | 168u << 16 | c << 8}, 20});
  return pool;
}

NetworkEntry* usable_network(Document& doc, const AttachmentEntry& a) {
  if (a.network < 0) return nullptr;
  NetworkEntry& n = doc.networks[a.network];
  return n.addressing_ok ? &n : nullptr;
}

}  // namespace

// Like Docker: the first pool subnet that no network uses, explicit ones
// anywhere in the file and allocated ones before this network.
void allocate_subnets(Document& doc, Problems& problems) {
  std::vector<Ipv4Prefix> taken;
  for (const NetworkEntry& n : doc.networks) {
    if (n.subnet_given) taken.push_back(n.net.subnet);
  }
  const std::vector<Ipv4Prefix> pool = default_subnet_pool();
  for (NetworkEntry& n : doc.networks) {
    if (!n.addressing_ok) continue;
    if (!n.subnet_given) {
      auto free = std::find_if(pool.begin(), pool.end(), [&taken](const Ipv4Prefix& candidate) {
        return std::none_of(taken.begin(), taken.end(),
                            [&](const Ipv4Prefix& t) { return t.overlaps(candidate); });
      });
      if (free == pool.end()) {
        n.addressing_ok = false;
        problems.add(n.path,
                     "no default subnet is left (172.18.0.0/16 to 172.31.0.0/16 and "
                     "192.168.0.0/20 to 192.168.240.0/20 are used); set \"subnet\"");
        continue;
      }
      n.net.subnet = *free;
      taken.push_back(*free);
    }
    if (!n.gateway_given) n.net.gateway = n.net.subnet.first_host();
    n.next_free = n.net.subnet.first_host().value;
  }
}

void reserve_fixed_addresses(Document& doc, Problems& problems) {
  for (ContainerEntry& c : doc.containers) {
    for (AttachmentEntry& a : c.attachments) {
      NetworkEntry* n = usable_network(doc, a);
      if (!n || !a.att.ip_from_file || !a.ip_ok) continue;
      std::string ip = a.att.ip.str();
      if (!n->subnet_given) {
        // As in Docker: an allocated subnet depends on the rest of the file,
        // so an address chosen for it would break by surprise.
        problems.add(a.ip_path, "a fixed ip needs a network with an explicit \"subnet\"; " +
                                    n->label() + " has none");
      } else if (auto why = host_address_problem(a.att.ip, n->net.subnet)) {
        problems.add(a.ip_path, ip + " " + *why + " of " + n->label());
      } else if (a.att.ip == n->net.gateway) {
        problems.add(a.ip_path, ip + " is the gateway of " + n->label());
      } else if (auto owner = n->owners.find(a.att.ip.value); owner != n->owners.end()) {
        problems.add(a.ip_path, ip + " is already used by " + owner->second.container + " (at " +
                                    owner->second.path + ")");
      } else {
        n->owners.emplace(a.att.ip.value, NetworkEntry::Owner{c.label(), a.ip_path});
      }
    }
  }
}

// The lowest free host address, like Docker's IPAM.
void allocate_addresses(Document& doc, Problems& problems) {
  for (ContainerEntry& c : doc.containers) {
    for (AttachmentEntry& a : c.attachments) {
      NetworkEntry* n = usable_network(doc, a);
      if (!n || a.att.ip_from_file) continue;
      const uint64_t broadcast = n->net.subnet.broadcast().value;
      while (n->next_free < broadcast &&
             (n->next_free == n->net.gateway.value || n->owners.contains(n->next_free))) {
        ++n->next_free;
      }
      if (n->next_free >= broadcast) {
        problems.add(a.path, "no free address is left in subnet " + n->net.subnet.str() + " of " +
                                 n->label());
        continue;
      }
      a.att.ip = Ipv4{static_cast<uint32_t>(n->next_free)};
      n->owners.emplace(a.att.ip.value, NetworkEntry::Owner{c.label(), a.path});
    }
  }
}

}  // namespace moat
