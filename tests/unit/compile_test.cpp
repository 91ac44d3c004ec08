// Compilation of a validated file into the map entries of abi.h, and the
// isolation model the lab's expected matrix comes from.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "parse_ok.h"
#include "plan/plan.h"

namespace moat {
namespace {

const char* kTwoNets = R"({
  "networks": [{"name": "front", "subnet": "10.1.0.0/24"},
               {"name": "back", "subnet": "10.2.0.0/16", "icc": false, "internal": true}],
  "containers": [
    {"name": "web", "networks": [{"network": "front", "interface": "veth0"},
                                 {"network": "back", "interface": "veth1"}]},
    {"name": "db", "networks": [{"network": "back", "interface": "veth2"}]}
  ]})";

// A dual-stack network: its IPv6 subnet and gateway in `addrs6` beside the
// IPv4 ones, the container's IPv6 address in its endpoint; an IPv4-only
// network adds nothing there and leaves the endpoint's IPv6 zero.
TEST(Compile, IPv6SubnetGatewayAndEndpointAddress) {
  auto plan = compile(parse_ok(R"({
    "networks": [{"name": "front", "subnet": "10.1.0.0/24"},
                 {"name": "dual", "subnet": "10.3.0.0/24", "ipv6_subnet": "fd00:3::/64",
                  "icc": false}],
    "containers": [{"name": "web", "networks": [
                      {"network": "dual", "interface": "veth0", "ipv6": "fd00:3::7"},
                      {"network": "front", "interface": "veth1"}]}]})"),
                      {});
  ASSERT_TRUE(plan) << plan.error().message();
  ASSERT_EQ(plan->addrs6.size(), 2u);
  const auto bytes = [](const char* text) {
    in6_addr a{};
    EXPECT_EQ(inet_pton(AF_INET6, text, &a), 1) << text;
    return std::vector<uint8_t>(a.s6_addr, a.s6_addr + 16);
  };
  const auto key = [](const moat_lpm_v6_key& k) {
    return std::vector<uint8_t>(k.addr.b, k.addr.b + 16);
  };
  const uint32_t dual = plan->ids.networks.at("dual");
  EXPECT_EQ(plan->addrs6[0].key.prefixlen, 64u);
  EXPECT_EQ(key(plan->addrs6[0].key), bytes("fd00:3::"));
  EXPECT_EQ(plan->addrs6[0].value.kind, MOAT_ADDR_SUBNET);
  EXPECT_EQ(plan->addrs6[0].value.net_id, dual);
  EXPECT_EQ(plan->addrs6[0].value.net_flags, plan->addrs[2].value.net_flags);   // as for IPv4
  EXPECT_EQ(plan->addrs6[0].value.net_flags, uint32_t(MOAT_NET_F_MASQUERADE));  // icc off
  EXPECT_EQ(plan->addrs6[1].key.prefixlen, 128u);
  EXPECT_EQ(key(plan->addrs6[1].key), bytes("fd00:3::1"));
  EXPECT_EQ(plan->addrs6[1].value.kind, MOAT_ADDR_GATEWAY);
  ASSERT_EQ(plan->endpoints.size(), 2u);
  EXPECT_EQ(
      std::vector<uint8_t>(plan->endpoints[0].value.ipv6.b, plan->endpoints[0].value.ipv6.b + 16),
      bytes("fd00:3::7"));
  EXPECT_EQ(
      std::vector<uint8_t>(plan->endpoints[1].value.ipv6.b, plan->endpoints[1].value.ipv6.b + 16),
      std::vector<uint8_t>(16, 0));
}

std::vector<uint8_t> ip6_bytes(const char* text) {
  in6_addr a{};
  EXPECT_EQ(inet_pton(AF_INET6, text, &a), 1) << text;
  return std::vector<uint8_t>(a.s6_addr, a.s6_addr + 16);
}

std::vector<uint8_t> bytes_of(const moat_ip& ip) { return {ip.b, ip.b + 16}; }

// Each publish form lands in `publish`, `publish6` or both (issue 16): a
// publish on every address in both when the container has an IPv6 address
// on the publishing network, on an IPv6 address (:: too) in publish6 only,
// on an IPv4 address in publish only.
TEST(Compile, PublishEntriesPerFamily) {
  auto plan = compile(parse_ok(R"({
    "networks": [{"name": "in", "subnet": "10.9.0.0/24", "ipv6_subnet": "fd00:9::/64",
                  "internal": true},
                 {"name": "dual", "subnet": "10.3.0.0/24", "ipv6_subnet": "fd00:3::/64"},
                 {"name": "v4", "subnet": "10.4.0.0/24"}],
    "containers": [
      {"name": "web", "networks": [
         {"network": "in", "interface": "veth0"},
         {"network": "dual", "interface": "veth1", "ip": "10.3.0.7", "ipv6": "fd00:3::7"}],
       "publish": ["8080:80", "[::1]:8081:81/udp", "127.0.0.1:8082:82", "[::]:8083:83",
                   "0.0.0.0:9000-9001:90-91", "[fd00:3::1]:8084:84"]},
      {"name": "old", "networks": [{"network": "v4", "interface": "veth2"}],
       "publish": ["7000:70"]}]})"),
                      {});
  ASSERT_TRUE(plan) << plan.error().message();
  std::vector<std::string> v4, v6;
  for (const auto& e : plan->publish)
    v4.push_back(e.container + " " + std::to_string(ntohs(e.key.port)));
  for (const auto& e : plan->publish6)
    v6.push_back(e.container + " " + std::to_string(ntohs(e.key.port)));
  EXPECT_EQ(v4,
            (std::vector<std::string>{"web 8080", "web 8082", "web 9000", "web 9001", "old 7000"}));
  // 0.0.0.0 is every host IPv4 address and no IPv6 one, as Docker's.
  EXPECT_EQ(v6, (std::vector<std::string>{"web 8080", "web 8081", "web 8083", "web 8084"}));
  const uint32_t web = plan->ids.containers.at("web"), dual = plan->ids.networks.at("dual");
  for (const auto& e : plan->publish6) {
    SCOPED_TRACE(e.text);
    EXPECT_EQ(bytes_of(e.value.backend_ip), ip6_bytes("fd00:3::7"));
    EXPECT_EQ(e.value.container_id, web);
    EXPECT_EQ(e.value.net_id, dual);
    EXPECT_EQ(e.network, "dual");
    EXPECT_EQ(e.key.pad, 0);
    EXPECT_EQ(e.value.pad, 0);
  }
  const auto& udp = plan->publish6[1];
  EXPECT_EQ(bytes_of(udp.key.host_ip), ip6_bytes("::1"));
  EXPECT_EQ(udp.key.proto, IPPROTO_UDP);
  EXPECT_EQ(ntohs(udp.value.backend_port), 81);
  EXPECT_EQ(udp.text, "[::1]:8081:81/udp");
  EXPECT_EQ(bytes_of(plan->publish6[0].key.host_ip), ip6_bytes("::"));  // every address
  EXPECT_EQ(bytes_of(plan->publish6[2].key.host_ip), ip6_bytes("::"));
  EXPECT_EQ(bytes_of(plan->publish6[3].key.host_ip), ip6_bytes("fd00:3::1"));
  EXPECT_EQ(plan->publish[2].key.host_ip, 0u);  // 0.0.0.0: every IPv4 address
  EXPECT_EQ(ntohs(plan->publish[3].value.backend_port), 91);
  EXPECT_EQ(plan->publish[0].value.backend_ip, htonl(0x0a030007));
}

// A Config that skipped validation (another source of desired state) must
// not publish an IPv6 address to nothing.
TEST(Compile, Ipv6PublishWithoutIpv6AddressFails) {
  Config cfg = parse_ok(R"({
    "networks": [{"name": "v4", "subnet": "10.4.0.0/24"}],
    "containers": [{"name": "old", "networks": [{"network": "v4", "interface": "veth2"}]}]})");
  Publish p;
  p.host_ip6 = Ipv6::parse("::1");
  p.host_port = p.container_port = 80;
  p.text = "[::1]:80:80";
  cfg.containers[0].publish.push_back(p);
  auto plan = compile(cfg, {});
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().message(),
            "t.json: containers[0].publish: \"[::1]:80:80\" publishes on an IPv6 address, but the "
            "container has no IPv6 address on network \"v4\"");
}

TEST(Compile, AddressEntriesPerNetwork) {
  auto plan = compile(parse_ok(kTwoNets), {});
  ASSERT_TRUE(plan) << plan.error().message();
  ASSERT_EQ(plan->addrs.size(), 4u);  // subnet + gateway /32 for each network
  const auto& subnet = plan->addrs[0];
  EXPECT_EQ(subnet.key.prefixlen, 24u);
  EXPECT_EQ(subnet.key.addr, inet_addr("10.1.0.0"));
  EXPECT_EQ(subnet.value.kind, MOAT_ADDR_SUBNET);
  const auto& gw = plan->addrs[1];
  EXPECT_EQ(gw.key.prefixlen, 32u);
  EXPECT_EQ(gw.key.addr, inet_addr("10.1.0.1"));
  EXPECT_EQ(gw.value.kind, MOAT_ADDR_GATEWAY);
  EXPECT_EQ(gw.value.net_id, subnet.value.net_id);
  EXPECT_NE(plan->addrs[2].value.net_id, subnet.value.net_id);
}

TEST(Compile, EndpointPerAttachmentWithNetworkFlags) {
  auto plan = compile(parse_ok(kTwoNets), {});
  ASSERT_TRUE(plan) << plan.error().message();
  ASSERT_EQ(plan->endpoints.size(), 3u);
  const auto& web_front = plan->endpoints[0];
  EXPECT_EQ(web_front.interface, "veth0");
  EXPECT_EQ(web_front.value.ipv4, inet_addr("10.1.0.2"));
  EXPECT_EQ(web_front.value.net_flags, MOAT_NET_F_ICC | MOAT_NET_F_MASQUERADE);
  const auto& db = plan->endpoints[2];
  EXPECT_EQ(db.value.ipv4, inet_addr("10.2.0.3"));  // .2 went to web
  EXPECT_EQ(db.value.net_flags, MOAT_NET_F_INTERNAL);  // internal: never masqueraded
  EXPECT_EQ(plan->endpoints[1].value.container_id, web_front.value.container_id);
  EXPECT_NE(db.value.container_id, web_front.value.container_id);
  for (const auto& e : plan->endpoints) EXPECT_NE(e.value.net_id, 0u);
}

TEST(Compile, IdsSurviveRenumbering) {
  // "back" keeps its id when "front" disappears, so only what changed is rewritten.
  auto first = compile(parse_ok(kTwoNets), {});
  ASSERT_TRUE(first);
  auto second = compile(parse_ok(R"({"networks": [{"name": "back", "subnet": "10.2.0.0/16"}],
    "containers": [{"name": "db", "networks": [{"network": "back", "interface": "veth2"}]}]})"),
                        first->ids);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->ids.networks.at("back"), first->ids.networks.at("back"));
  EXPECT_EQ(second->ids.containers.at("db"), first->ids.containers.at("db"));
  // A new name never reuses an id still held by another.
  auto third = compile(parse_ok(R"({"networks": [{"name": "back", "subnet": "10.2.0.0/16"},
    {"name": "new", "subnet": "10.3.0.0/16"}], "containers": []})"),
                       second->ids);
  ASSERT_TRUE(third);
  EXPECT_NE(third->ids.networks.at("new"), third->ids.networks.at("back"));
}

TEST(Compile, MissingInterfaceNamesThePlace) {
  auto plan = compile(parse_ok(R"({"networks": [{"name": "n", "subnet": "10.1.0.0/24"}],
    "containers": [{"name": "a", "networks": [{"network": "n", "interface": "v0"}]},
                   {"name": "b", "networks": ["n"]}]})"),
                      {});
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message().find("t.json: containers[1].networks[0]"), std::string::npos)
      << plan.error().message();
}

// The file's reader refuses this first (config_test.cpp); a Config made
// otherwise (the Docker agent's) meets this check.
TEST(Compile, SharedInterfaceIsRejected) {
  Config cfg = parse_ok(R"({"networks": [{"name": "n", "subnet": "10.1.0.0/24"}],
    "containers": [{"name": "a", "networks": [{"network": "n", "interface": "v0"}]},
                   {"name": "b", "networks": [{"network": "n", "interface": "v1"}]}]})");
  cfg.containers[1].networks[0].host_interface = "v0";
  auto plan = compile(cfg, {});
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message().find("already used by container \"a\""), std::string::npos)
      << plan.error().message();
}

TEST(IsolationModel, MatchesDockerSemantics) {
  auto cfg = parse_ok(R"({
    "networks": [{"name": "a", "subnet": "10.1.0.0/24"}, {"name": "b", "subnet": "10.2.0.0/24"},
                 {"name": "quiet", "subnet": "10.3.0.0/24", "icc": false}],
    "containers": [{"name": "x", "networks": ["a"]}, {"name": "y", "networks": ["a", "b"]},
                   {"name": "z", "networks": ["b"]},
                   {"name": "q1", "networks": ["quiet"]}, {"name": "q2", "networks": ["quiet"]}]})");
  auto* x = cfg.find_container("x");
  auto* y = cfg.find_container("y");
  auto* z = cfg.find_container("z");
  auto* q1 = cfg.find_container("q1");
  auto* q2 = cfg.find_container("q2");
  ASSERT_TRUE(x && y && z && q1 && q2);
  EXPECT_TRUE(isolation_allows(cfg, x, *y, y->networks[0]));   // same network
  EXPECT_FALSE(isolation_allows(cfg, x, *y, y->networks[1]));  // y's other address
  EXPECT_TRUE(isolation_allows(cfg, z, *y, y->networks[1]));
  EXPECT_FALSE(isolation_allows(cfg, x, *z, z->networks[0]));  // different networks
  EXPECT_FALSE(isolation_allows(cfg, z, *x, x->networks[0]));
  EXPECT_FALSE(isolation_allows(cfg, q1, *q2, q2->networks[0]));  // icc off
  EXPECT_TRUE(isolation_allows(cfg, nullptr, *q2, q2->networks[0]));  // the host
}

// ---- counter slots ------------------------------------------------------------------

TEST(StatsSlots, FirstApplyGivesLowestSlotsNeverZero) {
  auto a = assign_stats_slots({{"v1", 5}, {"v2", 6}, {"up", 2}}, MOAT_MAX_ATTACHMENTS, {});
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->slot, (std::map<std::string, uint32_t>{{"v1", 1}, {"v2", 2}, {"up", 3}}));
  EXPECT_EQ(a->fresh, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_TRUE(a->freed.empty());
}

TEST(StatsSlots, KeptWhileNameAndIfindexStayNewOnesAvoidFreedSlots) {
  const std::vector<SlotHolder> prev = {{"v1", 5, 1}, {"v2", 6, 2}, {"v3", 7, 3}};
  // v1 stays; v2 re-created (new ifindex); v3 gone; v4 new.
  auto a = assign_stats_slots({{"v1", 5}, {"v2", 9}, {"v4", 10}}, MOAT_MAX_ATTACHMENTS, prev);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->slot.at("v1"), 1u);
  // Slots 2 and 3 may still be counted into by the detaching interfaces.
  EXPECT_EQ(a->slot.at("v2"), 4u);
  EXPECT_EQ(a->slot.at("v4"), 5u);
  EXPECT_EQ(a->fresh, (std::vector<uint32_t>{4, 5}));
  std::vector<uint32_t> freed = a->freed;
  std::sort(freed.begin(), freed.end());
  EXPECT_EQ(freed, (std::vector<uint32_t>{2, 3}));
  // The next apply may use them again.
  auto b = assign_stats_slots({{"v1", 5}, {"v2", 9}, {"v4", 10}, {"v5", 11}}, MOAT_MAX_ATTACHMENTS,
                              {{"v1", 5, 1}, {"v2", 9, 4}, {"v4", 10, 5}});
  ASSERT_TRUE(b);
  EXPECT_EQ(b->slot.at("v5"), 2u);
  EXPECT_TRUE(b->freed.empty());
}

TEST(StatsSlots, BrokenOrMissingPreviousSlotsAreGivenAnew) {
  // State from a moat without slots (0), a slot out of range, a duplicate.
  auto a =
      assign_stats_slots({{"a", 1}, {"b", 2}, {"c", 3}}, MOAT_MAX_ATTACHMENTS,
                         {{"a", 1, 0}, {"b", 2, MOAT_MAX_ATTACHMENTS}, {"c", 3, 7}, {"d", 4, 7}});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->slot.at("c"), 7u);
  EXPECT_EQ(a->slot.at("a"), 1u);
  EXPECT_EQ(a->slot.at("b"), 2u);
}

TEST(StatsSlots, MoreAttachmentsThanSlotsFail) {
  std::vector<std::pair<std::string, int>> want;
  for (int i = 0; i < MOAT_MAX_ATTACHMENTS; ++i) want.emplace_back("v" + std::to_string(i), i + 1);
  auto a = assign_stats_slots(want, MOAT_MAX_ATTACHMENTS, {});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message().find("counter slots"), std::string::npos) << a.error().message();
  want.pop_back();
  EXPECT_TRUE(assign_stats_slots(want, MOAT_MAX_ATTACHMENTS, {}));
}

}  // namespace
}  // namespace moat
