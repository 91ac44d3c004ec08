// ipam.cpp - addresses like Docker's IPAM: a network without a subnet gets
// the first free one of Docker's default pools, a gateway defaults to the
// first host, and containers get the lowest free address after the
// addresses written in the file are reserved, so that adding a container
// never moves another one. IPv6 alike, from moat's own pool of /64s.
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

// The /64s of fd6d:6f61:7400::/48 ("moat" in its hex), a unique local range
// of moat's own, in order: Docker's default IPv6 pool is not fixed across versions.
constexpr size_t kPool6Size = 1 << 16;
Ipv6Prefix pool6_subnet(size_t i) {
  Ipv6Prefix p{*Ipv6::parse("fd6d:6f61:7400::"), 64};
  p.addr.bytes[6] = static_cast<uint8_t>(i >> 8);
  p.addr.bytes[7] = static_cast<uint8_t>(i & 0xff);
  return p;
}

// The address `offset` after the network address of `subnet`.
Ipv6 address_at(const Ipv6Prefix& subnet, uint64_t offset) {
  Ipv6 out = subnet.addr;
  unsigned carry = 0;
  for (int i = 15; i >= 0; --i) {
    unsigned sum = out.bytes[i] + carry + (i >= 8 ? (offset >> (8 * (15 - i))) & 0xff : 0);
    out.bytes[i] = static_cast<uint8_t>(sum);
    carry = sum >> 8;
  }
  return out;
}

// How many addresses `subnet` has, or UINT64_MAX when that is 2^64 or more.
uint64_t address_count(const Ipv6Prefix& subnet) {
  return subnet.len > 64 ? uint64_t{1} << (128 - subnet.len) : UINT64_MAX;
}

NetworkEntry* usable_network6(Document& doc, const AttachmentEntry& a) {
  if (a.network < 0) return nullptr;
  NetworkEntry& n = doc.networks[a.network];
  return n.ipv6 && n.addressing6_ok && n.net.subnet6 ? &n : nullptr;
}

void allocate_subnets6(Document& doc, Problems& problems) {
  std::vector<Ipv6Prefix> taken;
  for (const NetworkEntry& n : doc.networks) {
    if (n.subnet6_given) taken.push_back(*n.net.subnet6);
  }
  size_t next = 0;  // the pool is in order, so no earlier one is free
  for (NetworkEntry& n : doc.networks) {
    if (!n.ipv6 || !n.addressing6_ok) continue;
    if (!n.subnet6_given) {
      auto is_free = [&taken](const Ipv6Prefix& candidate) {
        return std::none_of(taken.begin(), taken.end(),
                            [&](const Ipv6Prefix& t) { return t.overlaps(candidate); });
      };
      while (next < kPool6Size && !is_free(pool6_subnet(next))) ++next;
      if (next == kPool6Size) {
        n.addressing6_ok = false;
        problems.add(n.path,
                     "no default IPv6 subnet is left (the /64s of fd6d:6f61:7400::/48 are "
                     "used); set \"ipv6_subnet\"");
        continue;
      }
      n.net.subnet6 = pool6_subnet(next);
      taken.push_back(*n.net.subnet6);
    }
    if (!n.gateway6_given) n.net.gateway6 = n.net.subnet6->first_host();
    n.next_free6 = 1;
  }
}

void reserve_fixed_addresses6(Document& doc, Problems& problems) {
  for (ContainerEntry& c : doc.containers) {
    for (AttachmentEntry& a : c.attachments) {
      if (a.network < 0 || !a.att.ip6_from_file || !a.att.ip6 || !a.ip6_ok) continue;
      NetworkEntry* n = &doc.networks[a.network];
      const Ipv6& ip6 = *a.att.ip6;
      std::string ip = ip6.str();
      if (!n->ipv6) {
        problems.add(a.ip6_path, "a fixed ipv6 address needs a network with IPv6; " + n->label() +
                                     " has none (give it an \"ipv6_subnet\")");
      } else if (!n->addressing6_ok) {
        continue;  // the network's problem is reported
      } else if (!n->subnet6_given) {
        problems.add(a.ip6_path,
                     "a fixed ipv6 address needs a network with an explicit "
                     "\"ipv6_subnet\"; " +
                         n->label() + " has none");
      } else if (auto why = host_address_problem(ip6, *n->net.subnet6)) {
        problems.add(a.ip6_path, ip + " " + *why + " of " + n->label());
      } else if (ip6 == n->net.gateway6) {
        problems.add(a.ip6_path, ip + " is the IPv6 gateway of " + n->label());
      } else if (auto owner = n->owners6.find(ip6); owner != n->owners6.end()) {
        problems.add(a.ip6_path, ip + " is already used by " + owner->second.container + " (at " +
                                     owner->second.path + ")");
      } else {
        n->owners6.emplace(ip6, NetworkEntry::Owner{c.label(), a.ip6_path});
      }
    }
  }
}

void allocate_addresses6(Document& doc, Problems& problems) {
  for (ContainerEntry& c : doc.containers) {
    for (AttachmentEntry& a : c.attachments) {
      NetworkEntry* n = usable_network6(doc, a);
      if (!n || a.att.ip6_from_file) continue;
      const Ipv6Prefix& subnet = *n->net.subnet6;
      const uint64_t end = address_count(subnet);  // no broadcast address in IPv6
      while (n->next_free6 < end) {
        Ipv6 candidate = address_at(subnet, n->next_free6);
        if (candidate != n->net.gateway6 && !n->owners6.contains(candidate)) break;
        ++n->next_free6;
      }
      if (n->next_free6 >= end) {
        problems.add(
            a.path, "no free IPv6 address is left in subnet " + subnet.str() + " of " + n->label());
        continue;
      }
      a.att.ip6 = address_at(subnet, n->next_free6);
      n->owners6.emplace(*a.att.ip6, NetworkEntry::Owner{c.label(), a.path});
    }
  }
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
  allocate_subnets6(doc, problems);
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
  reserve_fixed_addresses6(doc, problems);
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
  allocate_addresses6(doc, problems);
}

}  // namespace moat
