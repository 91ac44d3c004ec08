// The CNI protocol as moat speaks it (cni/protocol.h): environment, network
// configuration, versions, results passed on, error objects. The inputs are
// what libcni sends (every variable set, empty ones included) and what the
// reference bridge plugin 1.1.1 returns.
#include <gtest/gtest.h>

#include "cni/protocol.h"

namespace moat::cni {
namespace {

using nlohmann::json;

std::map<std::string, std::string> env_of(const std::string& cmd) {
  return {{"CNI_COMMAND", cmd},   {"CNI_CONTAINERID", "4f1c0ffee"}, {"CNI_NETNS", "/run/netns/c1"},
          {"CNI_IFNAME", "eth0"}, {"CNI_ARGS", "IgnoreUnknown=1"},  {"CNI_PATH", "/usr/lib/cni"}};
}

// What bridge returns for eth0 in /run/netns/c1 (interfaces: bridge, host
// veth, container), at 1.0.0.
json bridge_result() {
  return json::parse(R"({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:00:00:01"},
                   {"name": "veth1a2b3c4d", "mac": "aa:bb:cc:00:00:02"},
                   {"name": "eth0", "mac": "0a:58:0a:58:00:05", "sandbox": "/run/netns/c1"}],
    "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}],
    "dns": {}})");
}

std::string conf_text(const json& extra = json::object(), const std::string& version = "1.0.0") {
  json j = {{"cniVersion", version}, {"name", "net-a"}, {"type", "moat"}};
  if (extra.is_object()) j.update(extra);  // `{}` converts to null
  return j.dump();
}

TEST(CniEnv, AddNeedsContainerNetnsAndInterface) {
  auto r = read_env(env_of("ADD"));
  ASSERT_TRUE(r.env) << r.error.msg;
  EXPECT_EQ(r.env->verb, Verb::add);
  EXPECT_EQ(r.env->ifname, "eth0");
  auto vars = env_of("ADD");
  vars["CNI_NETNS"] = "";  // libcni sends empty variables: empty is absent
  vars["CNI_IFNAME"] = "";
  r = read_env(vars);
  ASSERT_FALSE(r.env);
  EXPECT_EQ(r.error.code, kInvalidEnvironment);
  EXPECT_NE(r.error.msg.find("CNI_IFNAME, CNI_NETNS"), std::string::npos) << r.error.msg;
}

TEST(CniEnv, DelWithoutNetnsIsFineButNotWithoutContainer) {
  auto vars = env_of("DEL");
  vars.erase("CNI_NETNS");  // the namespace may be gone already
  EXPECT_TRUE(read_env(vars).env);
  vars.erase("CNI_CONTAINERID");
  auto r = read_env(vars);
  ASSERT_FALSE(r.env);
  EXPECT_NE(r.error.msg.find("CNI_CONTAINERID"), std::string::npos);
}

TEST(CniEnv, IdsAndInterfaceNamesAreChecked) {
  for (auto [key, value] : {std::pair{"CNI_CONTAINERID", "-leading"},
                            {"CNI_CONTAINERID", "a/b"},
                            {"CNI_IFNAME", "a-name-longer-than-15"},
                            {"CNI_IFNAME", "eth0:1"},
                            {"CNI_IFNAME", ".."},
                            {"CNI_COMMAND", "ATTACH"}}) {
    auto vars = env_of("ADD");
    vars[key] = value;
    auto r = read_env(vars);
    EXPECT_FALSE(r.env) << key << "=" << value;
    EXPECT_EQ(r.error.code, kInvalidEnvironment) << key << "=" << value;
  }
}

TEST(CniEnv, StatusGcAndVersionNeedNoAttachment) {
  for (const char* cmd : {"STATUS", "GC", "VERSION"}) {
    std::map<std::string, std::string> vars = {
        {"CNI_COMMAND", cmd}, {"CNI_CONTAINERID", ""}, {"CNI_NETNS", ""}, {"CNI_IFNAME", ""}};
    EXPECT_TRUE(read_env(vars).env) << cmd;
  }
}

TEST(CniVersion, AnswersTheAskedVersionAndAllItSpeaks) {
  json v = version_json("1.0.0");
  EXPECT_EQ(v["cniVersion"], "1.0.0");
  EXPECT_EQ(v["supportedVersions"], json({"0.4.0", "1.0.0", "1.1.0"}));
  EXPECT_EQ(version_json("")["cniVersion"], "1.1.0");
}

TEST(CniConf, ReadsMoatKeysPortMappingsAndLabels) {
  json extra = json::parse(R"({
    "instance": "node", "uplinks": ["uplink0"], "policyDir": "/etc/moat/policies",
    "icc": false, "internal": false, "masquerade": true, "portsHeldByRuntime": true,
    "capabilities": {"portMappings": true},
    "runtimeConfig": {"portMappings": [
      {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
      {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"}],
      "labels": [{"key": "tier", "value": "data"}]},
    "args": {"cni": {"labels": [{"key": "app", "value": "db"}]}},
    "prevResult": {"cniVersion": "1.0.0"}})");
  auto r = read_conf(conf_text(extra), Verb::add);
  ASSERT_TRUE(r.conf) << r.error.msg;
  const NetConf& c = *r.conf;
  EXPECT_EQ(c.instance, "node");
  EXPECT_EQ(c.uplinks, std::vector<std::string>{"uplink0"});
  EXPECT_FALSE(c.icc);
  EXPECT_TRUE(c.ports_held_by_runtime);
  ASSERT_EQ(c.port_mappings.size(), 2u);
  EXPECT_EQ(publish_spec(c.port_mappings[0]), "8080:80/tcp");
  EXPECT_EQ(publish_spec(c.port_mappings[1]), "127.0.0.1:5353:53/udp");
  ASSERT_EQ(c.labels.size(), 2u);
  EXPECT_EQ(c.labels[0], (std::pair<std::string, std::string>{"tier", "data"}));
  EXPECT_EQ(c.labels[1], (std::pair<std::string, std::string>{"app", "db"}));
  EXPECT_TRUE(c.prev_result.is_object());
}

// `limits` as a moat file's, checked by the same rules (issue 17).
TEST(CniConf, LimitsAreAMoatFilesLimits) {
  auto r = read_conf(conf_text(json::parse(R"({"limits": {"conntrack": 65536, "endpoints": 64}})")),
                     Verb::add);
  ASSERT_TRUE(r.conf) << r.error.msg;
  EXPECT_EQ(r.conf->limits.conntrack, 65536u);
  EXPECT_EQ(r.conf->limits.endpoints, 64u);
  EXPECT_FALSE(r.conf->limits.socket_nat);
  for (const char* bad : {R"({"limits": {"conntrack": 12}})", R"({"limits": {"conntrak": 4096}})",
                          R"({"limits": {"conntrack": "4096"}})", R"({"limits": [4096]})"}) {
    auto e = read_conf(conf_text(json::parse(bad)), Verb::add);
    EXPECT_FALSE(e.conf) << bad;
    EXPECT_EQ(e.error.code, kInvalidConfig) << bad;
    EXPECT_NE(e.error.msg.find("limits"), std::string::npos) << e.error.msg;
  }
}

// portmap's hostIP forms (issue 16): IPv6 addresses come bare and become
// moat's bracketed publish spec; "::" is every IPv6 address.
TEST(CniConf, Ipv6HostIpsBecomeBracketedPublishSpecs) {
  json extra = json::parse(R"({
    "runtimeConfig": {"portMappings": [
      {"hostPort": 8080, "containerPort": 80, "hostIP": "::1"},
      {"hostPort": 8081, "containerPort": 81, "protocol": "udp", "hostIP": "::"},
      {"hostPort": 8082, "containerPort": 82, "hostIP": "2001:DB8::1"},
      {"hostPort": 8083, "containerPort": 83, "hostIP": "0.0.0.0"},
      {"hostPort": 8084, "containerPort": 84, "hostIP": ""}]},
    "prevResult": {"cniVersion": "1.0.0"}})");
  auto r = read_conf(conf_text(extra), Verb::add);
  ASSERT_TRUE(r.conf) << r.error.msg << ": " << r.error.details;
  std::vector<std::string> specs;
  for (const auto& m : r.conf->port_mappings) specs.push_back(publish_spec(m));
  EXPECT_EQ(specs, (std::vector<std::string>{"[::1]:8080:80/tcp", "[::]:8081:81/udp",
                                             "[2001:DB8::1]:8082:82/tcp", "0.0.0.0:8083:83/tcp",
                                             "8084:84/tcp"}));
}

TEST(CniConf, EachFaultHasItsCode) {
  struct Case {
    std::string what, text;
    Verb verb;
    int code;
  };
  const std::vector<Case> cases = {
      {"not JSON", "{", Verb::add, kDecodingFailure},
      {"not an object", "[]", Verb::add, kDecodingFailure},
      {"a version moat does not speak", conf_text({}, "0.3.1"), Verb::add, kIncompatibleVersion},
      {"GC before 1.1.0", conf_text({{"cni.dev/valid-attachments", json::array()}}, "1.0.0"),
       Verb::gc, kIncompatibleVersion},
      {"STATUS before 1.1.0", conf_text({}, "0.4.0"), Verb::status, kIncompatibleVersion},
      {"a key moat does not know", conf_text({{"iccc", false}}), Verb::add, kUnsupportedField},
      {"no name", R"({"cniVersion": "1.0.0", "type": "moat"})", Verb::add, kInvalidConfig},
      {"a port out of range",
       conf_text(
           {{"runtimeConfig", {{"portMappings", {{{"hostPort", 70000}, {"containerPort", 80}}}}}}}),
       Verb::add, kInvalidConfig},
      {"an unknown protocol",
       conf_text({{"runtimeConfig",
                   {{"portMappings",
                     {{{"hostPort", 80}, {"containerPort", 80}, {"protocol", "icmp"}}}}}}}),
       Verb::add, kInvalidConfig},
      {"a host name as hostIP",
       conf_text({{"runtimeConfig",
                   {{"portMappings",
                     {{{"hostPort", 80}, {"containerPort", 80}, {"hostIP", "localhost"}}}}}}}),
       Verb::add, kInvalidConfig},
      {"a bracketed IPv6 hostIP (portmap's is bare)",
       conf_text({{"runtimeConfig",
                   {{"portMappings",
                     {{{"hostPort", 80}, {"containerPort", 80}, {"hostIP", "[::1]"}}}}}}}),
       Verb::add, kInvalidConfig},
      {"an IPv6 hostIP with a zone",
       conf_text({{"runtimeConfig",
                   {{"portMappings",
                     {{{"hostPort", 80}, {"containerPort", 80}, {"hostIP", "fe80::1%eth0"}}}}}}}),
       Verb::add, kInvalidConfig},
      {"an instance name moat refuses", conf_text({{"instance", "../etc"}}), Verb::add,
       kInvalidConfig},
      {"icc as a string", conf_text({{"icc", "false"}}), Verb::add, kInvalidConfig},
      {"GC without the attachments to keep", conf_text({}, "1.1.0"), Verb::gc, kInvalidConfig},
  };
  for (const auto& c : cases) {
    auto r = read_conf(c.text, c.verb);
    EXPECT_FALSE(r.conf) << c.what;
    EXPECT_EQ(r.error.code, c.code) << c.what << ": " << r.error.msg;
    EXPECT_FALSE(r.error.msg.empty()) << c.what;
  }
}

TEST(CniConf, GcReadsEitherSpellingOfTheAttachmentsToKeep) {
  json keep = json::array({{{"containerID", "c1"}, {"ifname", "eth0"}}});
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    auto r = read_conf(conf_text({{key, keep}}, "1.1.0"), Verb::gc);
    ASSERT_TRUE(r.conf) << key << ": " << r.error.msg;
    EXPECT_EQ(r.conf->valid_attachments, keep) << key;
  }
}

TEST(CniResult, PassedOnInTheRequestsVersion) {
  json r = result_as(bridge_result(), "0.4.0");
  EXPECT_EQ(r["cniVersion"], "0.4.0");
  EXPECT_EQ(r["ips"][0]["version"], "4") << "0.4.0 results carry ips[].version";
  EXPECT_EQ(r["routes"], bridge_result()["routes"]);
  json back = result_as(r, "1.0.0");
  EXPECT_FALSE(back["ips"][0].contains("version"));
  EXPECT_EQ(back, bridge_result()) << "nothing else changes";
}

TEST(CniResult, TheAttachmentIsTheSandboxInterfaceNamedIfname) {
  auto a = attachment_of(bridge_result(), "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv4, "10.88.0.5");
  EXPECT_EQ(a.attachment->prefix, 16);
  EXPECT_EQ(a.attachment->gateway, "10.88.0.1");
  EXPECT_EQ(a.attachment->mac, "0a:58:0a:58:00:05");
  EXPECT_EQ(a.attachment->host_interfaces, (std::vector<std::string>{"cni0", "veth1a2b3c4d"}));
  EXPECT_FALSE(attachment_of(bridge_result(), "eth1", "/run/netns/c1").attachment);
  EXPECT_FALSE(attachment_of(bridge_result(), "eth0", "/run/netns/other").attachment)
      << "the interface of another namespace is not this attachment";
  EXPECT_FALSE(attachment_of(json::object(), "eth0", "/run/netns/c1").attachment);
}

// What bridge returns with host-local ranges of both families: the IPv6
// address after the IPv4 one, written as the plugin may (not RFC 5952).
json dual_stack_result() {
  json r = bridge_result();
  r["ips"].push_back({{"address", "FD00:88:0::5/64"}, {"gateway", "fd00:88::1"}, {"interface", 2}});
  return r;
}

TEST(CniResult, OneIpv6AddressBesideTheIpv4One) {
  auto a = attachment_of(dual_stack_result(), "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv4, "10.88.0.5");
  EXPECT_EQ(a.attachment->ipv6, "fd00:88::5");
  EXPECT_EQ(a.attachment->prefix6, 64);
  EXPECT_EQ(a.attachment->gateway6, "fd00:88::1");

  json no_gateway = dual_stack_result();
  no_gateway["ips"][1].erase("gateway");
  a = attachment_of(no_gateway, "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv6, "fd00:88::5");
  EXPECT_EQ(a.attachment->gateway6, "");

  a = attachment_of(bridge_result(), "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv6, "");
  EXPECT_EQ(a.attachment->prefix6, 0);

  // Another interface's address is not this attachment's.
  json host_side = bridge_result();
  host_side["ips"].push_back({{"address", "fd00:99::1/64"}, {"interface", 1}});
  a = attachment_of(host_side, "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv6, "");
}

TEST(CniResult, LinkLocalIpv6IsNotTheNetworks) {
  json r = dual_stack_result();
  r["ips"].push_back({{"address", "fe80::858:aff:fe58:5/64"}, {"interface", 2}});
  auto a = attachment_of(r, "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv6, "fd00:88::5");

  json only = bridge_result();
  only["ips"].push_back({{"address", "fe80::1/64"}, {"interface", 2}});
  a = attachment_of(only, "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv6, "");

  // A router's link-local address as the gateway: no gateway on the subnet.
  json ll_gateway = dual_stack_result();
  ll_gateway["ips"][1]["gateway"] = "fe80::1";
  a = attachment_of(ll_gateway, "eth0", "/run/netns/c1");
  ASSERT_TRUE(a.attachment) << a.error.msg;
  EXPECT_EQ(a.attachment->ipv6, "fd00:88::5");
  EXPECT_EQ(a.attachment->gateway6, "");
}

TEST(CniResult, Ipv6FaultsAreRefused) {
  auto error_of = [](const json& r) {
    auto a = attachment_of(r, "eth0", "/run/netns/c1");
    EXPECT_FALSE(a.attachment);
    EXPECT_EQ(a.error.code, kInvalidConfig);
    return a.error.msg + " | " + a.error.details;
  };
  json only6 = dual_stack_result();
  only6["ips"].erase(0);
  EXPECT_EQ(error_of(only6),
            "prevResult gives eth0 an IPv6 address only | moat needs an IPv4 address on the "
            "interface; IPv6-only networks are not supported yet");
  json two = dual_stack_result();
  two["ips"].push_back({{"address", "fd00:88::6/64"}, {"interface", 2}});
  EXPECT_EQ(error_of(two),
            "prevResult gives eth0 more than one IPv6 address | moat follows one IPv6 address "
            "per interface");
  for (const char* bad : {"fd00:88::5", "fd00:88::5/129", "fd00:88::5/0", "fd00::88::5/64"}) {
    json r = dual_stack_result();
    r["ips"][1]["address"] = bad;
    EXPECT_EQ(error_of(r),
              "prevResult: address \"" + std::string(bad) + "\" is not IPv6/PREFIX | ");
  }
  json gateway = dual_stack_result();
  gateway["ips"][1]["gateway"] = "10.88.0.1";
  EXPECT_EQ(error_of(gateway), "prevResult: gateway \"10.88.0.1\" is not IPv6 | ");
}

TEST(CniArgs, PairsInOrderAndBrokenPairsRefused) {
  std::string why;
  auto args = parse_args("IgnoreUnknown=1;K8S_POD_NAME=web;app=db", &why);
  ASSERT_TRUE(args) << why;
  ASSERT_EQ(args->size(), 3u);
  EXPECT_EQ((*args)[1], (std::pair<std::string, std::string>{"K8S_POD_NAME", "web"}));
  EXPECT_TRUE(parse_args("", &why)->empty());
  EXPECT_FALSE(parse_args("a=b=c", &why));
  EXPECT_FALSE(parse_args("novalue", &why));
  EXPECT_NE(why.find("novalue"), std::string::npos);
}

TEST(CniError, TheObjectRuntimesParse) {
  json e = error_json({kNotEnforced, "eth0 of c1 is not enforced", "run moat status"}, "1.0.0");
  EXPECT_EQ(e, json({{"cniVersion", "1.0.0"},
                     {"code", 101},
                     {"msg", "eth0 of c1 is not enforced"},
                     {"details", "run moat status"}}));
  EXPECT_FALSE(error_json({kIoFailure, "x", ""}, "").contains("details"));
}

}  // namespace
}  // namespace moat::cni
