// document.h - internal: a moat file between reading and the finished
// Config, as entries that remember where each value was written, so that the
// checks spanning entries (validate.cpp) and IPAM (ipam.cpp) can name the
// place of every problem they find.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/reader.h"

namespace moat {

// `network "backend"`, or `the network at networks[2]` when it has no name.
std::string entry_label(std::string_view kind, const std::string& name, const std::string& path);

struct NetworkEntry {
  struct Owner {
    std::string container;  // entry_label() of the container
    std::string path;       // where the address was written or allocated
  };

  Network net{};
  std::string path;
  bool subnet_given = false;  // the file has a valid CIDR (which may still be too small)
  bool addressing_ok = true;  // subnet and gateway are usable for address checks and IPAM
  bool gateway_given = false;
  std::map<uint32_t, Owner> owners{};  // addresses of containers
  uint64_t next_free = 0;              // IPAM cursor: no lower address is free
  // IPv6, alike: `ipv6` is whether the network has it at all.
  bool ipv6 = false;
  bool subnet6_given = false;
  bool addressing6_ok = true;
  bool gateway6_given = false;
  std::map<Ipv6, Owner> owners6{};
  uint64_t next_free6 = 0;  // offset from the subnet's network address

  const std::string& name() const { return net.name; }
  std::string label() const { return entry_label("network", net.name, path); }
};

struct AttachmentEntry {
  Attachment att{};
  std::string path;
  std::string network_path{};  // where the network's name was written
  std::string ip_path{};
  bool ip_ok = true;  // false when the written address is unusable
  std::string ip6_path{};
  bool ip6_ok = true;
  int network = -1;  // index into Document::networks once resolved
};

struct PublishEntry {
  Publish pub;
  std::string path;
};

struct ContainerEntry {
  Container c{};  // networks and publish are filled from the entries below at the end
  std::string path;
  std::vector<AttachmentEntry> attachments{};
  std::vector<PublishEntry> publishes{};

  const std::string& name() const { return c.name; }
  std::string label() const { return entry_label("container", c.name, path); }
};

struct Document {
  std::vector<NetworkEntry> networks;
  std::vector<ContainerEntry> containers;
  std::vector<std::string> uplinks;
  std::vector<std::string> uplink_paths;  // where each of `uplinks` was written
  std::vector<NamespaceDef> namespaces;
  std::vector<Policy> policies;
  Limits limits;
};

// Pass 2 (read.cpp): everything that concerns a single value.
Document read_document(Reader& r, const Json& root, const std::string& source);

// Pass 3, in this order (validate.cpp, ipam.cpp): what spans entries.
void check_unique_names(const Document& doc, Problems& problems);
void check_subnet_overlaps(const Document& doc, Problems& problems);
void allocate_subnets(Document& doc, Problems& problems);  // ipam.cpp
void resolve_attachments(Document& doc, Problems& problems);
void reserve_fixed_addresses(Document& doc, Problems& problems);  // ipam.cpp
void allocate_addresses(Document& doc, Problems& problems);       // ipam.cpp
void check_interfaces(const Document& doc, Problems& problems);
void check_publish_conflicts(const Document& doc, Problems& problems);
void check_published_reachable(const Document& doc, Problems& problems);

}  // namespace moat
