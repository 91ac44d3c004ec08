// Unit tests for observe.h: Prometheus rendering, event formatting and
// filters, from synthetic state, snapshots and events (no root, no maps).
#include "observe/observe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

#include "config/config.h"

namespace moat::obs {
namespace {

using nlohmann::json;

json state() {
  return json::parse(R"({
    "interfaces": [
      {"name": "veth0", "ifindex": 4, "container": "rechnung", "network": "backend", "ip": "172.20.0.2"},
      {"name": "veth1", "ifindex": 5, "container": "sicherheit", "network": "backend", "ip": "172.20.0.3"},
      {"name": "veth2", "ifindex": 6, "container": "datenbank", "network": "backend", "ip": "172.20.0.4"}],
    "uplinks": [{"name": "uplink0", "ifindex": 2, "ip": "198.18.0.1"}],
    "networks": [{"name": "backend", "gateway": "172.20.0.1", "subnet": "172.20.0.0/16"}],
    "ids": {"containers": {"rechnung": 1, "sicherheit": 2, "datenbank": 3}, "networks": {"backend": 1}},
    "policy": {"rules": [
      {"policy": "db", "namespace": "default", "direction": "ingress", "index": 0, "action": "allow",
       "text": "default/db ingress[0]: allow from pods {app=rechnung} on 7000/TCP"},
      {"policy": "web", "namespace": "shop", "direction": "ingress", "index": 1, "action": "deny",
       "text": "shop/web ingress[1]: deny from \"evil\"\\net"}]}
  })");
}

Names names() {
  auto n = names_from_state("test", state());
  n.containers["datenbank"].ns = "default";
  n.containers["datenbank"].ingress_isolated_by = {"default/db"};
  n.containers["sicherheit"].ns = "default";
  n.containers["rechnung"].ns = "default";
  return n;
}

uint32_t be(const char* ip) {
  in_addr a{};
  inet_pton(AF_INET, ip, &a);
  return a.s_addr;
}

moat_ct_key key(const char* s, uint16_t sp, const char* d, uint16_t dp, uint8_t proto) {
  moat_ct_key k{};
  k.saddr = be(s);
  k.daddr = be(d);
  k.sport = htons(sp);
  k.dport = htons(dp);
  k.proto = proto;
  return k;
}

constexpr int64_t kOffset = 1700000000000000000ll;  // 2023-11-14T22:13:20Z at ts 0

TEST(ObserveNames, FromState) {
  auto n = names();
  ASSERT_NE(n.iface(5), nullptr);
  EXPECT_EQ(n.iface(5)->container, "sicherheit");
  EXPECT_TRUE(n.iface(2)->uplink);
  EXPECT_EQ(n.addr("172.20.0.4")->container, "datenbank");
  EXPECT_EQ(n.addr("172.20.0.1")->container, "host");   // gateway
  EXPECT_EQ(n.addr("198.18.0.1")->network, "uplink0");  // uplink address
  EXPECT_EQ(n.rule(1)->policy, "web");
  EXPECT_EQ(n.rule(7), nullptr);
}

TEST(ObserveNames, AddConfigGivesNamespacesLabelsAndIsolation) {
  auto parsed = parse_config(R"({
    "networks": [{"name": "backend"}],
    "containers": [{"name": "db", "namespace": "shop", "labels": {"app": "db"}, "networks": ["backend"]}],
    "policies": [{"name": "only-api", "namespace": "shop", "podSelector": {"matchLabels": {"app": "db"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]}]})",
                             "t.json");
  ASSERT_TRUE(parsed.problems.empty()) << parsed.problems[0].format("t.json");
  Names n;
  add_config(n, *parsed.config);
  EXPECT_EQ(n.containers["db"].ns, "shop");
  EXPECT_EQ(n.containers["db"].labels.at("app"), "db");
  EXPECT_EQ(n.containers["db"].ingress_isolated_by, std::vector<std::string>{"shop/only-api"});
  EXPECT_TRUE(n.containers["db"].egress_isolated_by.empty());
}

TEST(ObserveEvents, DropNamesEverything) {
  moat_event ev{};
  ev.ts_ns = 1500000000;  // 1.5 s
  ev.type = MOAT_EV_DROP;
  ev.ifindex = 5;
  ev.dir = MOAT_DIR_FROM_CONTAINER;
  ev.reason = static_cast<uint8_t>(-MOAT_DROP_POLICY_DEFAULT_DENY);
  ev.rule_id = MOAT_RULE_NONE;
  ev.tuple = key("172.20.0.3", 40000, "172.20.0.4", 7000, IPPROTO_TCP);
  auto j = event_json(ev, names(), kOffset);
  EXPECT_EQ(j["time"], "2023-11-14T22:13:21.500Z");
  EXPECT_EQ(j["type"], "drop");
  EXPECT_EQ(j["verdict"], "dropped");
  EXPECT_EQ(j["direction"], "from_container");
  EXPECT_EQ(j["container"], "sicherheit");
  EXPECT_EQ(j["network"], "backend");
  EXPECT_EQ(j["namespace"], "default");
  EXPECT_EQ(j["interface"], "veth1");
  EXPECT_EQ(j["protocol"], "tcp");
  EXPECT_EQ(j["src"], (json{{"ip", "172.20.0.3"}, {"port", 40000}, {"container", "sicherheit"},
                            {"network", "backend"}, {"namespace", "default"}}));
  EXPECT_EQ(j["dst"]["container"], "datenbank");
  EXPECT_EQ(j["reason"], "policy-default-deny");
  EXPECT_FALSE(j.contains("rule"));
  ASSERT_EQ(j["isolated_by"].size(), 1u);
  EXPECT_EQ(j["isolated_by"][0],
            (json{{"container", "datenbank"}, {"direction", "ingress"}, {"policies", {"default/db"}}}));
  EXPECT_EQ(event_text(j, true),
            "22:13:21.500 DROP sicherheit@backend from_container tcp sicherheit(172.20.0.3:40000) > "
            "datenbank(172.20.0.4:7000) reason policy-default-deny (ingress of datenbank isolated "
            "by default/db)");
}

// An IPv6 packet's drop carries its addresses beside the tuple's protocol
// and ports: shown as IPv6, named from the state's ip6 rows, ports bracketed.
TEST(ObserveEvents, Ipv6DropShowsIpv6Addresses) {
  json st = state();
  st["interfaces"][1]["ip6"] = "fd00:1::3";  // sicherheit
  st["networks"][0]["gateway6"] = "fd00:1::1";
  auto n = names_from_state("test", st);
  moat_event ev{};
  ev.ts_ns = 1500000000;
  ev.type = MOAT_EV_DROP;
  ev.ifindex = 5;
  ev.dir = MOAT_DIR_FROM_CONTAINER;
  ev.reason = static_cast<uint8_t>(-MOAT_DROP_ISOLATION);
  ev.rule_id = MOAT_RULE_NONE;
  ev.flags = MOAT_EV_F_IPV6;
  ev.tuple = key("0.0.0.0", 40000, "0.0.0.0", 80, IPPROTO_TCP);
  ASSERT_EQ(inet_pton(AF_INET6, "fd00:1::3", ev.src6.b), 1);
  ASSERT_EQ(inet_pton(AF_INET6, "fd00:2::7", ev.dst6.b), 1);
  auto j = event_json(ev, n, kOffset);
  EXPECT_EQ(j["family"], "ipv6");
  EXPECT_EQ(j["src"]["ip"], "fd00:1::3");
  EXPECT_EQ(j["src"]["container"], "sicherheit");
  EXPECT_EQ(j["dst"], (json{{"ip", "fd00:2::7"}, {"port", 80}}));
  EXPECT_EQ(
      event_text(j, true),
      "22:13:21.500 DROP sicherheit@backend from_container tcp sicherheit([fd00:1::3]:40000) > "
      "[fd00:2::7]:80 reason network-isolation");
  ev.tuple = key("0.0.0.0", 0, "0.0.0.0", 0, IPPROTO_ICMPV6);
  ev.tuple.dport = htons(0x8000);  // the bytes of type 128 (echo request), code 0
  j = event_json(ev, n, kOffset);
  EXPECT_EQ(j["protocol"], "icmpv6");
  EXPECT_EQ(j["icmp"], (json{{"type", 128}, {"code", 0}}));
  ASSERT_EQ(inet_pton(AF_INET6, "fd00:1::1", ev.dst6.b), 1);
  EXPECT_EQ(event_json(ev, n, kOffset)["dst"]["container"], "host");
}

// An IPv6 flow event has its addresses in src6/dst6 and those it becomes in
// xlated_src6/xlated_dst6, only protocol and ports in tuple/xlated: shown
// as IPv6, never as the zero IPv4 addresses of the tuples.
// Names with IPv6: rechnung fd00:1::2, datenbank fd00:1::4, gateway
// fd00:1::1, uplink0 2001:db8:ff::1.
Names names6() {
  json st = state();
  st["interfaces"][0]["ip6"] = "fd00:1::2";
  st["interfaces"][2]["ip6"] = "fd00:1::4";
  st["networks"][0]["gateway6"] = "fd00:1::1";
  st["uplinks"][0]["ip6"] = "2001:db8:ff::1";
  return names_from_state("test", st);
}

// A flow event of an IPv6 flow from `src` to `dst` that becomes `xsrc` to
// `xdst`; the tuples (ports and protocol only) to be set by the test.
moat_event flow6(uint32_t type, uint8_t ct_kind, const char* src, const char* dst, const char* xsrc,
                 const char* xdst) {
  moat_event ev{};
  ev.type = type;
  ev.ct_kind = ct_kind;
  ev.rule_id = MOAT_RULE_NONE;
  ev.flags = MOAT_EV_F_IPV6;
  EXPECT_EQ(inet_pton(AF_INET6, src, ev.src6.b), 1);
  EXPECT_EQ(inet_pton(AF_INET6, dst, ev.dst6.b), 1);
  EXPECT_EQ(inet_pton(AF_INET6, xsrc, ev.xlated_src6.b), 1);
  EXPECT_EQ(inet_pton(AF_INET6, xdst, ev.xlated_dst6.b), 1);
  return ev;
}

// A published port over IPv6: the backend it becomes, as for IPv4
// (PublishedFlowShowsTranslationAndPort). Before, the event had no
// translated addresses: neither text nor JSON said which container.
TEST(ObserveEvents, Ipv6PublishedFlowShowsTheBackend) {
  const Names n = names6();
  moat_event ev =
      flow6(MOAT_EV_FLOW_NEW, MOAT_CT_DNAT, "2001:db8::2", "fd00:1::1", "2001:db8::2", "fd00:1::2");
  ev.ifindex = 2;
  ev.dir = MOAT_DIR_FROM_WORLD;
  ev.tcp_state = MOAT_TCP_SYN_SENT;
  ev.tuple = key("0.0.0.0", 42000, "0.0.0.0", 8080, IPPROTO_TCP);
  ev.xlated = key("0.0.0.0", 42000, "0.0.0.0", 80, IPPROTO_TCP);
  auto j = event_json(ev, n, kOffset);
  EXPECT_EQ(j["family"], "ipv6");
  EXPECT_EQ(j["src"], (json{{"ip", "2001:db8::2"}, {"port", 42000}}));
  EXPECT_EQ(j["dst"]["container"], "host");
  EXPECT_EQ(j["translated"]["src"], (json{{"ip", "2001:db8::2"}, {"port", 42000}}));
  EXPECT_EQ(
      j["translated"]["dst"],
      (json{{"ip", "fd00:1::2"}, {"port", 80}, {"container", "rechnung"}, {"network", "backend"}}));
  EXPECT_EQ(j["published"],
            (json{{"host_ip", "fd00:1::1"}, {"host_port", 8080}, {"container_port", 80}}));
  EXPECT_FALSE(j.contains("masquerade_as"));
  const std::string text = event_text(j, true);
  EXPECT_EQ(text.find("0.0.0.0"), std::string::npos) << text;
  EXPECT_EQ(text,
            "22:13:20.000 NEW  uplink uplink0 from_world tcp [2001:db8::2]:42000 > "
            "host([fd00:1::1]:8080) => [2001:db8::2]:42000 > rechnung([fd00:1::2]:80) [published] "
            "published :8080 syn-sent 0p/0B <> 0p/0B");
  // --container finds the flow by the backend it became.
  EXPECT_TRUE(matches(j, FlowFilter{.container = "rechnung"}));
}

// NAT66: the uplink's address (and port) the flow leaves with, as IPv4's
// masquerade_as. Before, an IPv6 masqueraded flow showed no translation.
TEST(ObserveEvents, Ipv6MasqueradedFlowShowsTheUplinksAddress) {
  const Names n = names6();
  moat_event ev = flow6(MOAT_EV_FLOW_END, MOAT_CT_SNAT, "fd00:1::2", "2001:db8::9",
                        "2001:db8:ff::1", "2001:db8::9");
  ev.ifindex = 2;
  ev.dir = MOAT_DIR_TO_WORLD;
  ev.tcp_state = MOAT_TCP_CLOSING;
  ev.tuple = key("0.0.0.0", 33333, "0.0.0.0", 443, IPPROTO_TCP);
  ev.xlated = key("0.0.0.0", 61000, "0.0.0.0", 443, IPPROTO_TCP);
  ev.packets = 3;
  ev.bytes = 300;
  ev.reply_packets = 2;
  ev.reply_bytes = 200;
  auto j = event_json(ev, n, kOffset);
  EXPECT_EQ(j["src"]["container"], "rechnung");
  EXPECT_EQ(j["masquerade_as"], "2001:db8:ff::1");
  EXPECT_EQ(j["translated"]["src"], (json{{"ip", "2001:db8:ff::1"},
                                          {"port", 61000},
                                          {"container", "host"},
                                          {"network", "uplink0"}}));
  EXPECT_EQ(j["translated"]["dst"], (json{{"ip", "2001:db8::9"}, {"port", 443}}));
  EXPECT_EQ(j.dump().find("0.0.0.0"), std::string::npos) << j.dump();
  EXPECT_EQ(event_text(j, true),
            "22:13:20.000 END  uplink uplink0 to_world tcp rechnung([fd00:1::2]:33333) > "
            "[2001:db8::9]:443 => host([2001:db8:ff::1]:61000) > [2001:db8::9]:443 [egress] "
            "closing 3p/300B <> 2p/200B");
}

// A tracked IPv6 flow closed by its peer: the kernel's tuple is the
// reply's, its original tuple (addresses included) in the xlated ones, as
// for IPv4 (TrackedFlowReportedWithOriginalTuple).
TEST(ObserveEvents, Ipv6TrackedFlowReportedWithOriginalTuple) {
  moat_event ev =
      flow6(MOAT_EV_FLOW_END, MOAT_CT_TRACK, "fd00:1::4", "fd00:1::2", "fd00:1::2", "fd00:1::4");
  ev.ifindex = 4;
  ev.dir = MOAT_DIR_FROM_CONTAINER;
  ev.tuple = key("0.0.0.0", 7000, "0.0.0.0", 49000, IPPROTO_TCP);
  ev.xlated = key("0.0.0.0", 49000, "0.0.0.0", 7000, IPPROTO_TCP);
  auto j = event_json(ev, names6(), kOffset);
  EXPECT_EQ(j["src"]["container"], "rechnung");
  EXPECT_EQ(j["src"]["port"], 49000);
  EXPECT_EQ(j["dst"]["container"], "datenbank");
  EXPECT_EQ(j["dst"]["port"], 7000);
  EXPECT_FALSE(j.contains("translated"));
}

// A Docker instance: Compose's labels name the service at either end, and a
// guarded bridge's drop names the bridge and its network, no container.
TEST(ObserveEvents, ComposeServiceAndBridgeDrops) {
  json st = state();
  st["bridges"] = json::array({{{"name", "br-0123456789ab"}, {"ifindex", 9}, {"network", "backend"}}});
  auto n = names_from_state("test", st);
  n.containers["datenbank"].labels = {{"com.docker.compose.project", "rechnung-app"},
                                      {"com.docker.compose.service", "db"}};
  moat_event ev{};
  ev.type = MOAT_EV_DROP;
  ev.ifindex = 6;
  ev.dir = MOAT_DIR_TO_CONTAINER;
  ev.reason = static_cast<uint8_t>(-MOAT_DROP_POLICY_DENY);
  ev.rule_id = MOAT_RULE_NONE;
  ev.tuple = key("172.20.0.3", 40000, "172.20.0.4", 7000, IPPROTO_TCP);
  auto j = event_json(ev, n, kOffset);
  EXPECT_EQ(j["service"], "db");
  EXPECT_EQ(j["project"], "rechnung-app");
  EXPECT_EQ(j["dst"]["service"], "db");
  EXPECT_FALSE(j["src"].contains("service"));

  ev.ifindex = 9;
  ev.dir = MOAT_DIR_FROM_CONTAINER;
  ev.reason = static_cast<uint8_t>(-MOAT_DROP_UNIDENTIFIED);
  ev.tuple = key("172.20.0.9", 40000, "198.19.0.1", 80, IPPROTO_TCP);
  j = event_json(ev, n, kOffset);
  EXPECT_EQ(j["reason"], "unidentified-container");
  EXPECT_EQ(j["bridge"], "br-0123456789ab");
  EXPECT_EQ(j["network"], "backend");
  EXPECT_FALSE(j.contains("container"));
}

TEST(ObserveEvents, DenyRuleAndIcmp) {
  moat_event ev{};
  ev.type = MOAT_EV_DROP;
  ev.ifindex = 6;
  ev.dir = MOAT_DIR_TO_CONTAINER;
  ev.reason = static_cast<uint8_t>(-MOAT_DROP_POLICY_DENY);
  ev.rule_id = 1;
  ev.tuple = key("9.9.9.9", 0, "172.20.0.4", 0, IPPROTO_ICMP);
  auto* tc = reinterpret_cast<uint8_t*>(&ev.tuple.dport);
  tc[0] = 8;  // echo request
  tc[1] = 0;
  auto j = event_json(ev, names(), kOffset);
  EXPECT_EQ(j["rule"]["policy"], "web");
  EXPECT_EQ(j["rule"]["namespace"], "shop");
  EXPECT_EQ(j["rule"]["action"], "deny");
  EXPECT_EQ(j["icmp"], (json{{"type", 8}, {"code", 0}}));
  EXPECT_FALSE(j["src"].contains("container"));
  EXPECT_FALSE(j["src"].contains("port"));
  std::string text = event_text(j, true);
  EXPECT_NE(text.find("9.9.9.9 > datenbank(172.20.0.4) (type 8 code 0)"), std::string::npos) << text;
  EXPECT_NE(text.find("reason policy-deny rule #1 shop/web"), std::string::npos) << text;
}

TEST(ObserveEvents, PublishedFlowShowsTranslationAndPort) {
  moat_event ev{};
  ev.ts_ns = 0;
  ev.type = MOAT_EV_FLOW_NEW;
  ev.ifindex = 2;
  ev.dir = MOAT_DIR_FROM_WORLD;
  ev.ct_kind = MOAT_CT_DNAT;
  ev.tcp_state = MOAT_TCP_SYN_SENT;
  ev.rule_id = 0;
  ev.tuple = key("198.18.0.2", 42000, "198.18.0.1", 8080, IPPROTO_TCP);
  ev.xlated = key("198.18.0.2", 42000, "172.20.0.2", 80, IPPROTO_TCP);
  ev.packets = 1;
  ev.bytes = 74;
  auto j = event_json(ev, names(), kOffset);
  EXPECT_EQ(j["verdict"], "allowed");
  EXPECT_EQ(j["uplink"], "uplink0");
  EXPECT_FALSE(j.contains("container"));
  EXPECT_EQ(j["direction"], "from_world");
  EXPECT_EQ(j["kind"], "published");
  EXPECT_EQ(j["tcp_state"], "syn-sent");
  EXPECT_EQ(j["dst"]["container"], "host");
  EXPECT_EQ(j["translated"]["dst"]["container"], "rechnung");
  EXPECT_EQ(j["published"], (json{{"host_ip", "198.18.0.1"}, {"host_port", 8080}, {"container_port", 80}}));
  EXPECT_EQ(j["rule"]["policy"], "db");
  EXPECT_EQ(j["packets"], 1);
  EXPECT_EQ(j["reply_bytes"], 0);
  EXPECT_EQ(event_text(j, true),
            "22:13:20.000 NEW  uplink uplink0 from_world tcp 198.18.0.2:42000 > host(198.18.0.1:8080) "
            "=> 198.18.0.2:42000 > rechnung(172.20.0.2:80) [published] published :8080 syn-sent "
            "rule #0 default/db ingress[0]: allow from pods {app=rechnung} on 7000/TCP 1p/74B <> 0p/0B");
}

TEST(ObserveEvents, TrackedFlowReportedWithOriginalTuple) {
  // A tracked flow closed by its reply: the kernel's tuple is the reply's.
  moat_event ev{};
  ev.type = MOAT_EV_FLOW_END;
  ev.ifindex = 4;
  ev.dir = MOAT_DIR_FROM_CONTAINER;
  ev.ct_kind = MOAT_CT_TRACK;
  ev.rule_id = MOAT_RULE_NONE;
  ev.tuple = key("172.20.0.4", 7000, "172.20.0.2", 49000, IPPROTO_TCP);
  ev.xlated = key("172.20.0.2", 49000, "172.20.0.4", 7000, IPPROTO_TCP);
  auto j = event_json(ev, names(), kOffset);
  EXPECT_EQ(j["src"]["container"], "rechnung");
  EXPECT_EQ(j["dst"]["port"], 7000);
  EXPECT_FALSE(j.contains("translated"));
  EXPECT_EQ(j["type"], "flow_end");
}

TEST(ObserveFilters, ContainerVerdictReason) {
  moat_event drop{};
  drop.type = MOAT_EV_DROP;
  drop.ifindex = 5;
  drop.reason = static_cast<uint8_t>(-MOAT_DROP_ISOLATION);
  drop.rule_id = MOAT_RULE_NONE;
  drop.tuple = key("172.20.0.3", 1, "172.20.0.4", 2, IPPROTO_UDP);
  moat_event flow{};
  flow.type = MOAT_EV_FLOW_NEW;
  flow.ifindex = 2;
  flow.dir = MOAT_DIR_FROM_WORLD;
  flow.ct_kind = MOAT_CT_DNAT;
  flow.rule_id = MOAT_RULE_NONE;
  flow.tuple = key("198.18.0.2", 3, "198.18.0.1", 80, IPPROTO_TCP);
  flow.xlated = key("198.18.0.2", 3, "172.20.0.2", 80, IPPROTO_TCP);
  auto d = event_json(drop, names(), 0), f = event_json(flow, names(), 0);

  EXPECT_TRUE(matches(d, {}));
  EXPECT_TRUE(matches(f, {}));
  EXPECT_TRUE(matches(d, {"sicherheit", {}, ""}));  // its interface
  EXPECT_TRUE(matches(d, {"datenbank", {}, ""}));   // the destination
  EXPECT_FALSE(matches(d, {"rechnung", {}, ""}));
  EXPECT_TRUE(matches(f, {"rechnung", {}, ""}));  // after translation only
  EXPECT_TRUE(matches(f, {"host", {}, ""}));
  EXPECT_TRUE(matches(d, {"", true, ""}));
  EXPECT_FALSE(matches(f, {"", true, ""}));
  EXPECT_TRUE(matches(f, {"", false, ""}));
  EXPECT_TRUE(matches(d, {"", {}, "network-isolation"}));
  EXPECT_FALSE(matches(d, {"", {}, "policy-deny"}));
  EXPECT_FALSE(matches(f, {"", {}, "network-isolation"}));

  EXPECT_EQ(check_filter({"", {}, "network-isolation"}), "");
  EXPECT_NE(check_filter({"", {}, "bogus"}).find("unknown drop reason"), std::string::npos);
  EXPECT_NE(check_filter({"", false, "policy-deny"}), "");
}

Snapshot snapshot() {
  Snapshot s;
  s.instance = "lab-x";
  s.policy_revision = 3;
  AttachmentStats a;
  a.interface = "veth0";
  a.ifindex = 4;
  a.container = "web \"front\"";
  a.network = "back\\end";
  a.ns = "shop";
  a.dir[0].packets = 10;
  a.dir[0].bytes = 1000;
  a.dir[0].new_flows = 2;
  a.dir[1].packets = 20;
  a.dir[1].bytes = 3000;
  a.dir[1].drops[-MOAT_DROP_POLICY_DENY] = 5;
  a.dir[1].drop_bytes = 300;
  a.active_connections = 7;
  s.attachments.push_back(a);
  AttachmentStats u;
  u.uplink = true;
  u.interface = "uplink0";
  u.ifindex = 2;
  u.dir[0].packets = 1;
  s.attachments.push_back(u);
  s.rules.push_back({0, {"web", "shop", "ingress", "deny", "shop/web ingress[0]: deny\nfrom x", 0}, 9});
  s.lost_full = 11;
  s.lost_rate = 12;
  return s;
}

TEST(ObservePrometheus, EscapesLabelValues) {
  EXPECT_EQ(prometheus_escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(prometheus_escape_label("plain"), "plain");
}

TEST(ObservePrometheus, RendersFamiliesWithHelpTypeAndLabels) {
  std::string text = render_prometheus(snapshot());
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find(line + "\n"), std::string::npos) << "missing: " << line << "\n" << text;
  };
  for (const char* family : {"moat_packets_total", "moat_bytes_total", "moat_new_connections_total",
                             "moat_drops_total", "moat_policy_hits_total",
                             "moat_flow_events_lost_total", "moat_dropped_bytes_total"}) {
    has(std::string("# TYPE ") + family + " counter");
    EXPECT_NE(text.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
  }
  has("# TYPE moat_active_connections gauge");
  const std::string c =
      R"(container="web \"front\"",network="back\\end",namespace="shop",interface="veth0")";
  has("moat_packets_total{" + c + R"(,direction="from_container"} 10)");
  has("moat_packets_total{" + c + R"(,direction="to_container"} 20)");
  has("moat_bytes_total{" + c + R"(,direction="to_container"} 3000)");
  has("moat_new_connections_total{" + c + R"(,direction="from_container"} 2)");
  has("moat_drops_total{" + c + R"(,direction="to_container",reason="policy-deny"} 5)");
  has("moat_drops_total{" + c + R"(,direction="to_container",reason="network-isolation"} 0)");
  has("moat_dropped_bytes_total{" + c + R"(,direction="to_container"} 300)");
  has("moat_active_connections{" + c + "} 7");
  has(R"(moat_packets_total{interface="uplink0",direction="from_world"} 1)");
  has(R"(moat_policy_hits_total{policy="web",namespace="shop",direction="ingress",action="deny",rule="shop/web ingress[0]: deny\nfrom x",rule_id="0"} 9)");
  has(R"(moat_flow_events_lost_total{cause="buffer_full"} 11)");
  has(R"(moat_flow_events_lost_total{cause="rate_limited"} 12)");
  has(R"(moat_info{moat_instance="lab-x",policy_revision="3"} 1)");
  // Each family's HELP and TYPE come once, before its samples.
  auto first_sample = text.find("\nmoat_packets_total{");
  auto type = text.find("# TYPE moat_packets_total");
  EXPECT_LT(type, first_sample);
  EXPECT_EQ(text.find("# TYPE moat_packets_total", type + 1), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
}

TEST(ObserveStats, JsonShape) {
  auto j = snapshot_json(snapshot());
  EXPECT_EQ(j["instance"], "lab-x");
  EXPECT_EQ(j["policy_revision"], 3);
  ASSERT_EQ(j["attachments"].size(), 1u);
  ASSERT_EQ(j["uplinks"].size(), 1u);
  const auto& a = j["attachments"][0];
  EXPECT_EQ(a["active_connections"], 7);
  EXPECT_EQ(a["directions"]["to_container"]["drops"]["policy-deny"], 5);
  EXPECT_EQ(a["directions"]["to_container"]["drops"]["network-isolation"], 0);
  EXPECT_EQ(a["directions"]["to_container"]["drops_total"], 5);
  EXPECT_EQ(a["directions"]["from_container"]["new_connections"], 2);
  EXPECT_EQ(j["uplinks"][0]["directions"]["from_world"]["packets"], 1);
  EXPECT_EQ(j["policy_rules"][0]["hits"], 9);
  EXPECT_EQ(j["events_lost"], (json{{"buffer_full", 11}, {"rate_limited", 12}}));
}

TEST(ObserveTop, RatesAndSorting) {
  Snapshot a, b;
  for (auto [name, idx, rx] : {std::tuple{"a", 1u, 100u}, std::tuple{"b", 2u, 500u}}) {
    AttachmentStats s;
    s.container = name;
    s.interface = std::string("v") + name;
    s.ifindex = idx;
    a.attachments.push_back(s);
    s.dir[1].bytes = rx * 2;  // over 2 s
    s.dir[1].packets = 4;
    s.dir[0].drops[1] = idx == 1 ? 10 : 0;
    b.attachments.push_back(s);
  }
  auto rows = top_rows(a, b, 2.0, "rx");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].container, "b");
  EXPECT_DOUBLE_EQ(rows[0].rx_bps, 500);
  EXPECT_DOUBLE_EQ(rows[0].rx_pps, 2);
  rows = top_rows(a, b, 2.0, "drops");
  EXPECT_EQ(rows[0].container, "a");
  EXPECT_DOUBLE_EQ(rows[0].drops_ps, 5);
  rows = top_rows(a, b, 2.0, "name");
  EXPECT_EQ(rows[0].container, "a");
  // A counter that went backwards (interface re-created) is a rate of 0.
  rows = top_rows(b, a, 1.0, "rx");
  EXPECT_DOUBLE_EQ(rows[0].rx_bps, 0);
}

TEST(ObserveServe, ListenAddress) {
  EXPECT_EQ(parse_listen_addr("127.0.0.1:9464"), (std::pair<std::string, int>{"127.0.0.1", 9464}));
  EXPECT_EQ(parse_listen_addr("[::1]:80"), (std::pair<std::string, int>{"::1", 80}));
  EXPECT_FALSE(parse_listen_addr("127.0.0.1"));
  EXPECT_FALSE(parse_listen_addr("127.0.0.1:0"));
  EXPECT_FALSE(parse_listen_addr("127.0.0.1:70000"));
  EXPECT_FALSE(parse_listen_addr("::1:80"));
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
}

}  // namespace
}  // namespace moat::obs
