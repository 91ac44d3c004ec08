#include "cni/protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <tuple>

#include "config/values.h"
#include "dataplane/dataplane.h"
#include "util/net.h"

using nlohmann::json;

namespace moat::cni {
namespace {

Error err(int code, std::string msg, std::string details = {}) {
  return {code, std::move(msg), std::move(details)};
}

// The spec's pattern for container ids and network names: [a-zA-Z0-9][a-zA-Z0-9_.-]*
bool id_like(const std::string& s) {
  if (s.empty() || !isalnum(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// What the kernel takes as an interface name (IFNAMSIZ, no '/', ':', space).
bool ifname_like(const std::string& s) {
  if (s.empty() || s.size() > 15 || s == "." || s == "..") return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return c == '/' || c == ':' || isspace(static_cast<unsigned char>(c));
  });
}

std::optional<std::tuple<int, int, int>> version_tuple(const std::string& v) {
  int a, b, c;
  char end;
  if (sscanf(v.c_str(), "%d.%d.%d%c", &a, &b, &c, &end) != 3) return std::nullopt;
  return std::tuple{a, b, c};
}

bool ipv4_text(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool ipv6_text(const std::string& s) {
  in6_addr a;
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

std::optional<Verb> verb_of(const std::string& s) {
  static const std::map<std::string, Verb> verbs = {
      {"ADD", Verb::add},       {"DEL", Verb::del}, {"CHECK", Verb::check},
      {"STATUS", Verb::status}, {"GC", Verb::gc},   {"VERSION", Verb::version}};
  auto it = verbs.find(s);
  if (it == verbs.end()) return std::nullopt;
  return it->second;
}

const std::set<std::string>& known_keys() {
  static const std::set<std::string> keys = {// the protocol's and the runtime's
                                             "cniVersion", "name", "type", "capabilities",
                                             "runtimeConfig", "prevResult", "args", "dns", "ipam",
                                             // moat's
                                             "instance", "uplinks", "policyDir", "limits",
                                             "portsHeldByRuntime", "icc", "internal", "masquerade"};
  return keys;
}

Error read_port_mappings(const json& rc, NetConf& conf) {
  if (!rc.contains("portMappings")) return {0, {}, {}};
  const json& pm = rc["portMappings"];
  if (!pm.is_array()) return err(kInvalidConfig, "runtimeConfig.portMappings is not a list");
  for (size_t i = 0; i < pm.size(); ++i) {
    std::string where = "runtimeConfig.portMappings[" + std::to_string(i) + "]";
    const json& m = pm[i];
    if (!m.is_object()) return err(kInvalidConfig, where + " is not an object");
    PortMapping p;
    auto port = [&](const char* key, int* out) {
      if (!m.contains(key) || !m[key].is_number_integer()) return false;
      long v = m[key].get<long>();
      if (v < 1 || v > 65535) return false;
      *out = static_cast<int>(v);
      return true;
    };
    if (!port("hostPort", &p.host_port) || !port("containerPort", &p.container_port))
      return err(kInvalidConfig, where + ": hostPort and containerPort must be ports (1-65535)");
    if (m.contains("protocol")) {
      if (!m["protocol"].is_string())
        return err(kInvalidConfig, where + ".protocol is not a string");
      p.protocol = m["protocol"].get<std::string>();
      std::transform(p.protocol.begin(), p.protocol.end(), p.protocol.begin(),
                     [](unsigned char c) { return static_cast<char>(tolower(c)); });
    }
    if (p.protocol != "tcp" && p.protocol != "udp" && p.protocol != "sctp")
      return err(kInvalidConfig,
                 where + ".protocol \"" + p.protocol + "\": expected tcp, udp or sctp");
    if (m.contains("hostIP")) {
      if (!m["hostIP"].is_string()) return err(kInvalidConfig, where + ".hostIP is not a string");
      p.host_ip = m["hostIP"].get<std::string>();
      // portmap's forms: "" every address of both families, "0.0.0.0" or
      // "::" every address of one, else that address (unbracketed).
      if (!p.host_ip.empty() && !ipv4_text(p.host_ip) && !ipv6_text(p.host_ip))
        return err(kInvalidConfig, where + ".hostIP \"" + p.host_ip + "\" is not an IP address",
                   "give an IPv4 or IPv6 address (\"127.0.0.1\", \"::1\"), or none for every "
                   "address");
    }
    conf.port_mappings.push_back(p);
  }
  return {0, {}, {}};
}

// [{"key", "value"}], the conventions' form of labels (`where` names it).
Error read_label_list(const json& labels, const std::string& where, NetConf& conf) {
  if (!labels.is_array()) return err(kInvalidConfig, where + " is not a list");
  for (const auto& l : labels) {
    if (!l.is_object() || !l.contains("key") || !l["key"].is_string() || !l.contains("value") ||
        !l["value"].is_string())
      return err(kInvalidConfig, where + ": each label is {\"key\": ..., \"value\": ...}");
    conf.labels.emplace_back(l["key"].get<std::string>(), l["value"].get<std::string>());
  }
  return {0, {}, {}};
}

Error read_labels(const json& args, NetConf& conf) {
  if (!args.is_object()) return err(kInvalidConfig, "args is not an object");
  if (!args.contains("cni") || !args["cni"].is_object() || !args["cni"].contains("labels"))
    return {0, {}, {}};
  return read_label_list(args["cni"]["labels"], "args.cni.labels", conf);
}

Error read_moat_keys(const json& j, NetConf& conf) {
  auto boolean = [&](const char* key, bool* out) {
    if (!j.contains(key)) return true;
    if (!j[key].is_boolean()) return false;
    *out = j[key].get<bool>();
    return true;
  };
  for (auto [key, out] : {std::pair{"icc", &conf.icc},
                          {"internal", &conf.internal},
                          {"masquerade", &conf.masquerade},
                          {"portsHeldByRuntime", &conf.ports_held_by_runtime}})
    if (!boolean(key, out)) return err(kInvalidConfig, std::string(key) + " must be true or false");
  if (j.contains("instance")) {
    std::string why;
    if (!j["instance"].is_string() || !valid_instance_name(j["instance"].get<std::string>(), &why))
      return err(kInvalidConfig, "instance: " + (why.empty() ? "not a string" : why));
    conf.instance = j["instance"].get<std::string>();
  }
  if (j.contains("uplinks")) {
    if (!j["uplinks"].is_array())
      return err(kInvalidConfig, "uplinks is not a list of interface names");
    for (const auto& u : j["uplinks"]) {
      if (!u.is_string() || !ifname_like(u.get<std::string>()))
        return err(kInvalidConfig, "uplinks: " + u.dump() + " is not an interface name");
      conf.uplinks.push_back(u.get<std::string>());
    }
  }
  if (j.contains("limits")) {
    // As a moat file's `limits`, read by the same rules (--limit's).
    std::vector<std::string> items;
    if (!j["limits"].is_object()) return err(kInvalidConfig, "limits is not an object");
    for (const auto& [key, v] : j["limits"].items())
      items.push_back(key + "=" + (v.is_number_unsigned() ? v.dump() : std::string("?")));
    auto limits = parse_limit_flags(items);
    if (!limits) return err(kInvalidConfig, "limits: " + limits.error().substr(8));
    conf.limits = *limits;
  }
  if (j.contains("policyDir")) {
    if (!j["policyDir"].is_string() || j["policyDir"].get<std::string>().empty())
      return err(kInvalidConfig, "policyDir is not a directory path");
    conf.policy_dir = j["policyDir"].get<std::string>();
  }
  return {0, {}, {}};
}

Error read_valid_attachments(const json& j, NetConf& conf) {
  // The spec's text said cni.dev/attachments until it was corrected; libcni
  // sends valid-attachments (and, since 1.2.3, both).
  const char* key =
      j.contains("cni.dev/valid-attachments") ? "cni.dev/valid-attachments" : "cni.dev/attachments";
  if (!j.contains(key))
    return err(kInvalidConfig, "GC without cni.dev/valid-attachments",
               "nothing is removed without the list of attachments to keep");
  const json& list = j[key];
  bool ok = list.is_array() && std::all_of(list.begin(), list.end(), [](const json& a) {
              return a.is_object() && a.contains("containerID") && a["containerID"].is_string() &&
                     a.contains("ifname") && a["ifname"].is_string();
            });
  if (!ok)
    return err(kInvalidConfig, std::string(key) + ": expected [{\"containerID\", \"ifname\"}]");
  conf.valid_attachments = list;
  return {0, {}, {}};
}

}  // namespace

json error_json(const Error& e, const std::string& version) {
  json j = {{"cniVersion", version.empty() ? supported_versions().back() : version},
            {"code", e.code},
            {"msg", e.msg}};
  if (!e.details.empty()) j["details"] = e.details;
  return j;
}

const std::vector<std::string>& supported_versions() {
  static const std::vector<std::string> v = {"0.4.0", "1.0.0", "1.1.0"};
  return v;
}

json version_json(const std::string& version) {
  return {{"cniVersion", version.empty() ? supported_versions().back() : version},
          {"supportedVersions", supported_versions()}};
}

EnvResult read_env(const std::map<std::string, std::string>& vars) {
  auto get = [&](const char* k) {
    auto it = vars.find(k);
    return it == vars.end() ? std::string() : it->second;
  };
  std::string cmd = get("CNI_COMMAND");
  auto verb = verb_of(cmd);
  if (!verb)
    return {std::nullopt,
            err(kInvalidEnvironment,
                cmd.empty() ? "CNI_COMMAND is not set" : "CNI_COMMAND \"" + cmd + "\" is unknown",
                "expected ADD, DEL, CHECK, STATUS, GC or VERSION")};
  Env env{*verb,           get("CNI_CONTAINERID"), get("CNI_NETNS"), get("CNI_IFNAME"),
          get("CNI_ARGS"), get("CNI_PATH")};
  bool attachment = *verb == Verb::add || *verb == Verb::del || *verb == Verb::check;
  if (!attachment) return {env, {}};
  std::vector<std::string> missing;
  if (env.container_id.empty()) missing.push_back("CNI_CONTAINERID");
  if (env.ifname.empty()) missing.push_back("CNI_IFNAME");
  if (env.netns.empty() && *verb != Verb::del) missing.push_back("CNI_NETNS");
  if (!missing.empty()) {
    std::string names;
    for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
    return {std::nullopt, err(kInvalidEnvironment, cmd + " needs " + names)};
  }
  if (!id_like(env.container_id))
    return {std::nullopt, err(kInvalidEnvironment, "CNI_CONTAINERID \"" + env.container_id +
                                                       "\" is not [a-zA-Z0-9][a-zA-Z0-9_.-]*")};
  if (!ifname_like(env.ifname))
    return {std::nullopt,
            err(kInvalidEnvironment, "CNI_IFNAME \"" + env.ifname + "\" is not an interface name")};
  return {env, {}};
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_args(const std::string& text,
                                                                           std::string* why) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string::npos) end = text.size();
    std::string pair = text.substr(start, end - start);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      if (eq == std::string::npos || eq == 0 || pair.find('=', eq + 1) != std::string::npos) {
        if (why) *why = "CNI_ARGS: \"" + pair + "\" is not KEY=VALUE";
        return std::nullopt;
      }
      out.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
    }
    start = end + 1;
  }
  return out;
}

std::string publish_spec(const PortMapping& m) {
  std::string s = m.host_ip.empty()                          ? ""
                  : m.host_ip.find(':') == std::string::npos ? m.host_ip + ":"
                                                             : "[" + m.host_ip + "]:";
  return s + std::to_string(m.host_port) + ":" + std::to_string(m.container_port) + "/" +
         m.protocol;
}

ConfResult read_conf(const std::string& text, Verb verb) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return {std::nullopt, err(kDecodingFailure, "the network configuration is not JSON", e.what())};
  }
  if (!j.is_object())
    return {std::nullopt, err(kDecodingFailure, "the network configuration is not an object")};
  NetConf conf;
  if (!j.contains("cniVersion") || !j["cniVersion"].is_string())
    return {std::nullopt, err(kInvalidConfig, "cniVersion is missing")};
  conf.version = j["cniVersion"].get<std::string>();
  const auto& all = supported_versions();
  if (std::find(all.begin(), all.end(), conf.version) == all.end())
    return {std::nullopt,
            err(kIncompatibleVersion, "incompatible CNI versions",
                "config is \"" + conf.version + "\", moat supports 0.4.0, 1.0.0 and 1.1.0")};
  if ((verb == Verb::gc || verb == Verb::status) &&
      version_tuple(conf.version) < version_tuple("1.1.0"))
    return {std::nullopt, err(kIncompatibleVersion,
                              std::string("config version ") + conf.version + " does not allow " +
                                  (verb == Verb::gc ? "GC" : "STATUS"),
                              "GC and STATUS need cniVersion 1.1.0")};
  if (!j.contains("name") || !j["name"].is_string() || !id_like(j["name"].get<std::string>()))
    return {std::nullopt, err(kInvalidConfig, "name is missing or not [a-zA-Z0-9][a-zA-Z0-9_.-]*")};
  conf.name = j["name"].get<std::string>();
  conf.type = j.value("type", std::string());
  for (const auto& [key, value] : j.items())
    if (!known_keys().contains(key) && key.rfind("cni.dev/", 0) != 0)
      return {std::nullopt,
              err(kUnsupportedField, "unknown key \"" + key + "\": " + value.dump(),
                  "moat's keys: instance, uplinks, policyDir, portsHeldByRuntime, limits, "
                  "icc, internal, masquerade")};
  if (j.contains("prevResult")) {
    if (!j["prevResult"].is_object())
      return {std::nullopt, err(kDecodingFailure, "prevResult is not an object")};
    conf.prev_result = j["prevResult"];
  }
  if (j.contains("runtimeConfig")) {
    if (!j["runtimeConfig"].is_object())
      return {std::nullopt, err(kInvalidConfig, "runtimeConfig is not an object")};
    if (auto e = read_port_mappings(j["runtimeConfig"], conf); e.code) return {std::nullopt, e};
    // A runtime with a "labels" capability of its own hands them here.
    if (j["runtimeConfig"].contains("labels"))
      if (auto e = read_label_list(j["runtimeConfig"]["labels"], "runtimeConfig.labels", conf);
          e.code)
        return {std::nullopt, e};
  }
  if (j.contains("args"))
    if (auto e = read_labels(j["args"], conf); e.code) return {std::nullopt, e};
  if (auto e = read_moat_keys(j, conf); e.code) return {std::nullopt, e};
  if (verb == Verb::gc)
    if (auto e = read_valid_attachments(j, conf); e.code) return {std::nullopt, e};
  return {conf, {}};
}

json result_as(const json& prev_result, const std::string& version) {
  json r = prev_result.is_object() ? prev_result : json::object();
  r["cniVersion"] = version;
  bool old = version_tuple(version) < version_tuple("1.0.0");
  if (r.contains("ips") && r["ips"].is_array())
    for (auto& ip : r["ips"]) {
      if (!ip.is_object()) continue;
      if (!old) {
        ip.erase("version");
      } else if (!ip.contains("version") && ip.contains("address") && ip["address"].is_string()) {
        ip["version"] = ip["address"].get<std::string>().find(':') == std::string::npos ? "4" : "6";
      }
    }
  return r;
}

AttachmentResult attachment_of(const json& prev, const std::string& ifname,
                               const std::string& netns) {
  auto bad = [](std::string msg, std::string details = {}) {
    return AttachmentResult{std::nullopt, err(kInvalidConfig, std::move(msg), std::move(details))};
  };
  if (!prev.is_object() || !prev.contains("interfaces") || !prev["interfaces"].is_array())
    return bad("prevResult lists no interfaces",
               "moat runs chained after an interface plugin such as bridge");
  Attachment a;
  std::optional<size_t> index;
  const json& ifs = prev["interfaces"];
  for (size_t i = 0; i < ifs.size(); ++i) {
    const json& f = ifs[i];
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) continue;
    std::string sandbox = f.value("sandbox", std::string());
    if (sandbox.empty()) {
      a.host_interfaces.push_back(f["name"].get<std::string>());
    } else if (f["name"].get<std::string>() == ifname && (netns.empty() || sandbox == netns)) {
      index = i;
      a.mac = f.value("mac", std::string());
    }
  }
  if (!index) return bad("prevResult has no interface " + ifname + " in " + netns);
  const json ips = prev.value("ips", json::array());
  for (const auto& ip : ips) {
    if (!ip.is_object() || ip.value("interface", -1) != static_cast<int>(*index)) continue;
    std::string addr = ip.value("address", std::string());
    if (addr.find(':') != std::string::npos) {
      auto slash = addr.find('/');
      auto host = Ipv6::parse(std::string_view(addr).substr(0, slash));
      int prefix = -1;
      if (slash != std::string::npos) prefix = atoi(addr.c_str() + slash + 1);
      if (!host || prefix < 1 || prefix > 128)
        return bad("prevResult: address \"" + addr + "\" is not IPv6/PREFIX");
      if (host->is_link_local()) continue;
      if (!a.ipv6.empty())
        return bad("prevResult gives " + ifname + " more than one IPv6 address",
                   "moat follows one IPv6 address per interface");
      a.ipv6 = host->str();
      a.prefix6 = prefix;
      std::string gateway = ip.value("gateway", std::string());
      auto gw = Ipv6::parse(gateway);
      if (!gateway.empty() && !gw)
        return bad("prevResult: gateway \"" + gateway + "\" is not IPv6");
      // A router's link-local address is no address on the subnet.
      if (gw && !gw->is_link_local()) a.gateway6 = gw->str();
      continue;
    }
    auto slash = addr.find('/');
    std::string host = addr.substr(0, slash);
    int prefix = -1;
    if (slash != std::string::npos) prefix = atoi(addr.c_str() + slash + 1);
    if (!ipv4_text(host) || prefix < 1 || prefix > 32)
      return bad("prevResult: address \"" + addr + "\" is not IPv4/PREFIX");
    if (!a.ipv4.empty()) return bad("prevResult gives " + ifname + " more than one IPv4 address");
    a.ipv4 = host;
    a.prefix = prefix;
    a.gateway = ip.value("gateway", std::string());
    if (!a.gateway.empty() && !ipv4_text(a.gateway))
      return bad("prevResult: gateway \"" + a.gateway + "\" is not IPv4");
  }
  if (a.ipv4.empty() && !a.ipv6.empty())
    return bad("prevResult gives " + ifname + " an IPv6 address only",
               "moat needs an IPv4 address on the interface; IPv6-only networks are not "
               "supported yet");
  if (a.ipv4.empty()) return bad("prevResult gives " + ifname + " no IPv4 address");
  return {a, {}};
}

}  // namespace moat::cni
