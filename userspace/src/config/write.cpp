// write.cpp - a Config back as the text of a moat file: what producers that
// build a Config themselves (the Docker agent, the CNI plugin) keep as the
// instance's main input, so that it is read again exactly like a user's file.
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "config/values.h"

namespace moat {

std::string config_to_json(const Config& config) {
  using Out = nlohmann::ordered_json;  // keys in the order of the file format's table
  Out doc = Out::object();
  if (!config.uplinks.empty()) doc["host"] = {{"uplinks", config.uplinks}};
  for (auto [key, v] : config.limits.values())
    if (v) doc["limits"][key] = *v;
  Out networks = Out::array();
  for (const Network& n : config.networks) {
    Out net = {{"name", n.name}, {"subnet", n.subnet.str()}, {"gateway", n.gateway.str()}};
    if (n.subnet6) {
      net["ipv6_subnet"] = n.subnet6->str();
      net["ipv6_gateway"] = n.gateway6.str();
    }
    net["icc"] = n.icc;
    net["internal"] = n.internal;
    net["masquerade"] = n.masquerade;
    if (!n.bridge.empty()) net["bridge"] = n.bridge;
    networks.push_back(std::move(net));
  }
  doc["networks"] = std::move(networks);
  Out containers = Out::array();
  for (const Container& c : config.containers) {
    Out o = {{"name", c.name}, {"namespace", c.ns}};
    if (!c.labels.empty()) o["labels"] = c.labels;
    Out attachments = Out::array();
    for (const Attachment& a : c.networks) {
      Out att = {{"network", a.network}, {"ip", a.ip.str()}};
      if (a.ip6) {
        att["ipv6"] = a.ip6->str();
      } else if (const Network* n = config.find_network(a.network); n && n->subnet6) {
        att["ipv6"] = false;  // or it would be allocated one
      }
      if (!a.host_interface.empty()) att["interface"] = a.host_interface;
      if (a.mac) att["mac"] = mac_str(*a.mac);
      attachments.push_back(std::move(att));
    }
    o["networks"] = std::move(attachments);
    if (!c.publish.empty()) {
      Out publish = Out::array();
      for (const Publish& p : c.publish) publish.push_back(render_publish(p));
      o["publish"] = std::move(publish);
    }
    if (!c.expose.empty()) {
      Out expose = Out::array();
      for (const Expose& e : c.expose) {
        expose.push_back(std::to_string(e.port) + "/" + to_string(e.protocol));
      }
      o["expose"] = std::move(expose);
    }
    containers.push_back(std::move(o));
  }
  doc["containers"] = std::move(containers);
  return doc.dump(2) + "\n";
}

}  // namespace moat
