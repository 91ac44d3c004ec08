// The CNI plugin's attachment table (cni/table.h): what ADD, DEL and GC do
// to it, who a container is (CNI_ARGS, args labels), and the moat file it
// turns into, read back by the same parser as a user's file.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "cni/table.h"
#include "plan/plan.h"

namespace moat::cni {
namespace {

using nlohmann::json;

NetConf conf_of(const std::string& network) {
  NetConf c;
  c.version = "1.0.0";
  c.name = network;
  c.type = "moat-cni";
  c.uplinks = {"up0"};
  return c;
}

Attachment att_of(const std::string& ip, int prefix = 24, const std::string& gw = "10.89.1.1") {
  Attachment a;
  a.ipv4 = ip;
  a.prefix = prefix;
  a.gateway = gw;
  return a;
}

// A dual-stack attachment: `ip`/24 and `ip6` (prefix included), gateway `gw6`.
Attachment att6_of(const std::string& ip, const std::string& ip6, const std::string& gw6 = "") {
  Attachment a = att_of(ip, 24, "");
  auto slash = ip6.find('/');
  a.ipv6 = ip6.substr(0, slash);
  a.prefix6 = std::stoi(ip6.substr(slash + 1));
  a.gateway6 = gw6;
  return a;
}

Member member(const std::string& id, const std::string& network, const std::string& ip,
              const std::string& veth, const std::string& pod = "") {
  Member m;
  m.container_id = id;
  m.ifname = "eth0";
  m.netns = "/run/netns/" + id;
  m.network = network;
  m.pod_name = pod;
  m.ip = ip;
  m.mac = "0a:58:0a:59:01:02";
  m.host_veth = veth;
  return m;
}

// ADD of `m` on `c`'s network, its bridge `bridge`, its subnet m.ip/24.
Error join(Table& t, const NetConf& c, const Member& m, const std::string& bridge,
           int prefix = 24) {
  return add_member(t, c, network_of(c, att_of(m.ip, prefix, ""), bridge), m);
}

const std::string kId1(64, 'a');
const std::string kId2(64, 'b');
const std::string kId3(64, 'c');

TEST(CniTable, AddDelRoundTripsThroughJson) {
  Table t;
  NetConf c = conf_of("n1");
  c.icc = false;
  Member m = member(kId1, "n1", "10.89.1.2", "veth1", "web");
  m.ports = {{8080, 80, "tcp", ""}, {5353, 53, "udp", "127.0.0.1"}};
  m.labels = {{"app", "web"}};
  ASSERT_EQ(add_member(t, c, network_of(c, att_of("10.89.1.2"), "br1"), m).code, 0);
  std::string why;
  auto back = table_from_json(table_json(t), &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(table_json(*back), table_json(t));
  ASSERT_EQ(back->networks.size(), 1u);
  EXPECT_EQ(back->networks[0].subnet, "10.89.1.0/24");
  EXPECT_FALSE(back->networks[0].icc);
  EXPECT_TRUE(remove_member(*back, kId1, "eth0"));
  EXPECT_TRUE(back->members.empty());
  EXPECT_TRUE(back->networks.empty()) << "a network without members is forgotten";
  EXPECT_FALSE(remove_member(*back, kId1, "eth0")) << "a second DEL finds nothing";
}

TEST(CniTable, DamagedJsonIsNoTable) {
  std::string why;
  EXPECT_FALSE(table_from_json(json::parse(R"({"uplinks": "up0"})"), &why));
  EXPECT_FALSE(why.empty());
}

TEST(CniTable, AddAgainReplacesTheAttachment) {
  Table t;
  NetConf c = conf_of("n1");
  auto net = network_of(c, att_of("10.89.1.2"), "br1");
  ASSERT_EQ(add_member(t, c, net, member(kId1, "n1", "10.89.1.2", "veth1")).code, 0);
  ASSERT_EQ(add_member(t, c, net, member(kId1, "n1", "10.89.1.9", "veth9")).code, 0);
  ASSERT_EQ(t.members.size(), 1u);
  EXPECT_EQ(t.members[0].host_veth, "veth9");
}

TEST(CniTable, InstanceKeysMustAgreeAcrossNetworks) {
  Table t;
  NetConf c1 = conf_of("n1"), c2 = conf_of("n2");
  c2.uplinks = {"other0"};
  ASSERT_EQ(join(t, c1, member(kId1, "n1", "10.89.1.2", "veth1"), "br1").code, 0);
  Error e = join(t, c2, member(kId2, "n2", "10.89.2.2", "veth2"), "br2");
  EXPECT_EQ(e.code, kInvalidConfig);
  EXPECT_NE(e.details.find("uplinks [up0]"), std::string::npos) << e.details;
  EXPECT_EQ(t.members.size(), 1u) << "a refused ADD changes nothing";
  // Alone on the instance, a network may change them (the conflist was edited).
  NetConf c1b = conf_of("n1");
  c1b.uplinks = {"other0"};
  EXPECT_EQ(join(t, c1b, member(kId2, "n1", "10.89.1.3", "veth2"), "br1").code, 0);
  EXPECT_EQ(t.uplinks, std::vector<std::string>{"other0"});
}

// The instance's map sizes are one for all its networks, kept in the table
// and given to the instance's file.
TEST(CniTable, LimitsAreInstanceWideAndReachTheFile) {
  Table t;
  NetConf c1 = conf_of("n1"), c2 = conf_of("n2");
  c1.limits.conntrack = 65536;
  c2.limits.conntrack = 65536;
  ASSERT_EQ(join(t, c1, member(kId1, "n1", "10.89.1.2", "veth1"), "br1").code, 0);
  ASSERT_EQ(join(t, c2, member(kId2, "n2", "10.89.2.2", "veth2"), "br2").code, 0);
  std::string why;
  auto back = table_from_json(table_json(t), &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->limits.conntrack, 65536u);
  EXPECT_EQ(table_config(t).limits.conntrack, 65536u);
  NetConf c3 = conf_of("n3");
  Error e = join(t, c3, member(kId3, "n3", "10.89.3.2", "veth3"), "br3");
  EXPECT_EQ(e.code, kInvalidConfig) << "n3 has the default limits";
  EXPECT_NE(e.details.find("limits"), std::string::npos) << e.details;
}

TEST(CniTable, SameNetworkNameWithAnotherSubnetOrBridgeIsRefused) {
  Table t;
  NetConf c = conf_of("n1");
  ASSERT_EQ(join(t, c, member(kId1, "n1", "10.89.1.2", "veth1"), "br1").code, 0);
  Error e = join(t, c, member(kId2, "n1", "10.77.0.2", "veth2"), "br1", 16);
  EXPECT_EQ(e.code, kInvalidConfig);
  EXPECT_NE(e.msg.find("10.89.1.0/24"), std::string::npos) << e.msg;
  e = join(t, c, member(kId2, "n1", "10.89.1.3", "veth2"), "br7");
  EXPECT_EQ(e.code, kInvalidConfig);
  EXPECT_NE(e.msg.find("br7"), std::string::npos) << e.msg;
}

TEST(CniTable, Ipv6SubnetIsTheAddressesPrefix) {
  NetConf c = conf_of("n1");
  NetworkEntry n = network_of(c, att6_of("10.89.1.2", "fd00:89:1::5/64", "fd00:89:1::1"), "br1");
  EXPECT_EQ(n.subnet, "10.89.1.0/24");
  EXPECT_EQ(n.subnet6, "fd00:89:1::/64");
  EXPECT_EQ(n.gateway6, "fd00:89:1::1");
  // Host bits within a byte: 0x0007 of the fourth group keeps 0x0004 at /62.
  n = network_of(c, att6_of("10.89.1.2", "fd00:89:1:7::5/62"), "br1");
  EXPECT_EQ(n.subnet6, "fd00:89:1:4::/62");
  EXPECT_EQ(n.gateway6, "");
  n = network_of(c, att_of("10.89.1.2"), "br1");
  EXPECT_EQ(n.subnet6, "");
  EXPECT_EQ(n.gateway6, "");
}

TEST(CniTable, Ipv6RoundTripsThroughJsonAndOldRecordsStillRead) {
  Table t;
  NetConf c = conf_of("n1");
  Member m = member(kId1, "n1", "10.89.1.2", "veth1");
  m.ip6 = "fd00:89:1::2";
  auto net = network_of(c, att6_of("10.89.1.2", "fd00:89:1::2/64", "fd00:89:1::1"), "br1");
  ASSERT_EQ(add_member(t, c, net, m).code, 0);
  json j = table_json(t);
  EXPECT_EQ(j["networks"][0]["subnet6"], "fd00:89:1::/64");
  EXPECT_EQ(j["networks"][0]["gateway6"], "fd00:89:1::1");
  EXPECT_EQ(j["members"][0]["ip6"], "fd00:89:1::2");
  std::string why;
  auto back = table_from_json(j, &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->networks.at(0).subnet6, "fd00:89:1::/64");
  EXPECT_EQ(back->networks.at(0).gateway6, "fd00:89:1::1");
  EXPECT_EQ(back->members.at(0).ip6, "fd00:89:1::2");
  EXPECT_EQ(table_json(*back), j);

  // Without IPv6 the record is written as before IPv6 was read.
  Table t4;
  ASSERT_EQ(join(t4, c, member(kId1, "n1", "10.89.1.2", "veth1"), "br1").code, 0);
  json j4 = table_json(t4);
  EXPECT_FALSE(j4["networks"][0].contains("subnet6"));
  EXPECT_FALSE(j4["networks"][0].contains("gateway6"));
  EXPECT_FALSE(j4["members"][0].contains("ip6"));

  // A record written before IPv6 was read.
  json old = json::parse(R"({"uplinks": ["up0"], "policyDir": "", "portsHeldByRuntime": false,
    "networks": [{"name": "n1", "bridge": "br1", "subnet": "10.89.1.0/24", "gateway": "",
                  "icc": true, "internal": false, "masquerade": true}],
    "members": [{"containerID": ")" +
                         kId1 + R"(", "ifname": "eth0", "netns": "/run/netns/x",
                 "network": "n1", "podName": "", "podNamespace": "", "labels": {},
                 "ip": "10.89.1.2", "mac": "0a:58:0a:59:01:02", "hostVeth": "veth1",
                 "portMappings": []}]})");
  auto old_table = table_from_json(old, &why);
  ASSERT_TRUE(old_table) << why;
  EXPECT_EQ(old_table->networks.at(0).subnet6, "");
  EXPECT_EQ(old_table->networks.at(0).gateway6, "");
  EXPECT_EQ(old_table->members.at(0).ip6, "");
  EXPECT_EQ(old_table->members.at(0).ip, "10.89.1.2");
  EXPECT_EQ(table_json(*old_table), old);
}

TEST(CniTable, SameNetworkNameWithAnotherIpv6SubnetIsRefused) {
  Table t;
  NetConf c = conf_of("n1");
  auto with6 = [&](const std::string& id, const std::string& ip, const std::string& ip6) {
    Member m = member(id, "n1", ip, "veth" + id.substr(0, 1));
    auto net = network_of(c, ip6.empty() ? att_of(ip) : att6_of(ip, ip6), "br1");
    m.ip6 = net.subnet6.empty() ? "" : ip6.substr(0, ip6.find('/'));
    return add_member(t, c, net, m);
  };
  ASSERT_EQ(with6(kId1, "10.89.1.2", "fd00:89:1::2/64").code, 0);
  Error e = with6(kId2, "10.89.1.3", "fd00:77::3/64");
  EXPECT_EQ(e.code, kInvalidConfig);
  EXPECT_EQ(e.msg,
            "network n1: the interface plugin gave bbbbbbbbbbbb an IPv6 address in fd00:77::/64, "
            "its other containers are in fd00:89:1::/64");
  EXPECT_EQ(e.details,
            "two conflists with the same name but different IPv6 subnets; give each its own name");
  e = with6(kId2, "10.89.1.3", "");
  EXPECT_EQ(e.msg,
            "network n1: the interface plugin gave bbbbbbbbbbbb no IPv6 address, its other "
            "containers are in fd00:89:1::/64");
  EXPECT_EQ(t.members.size(), 1u) << "a refused ADD changes nothing";
  EXPECT_EQ(with6(kId2, "10.89.1.3", "fd00:89:1::3/64").code, 0);

  Table t4;
  ASSERT_EQ(join(t4, c, member(kId1, "n1", "10.89.1.2", "veth1"), "br1").code, 0);
  Member m = member(kId2, "n1", "10.89.1.3", "veth2");
  m.ip6 = "fd00:89:1::3";
  e = add_member(t4, c, network_of(c, att6_of("10.89.1.3", "fd00:89:1::3/64"), "br1"), m);
  EXPECT_EQ(e.msg,
            "network n1: the interface plugin gave bbbbbbbbbbbb an IPv6 address in "
            "fd00:89:1::/64, its other containers have none");
}

TEST(CniTable, BadPortMappingIsRefused) {
  Table t;
  NetConf c = conf_of("n1");
  Member m = member(kId1, "n1", "10.89.1.2", "veth1");
  m.ports = {{0, 80, "tcp", ""}};
  EXPECT_EQ(add_member(t, c, network_of(c, att_of("10.89.1.2"), "br1"), m).code, kInvalidConfig);
  m.ports = {{8080, 80, "icmp", ""}};
  EXPECT_EQ(add_member(t, c, network_of(c, att_of("10.89.1.2"), "br1"), m).code, kInvalidConfig);
  EXPECT_TRUE(t.members.empty());
}

// portMappings over IPv6 (issue 16), as portmap maps them: an empty hostIP
// on both families, "::" and IPv6 addresses to the container's IPv6
// address, IPv4 ones (0.0.0.0: every host IPv4 address) to its IPv4
// address; every one in the plan's maps.
TEST(CniTable, Ipv6PortMappingsArePublishedOverIpv6) {
  Table t;
  NetConf c = conf_of("n1");
  Member m = member(kId1, "n1", "10.89.1.2", "veth1", "web");
  m.ip6 = "fd00:89:1::2";
  m.ports = {{8080, 80, "tcp", ""},
             {8081, 81, "tcp", "::1"},
             {8082, 82, "udp", "::"},
             {8083, 83, "tcp", "127.0.0.1"},
             {8084, 84, "tcp", "fd00:89:1::1"},
             {8085, 85, "tcp", "0.0.0.0"}};
  ASSERT_EQ(add_member(t, c, network_of(c, att6_of("10.89.1.2", "fd00:89:1::2/64"), "br1"), m).code,
            0);
  // Through the table's record, as the next ADD or DEL reads it.
  std::string why;
  auto back = table_from_json(table_json(t), &why);
  ASSERT_TRUE(back) << why;
  std::string text = config_to_json(table_config(*back));
  ParseResult p = parse_config(text, "cni");
  ASSERT_TRUE(p.config) << p.problems[0].format("cni") << "\n" << text;
  auto plan = compile(*p.config, {});
  ASSERT_TRUE(plan) << plan.error().message();
  std::vector<uint16_t> v4, v6;
  for (const auto& e : plan->publish) v4.push_back(ntohs(e.key.port));
  for (const auto& e : plan->publish6) v6.push_back(ntohs(e.key.port));
  EXPECT_EQ(v4, (std::vector<uint16_t>{8080, 8083, 8085}));
  EXPECT_EQ(v6, (std::vector<uint16_t>{8080, 8081, 8082, 8084}));
  in6_addr backend{};
  inet_pton(AF_INET6, "fd00:89:1::2", &backend);
  for (const auto& e : plan->publish6)
    EXPECT_EQ(std::vector<uint8_t>(e.value.backend_ip.b, e.value.backend_ip.b + 16),
              std::vector<uint8_t>(backend.s6_addr, backend.s6_addr + 16));
}

// What moat cannot publish as portmap would is refused with the reason:
// an IPv6 hostIP for a container without an IPv6 address (portmap: no rule
// at all), addresses moat never publishes on.
TEST(CniTable, PortMappingsMoatCannotPublishAsAskedAreRefused) {
  NetConf c = conf_of("n1");
  auto v4net = network_of(c, att_of("10.89.1.2"), "br1");
  auto dual = network_of(c, att6_of("10.89.1.2", "fd00:89:1::2/64"), "br1");
  struct Case {
    std::string host_ip;
    bool ipv6;  // the container has an IPv6 address
    std::string msg, details;
  };
  const std::vector<Case> refused = {
      {"::1", false,
       "portMappings: [::1]:8080:80/tcp: hostIP ::1 is an IPv6 address, but the interface plugin "
       "gave aaaaaaaaaaaa no IPv6 address on network n1",
       "give the network an IPv6 range, or publish on an IPv4 address"},
      {"::", false,
       "portMappings: [::]:8080:80/tcp: hostIP :: is an IPv6 address, but the interface plugin "
       "gave aaaaaaaaaaaa no IPv6 address on network n1",
       "give the network an IPv6 range, or publish on an IPv4 address"},
      {"::ffff:127.0.0.1", true,
       "portMappings: [::ffff:127.0.0.1]:8080:80/tcp: \"[::ffff:127.0.0.1]\" is an IPv4-mapped "
       "address; write the IPv4 address",
       ""},
      {"ff02::1", true, "portMappings: [ff02::1]:8080:80/tcp: \"[ff02::1]\" is a multicast address",
       ""},
  };
  for (const auto& k : refused) {
    Table t;
    Member m = member(kId1, "n1", "10.89.1.2", "veth1");
    if (k.ipv6) m.ip6 = "fd00:89:1::2";
    m.ports = {{8080, 80, "tcp", k.host_ip}};
    Error e = add_member(t, c, k.ipv6 ? dual : v4net, m);
    EXPECT_EQ(e.code, kInvalidConfig) << k.host_ip;
    EXPECT_EQ(e.msg, k.msg);
    EXPECT_EQ(e.details, k.details);
    EXPECT_TRUE(t.members.empty()) << k.host_ip;
  }
  // Without IPv6 in the container, 0.0.0.0 is all portmap would do.
  Table t;
  Member m = member(kId1, "n1", "10.89.1.2", "veth1");
  m.ports = {{8080, 80, "tcp", "0.0.0.0"}};
  EXPECT_EQ(add_member(t, c, v4net, m).code, 0);
}

TEST(CniTable, GcRemovesOnlyThisNetworksUnlistedAttachments) {
  Table t;
  NetConf c1 = conf_of("n1"), c2 = conf_of("n2");
  auto n1 = network_of(c1, att_of("10.89.1.2"), "br1");
  auto n2 = network_of(c2, att_of("10.89.2.2", 24, "10.89.2.1"), "br2");
  ASSERT_EQ(add_member(t, c1, n1, member(kId1, "n1", "10.89.1.2", "veth1")).code, 0);
  ASSERT_EQ(add_member(t, c1, n1, member(kId2, "n1", "10.89.1.3", "veth2")).code, 0);
  ASSERT_EQ(add_member(t, c2, n2, member(kId3, "n2", "10.89.2.2", "veth3")).code, 0);
  json valid = json::parse(R"([{"containerID": ")" + kId2 + R"(", "ifname": "eth0"}])");
  auto gone = collect_garbage(t, "n1", valid);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].container_id, kId1);
  EXPECT_TRUE(find_member(t, kId2, "eth0"));
  EXPECT_TRUE(find_member(t, kId3, "eth0")) << "another network's attachment is not GC's";
  EXPECT_TRUE(collect_garbage(t, "n1", valid).empty());
}

TEST(CniIdentity, PodNameNamespaceAndLabelsFromArgs) {
  NetConf c = conf_of("n1");
  c.labels = {{"tier", "front"}};
  Identity id = identity_of({{"IgnoreUnknown", "1"},
                             {"K8S_POD_NAME", "web-0"},
                             {"K8S_POD_NAMESPACE", "shop"},
                             {"K8S_POD_INFRA_CONTAINER_ID", "abc"},
                             {"app", "web"},
                             {"tier", "back"}},
                            c);
  EXPECT_EQ(id.pod_name, "web-0");
  EXPECT_EQ(id.pod_namespace, "shop");
  EXPECT_EQ(id.labels, (std::map<std::string, std::string>{{"app", "web"}, {"tier", "front"}}))
      << "args.cni.labels win over CNI_ARGS";
}

TEST(CniConfig, TableBecomesAFileTheParserAccepts) {
  Table t;
  NetConf c1 = conf_of("n1"), c2 = conf_of("n2");
  c2.internal = true;
  auto n1 = network_of(c1, att_of("10.89.1.2"), "br1");
  auto n2 = network_of(c2, att_of("10.89.2.2", 24, "10.89.2.1"), "br2");
  Member web = member(kId1, "n1", "10.89.1.2", "veth1", "web");
  web.labels = {{"app", "web"}};
  web.ports = {{8080, 80, "tcp", ""}};
  Member web_n2 = member(kId1, "n2", "10.89.2.5", "veth1b", "web");
  web_n2.ifname = "eth1";
  Member twin = member(kId2, "n1", "10.89.1.3", "veth2", "web");  // the same pod name
  twin.pod_namespace = "other";
  Member anon = member(kId3, "n2", "10.89.2.2", "veth3");
  for (auto* m : {&web, &twin}) ASSERT_EQ(add_member(t, c1, n1, *m).code, 0);
  for (auto* m : {&web_n2, &anon}) ASSERT_EQ(add_member(t, c2, n2, *m).code, 0);

  std::string text = config_to_json(table_config(t));
  ParseResult p = parse_config(text, "cni");
  ASSERT_TRUE(p.config) << p.problems[0].format("cni") << "\n" << text;
  const Config& cfg = *p.config;
  ASSERT_EQ(cfg.containers.size(), 3u);
  const Container* w = cfg.find_container("web");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->networks.size(), 2u) << "one container, two attachments";
  EXPECT_EQ(w->networks[1].host_interface, "veth1b");
  EXPECT_EQ(w->labels.at("app"), "web");
  ASSERT_EQ(w->publish.size(), 1u);
  EXPECT_EQ(w->publish[0].host_port, 8080);
  EXPECT_TRUE(cfg.find_container(kId2.substr(0, 12))) << "a taken name falls back to the id";
  EXPECT_EQ(cfg.find_container(kId2.substr(0, 12))->ns, "other");
  EXPECT_TRUE(cfg.find_container(kId3.substr(0, 12)));
  const Network* net2 = cfg.find_network("n2");
  ASSERT_TRUE(net2);
  EXPECT_TRUE(net2->internal);
  EXPECT_EQ(net2->bridge, "br2");
  EXPECT_EQ(net2->subnet.str(), "10.89.2.0/24");
  EXPECT_EQ(cfg.uplinks, std::vector<std::string>{"up0"});
}

TEST(CniConfig, Ipv6BecomesTheNetworksSubnet6AndTheAttachmentsIp6) {
  Table t;
  NetConf c1 = conf_of("n1"), c2 = conf_of("n2");
  auto n1 = network_of(c1, att6_of("10.89.1.2", "fd00:89:1::2/64", "fd00:89:1::fe"), "br1");
  auto n2 = network_of(c2, att6_of("10.89.2.2", "fd00:89:2::2/64"), "br2");
  Member a = member(kId1, "n1", "10.89.1.2", "veth1", "a");
  a.ip6 = "fd00:89:1::2";
  Member b = member(kId2, "n2", "10.89.2.2", "veth2", "b");
  b.ip6 = "fd00:89:2::2";
  Member v4 = member(kId3, "n3", "10.89.3.2", "veth3", "v4");
  ASSERT_EQ(add_member(t, c1, n1, a).code, 0);
  ASSERT_EQ(add_member(t, c2, n2, b).code, 0);
  ASSERT_EQ(join(t, conf_of("n3"), v4, "br3").code, 0);

  std::string text = config_to_json(table_config(t));
  ParseResult p = parse_config(text, "cni");
  ASSERT_TRUE(p.config) << p.problems[0].format("cni") << "\n" << text;
  const Config& cfg = *p.config;
  auto v6 = [&](const std::string& n) {
    const Network* net = cfg.find_network(n);
    if (!net) return std::string("missing");
    return net->subnet6 ? net->subnet6->str() + " " + net->gateway6.str() : "none";
  };
  EXPECT_EQ(v6("n1"), "fd00:89:1::/64 fd00:89:1::fe");
  EXPECT_EQ(v6("n2"), "fd00:89:2::/64 fd00:89:2::1");  // none given: the first host
  EXPECT_EQ(v6("n3"), "none");
  auto ip6 = [&](const std::string& name) {
    const Container* x = cfg.find_container(name);
    if (!x || x->networks.size() != 1) return std::string("missing");
    return x->networks[0].ip6 ? x->networks[0].ip6->str() : "none";
  };
  EXPECT_EQ(ip6("a"), "fd00:89:1::2");
  EXPECT_EQ(ip6("b"), "fd00:89:2::2");
  EXPECT_EQ(ip6("v4"), "none");
}

}  // namespace
}  // namespace moat::cni
