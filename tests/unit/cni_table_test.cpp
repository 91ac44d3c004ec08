// The CNI plugin's attachment table (cni/table.h): what ADD, DEL and GC do
// to it, who a container is (CNI_ARGS, args labels), and the moat file it
// turns into, read back by the same parser as a user's file.
#include <gtest/gtest.h>

#include "cni/table.h"

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

}  // namespace
}  // namespace moat::cni
