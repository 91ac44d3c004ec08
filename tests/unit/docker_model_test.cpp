// docker_model_test.cpp - docker/model.h against the JSON of a real dockerd
// 20.10 (API 1.41), captured by tests/unit/fixtures/docker/capture.sh: the
// networks and containers it creates are the cases below.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "config/config.h"
#include "docker/model.h"
#include "plan/plan.h"

namespace moat::docker {
namespace {

using nlohmann::json;

const std::string kDir = std::string(MOAT_SOURCE_DIR) + "/tests/unit/fixtures/docker/";

std::string read_text(const std::string& name) {
  std::ifstream f(kDir + name);
  EXPECT_TRUE(f) << "missing fixture " << name;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

json fixture(const std::string& name) { return json::parse(read_text(name)); }

const std::vector<std::string> kContainers = {"web",     "multi", "hostc", "nonec",   "defc",
                                              "intonly", "lc",    "v6",    "created", "long"};

struct Engine {
  json networks = fixture("networks.json");
  std::vector<json> containers;
  InterfaceMap interfaces;

  Engine() {
    for (const auto& n : kContainers) containers.push_back(fixture("container-" + n + ".json"));
    // interfaces.txt: "CONTAINER NETWORK VETH", as the veth finder found them.
    std::istringstream lines(read_text("interfaces.txt"));
    std::string c, n, veth;
    while (lines >> c >> n >> veth) interfaces[{container_id(c), network_id(n)}] = veth;
  }

  std::string container_id(const std::string& name) const {
    for (const json& c : containers) {
      std::string n = c["Name"];
      if (n == "/" + name || (name == "long" && n.starts_with("/long"))) return c["Id"];
    }
    ADD_FAILURE() << "no container " << name;
    return "";
  }
  std::string network_id(const std::string& name) const {
    for (const json& n : networks) {
      if (n["Name"] == name) return n["Id"];
    }
    ADD_FAILURE() << "no network " << name;
    return "";
  }
  Translation translate(const TranslateOptions& o = {}) const {
    return docker::translate(networks, containers, interfaces, o);
  }
};

const Skipped* find_skipped(const Translation& t, Skipped::Kind kind, const std::string& name) {
  auto it = std::find_if(t.skipped.begin(), t.skipped.end(),
                         [&](const Skipped& s) { return s.kind == kind && s.name == name; });
  return it == t.skipped.end() ? nullptr : &*it;
}

std::vector<std::string> publishes(const Container& c) {
  std::vector<std::string> out;
  for (const Publish& p : c.publish) out.push_back(p.text);
  return out;
}

std::vector<std::string> attachments(const Container& c) {
  std::vector<std::string> out;
  for (const Attachment& a : c.networks) {
    out.push_back(a.network + " " + a.ip.str() + " " + a.host_interface);
  }
  return out;
}

std::string problems(const Translation& t) {
  std::string s;
  for (const Problem& p : t.problems) s += p.format(t.config.source) + "\n";
  return s;
}

TEST(DockerModel, FixtureTranslatesToAValidConfig) {
  Engine e;
  Translation t = e.translate();
  ASSERT_TRUE(t.ok()) << problems(t) << t.text;
  EXPECT_EQ(t.config.source, "docker");
  EXPECT_TRUE(t.pending.empty());
}

TEST(DockerModel, BridgeNetworksAreFollowedWithDockersDefaults) {
  Engine e;
  Translation t = e.translate();
  ASSERT_TRUE(t.ok()) << problems(t);
  std::vector<std::string> names;
  for (const Network& n : t.config.networks) names.push_back(n.name);
  EXPECT_EQ(names, (std::vector<std::string>{"bridge", "dual", "intnet", "local1",
                                             "n.with_odd-chars", "n1", "noicc"}));

  // A user network has `Options: {}`: every default applies.
  const Network* n1 = t.config.find_network("n1");
  ASSERT_TRUE(n1);
  EXPECT_EQ(n1->subnet.str(), "172.18.0.0/16");
  EXPECT_EQ(n1->gateway.str(), "172.18.0.1");
  EXPECT_TRUE(n1->icc);
  EXPECT_FALSE(n1->internal);
  EXPECT_TRUE(n1->masquerade);

  EXPECT_FALSE(t.config.find_network("noicc")->icc);
  EXPECT_TRUE(t.config.find_network("intnet")->internal);
  EXPECT_FALSE(t.config.find_network("local1")->masquerade);  // -o enable_ip_masquerade=false

  // --subnet 172.30.0.0/16 --gateway 172.30.0.254 --subnet fd00:db8::/64
  const Network* dual = t.config.find_network("dual");
  ASSERT_TRUE(dual);
  EXPECT_EQ(dual->subnet.str(), "172.30.0.0/16");
  EXPECT_EQ(dual->gateway.str(), "172.30.0.254");
}

TEST(DockerModel, DefaultBridgeMasqueradesUnlessTheAgentIsToldOtherwise) {
  Engine e;
  // dockerd reports "false" here only because iptables is off.
  const json* bridge = nullptr;
  for (const json& n : e.networks) {
    if (n["Name"] == "bridge") bridge = &n;
  }
  ASSERT_TRUE(bridge);
  EXPECT_EQ((*bridge)["Options"]["com.docker.network.bridge.enable_ip_masquerade"], "false");

  Translation t = e.translate();
  const Network* n = t.config.find_network("bridge");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->masquerade);
  EXPECT_TRUE(n->icc);
  EXPECT_EQ(n->subnet.str(), "172.17.0.0/16");
  // The default bridge's IPAM has no gateway: it comes from its endpoints.
  EXPECT_EQ(n->gateway.str(), "172.17.0.1");

  TranslateOptions no_masq;
  no_masq.default_bridge_masquerade = false;
  Translation t2 = e.translate(no_masq);
  EXPECT_FALSE(t2.config.find_network("bridge")->masquerade);
  EXPECT_TRUE(t2.config.find_network("n1")->masquerade);  // only the default bridge
}

TEST(DockerModel, HostNoneAndRefusedNamesAreSkipped) {
  Engine e;
  Translation t = e.translate();
  for (const char* n : {"host", "none"}) {
    EXPECT_TRUE(find_skipped(t, Skipped::Kind::network, n)) << n;
    EXPECT_FALSE(t.config.find_network(n)) << n;
  }
  const Skipped* hostc = find_skipped(t, Skipped::Kind::container, "hostc");
  ASSERT_TRUE(hostc);
  EXPECT_EQ(hostc->why, "uses the host's network (--network host)");
  EXPECT_EQ(hostc->id, e.container_id("hostc"));
  EXPECT_TRUE(find_skipped(t, Skipped::Kind::container, "nonec"));
  EXPECT_TRUE(find_skipped(t, Skipped::Kind::container, "created"));  // docker create: not running
  EXPECT_FALSE(t.config.find_container("hostc"));
  EXPECT_FALSE(t.config.find_container("nonec"));
  EXPECT_FALSE(t.config.find_container("created"));

  // Docker's rule has no length limit; moat's names stop at 63 characters.
  std::string long_name = "long" + std::string(70, 'x');
  const Skipped* long_c = find_skipped(t, Skipped::Kind::container, long_name);
  ASSERT_TRUE(long_c);
  EXPECT_NE(long_c->why.find("the limit is 63"), std::string::npos) << long_c->why;
  // Docker does not check network names at all: "n@x" and "n x" exist.
  for (const char* n : {"n@x", "n x"}) {
    const Skipped* odd = find_skipped(t, Skipped::Kind::network, n);
    ASSERT_TRUE(odd) << n;
    EXPECT_EQ(odd->why,
              "moat refuses the name: use letters, digits, '_', '.' and '-', starting with a "
              "letter or digit");
  }
  std::string long_net = "net" + std::string(70, 'y');
  const Skipped* long_n = find_skipped(t, Skipped::Kind::network, long_net);
  ASSERT_TRUE(long_n);
  EXPECT_NE(long_n->why.find("the limit is 63"), std::string::npos) << long_n->why;
}

TEST(DockerModel, NetworkRefsCarryIdsAndBridges) {
  Engine e;
  Translation t = e.translate();
  auto ref = [&](const std::string& name) {
    auto it = std::find_if(t.networks.begin(), t.networks.end(),
                           [&](const NetworkRef& r) { return r.name == name; });
    return it == t.networks.end() ? NetworkRef{} : *it;
  };
  EXPECT_EQ(ref("bridge").bridge, "docker0");
  EXPECT_EQ(ref("local1").bridge, "brlocal");  // -o com.docker.network.bridge.name=brlocal
  EXPECT_EQ(ref("n1").bridge, "br-" + e.network_id("n1").substr(0, 12));
  EXPECT_EQ(ref("n1").id, e.network_id("n1"));
  EXPECT_EQ(t.networks.size(), t.config.networks.size());
}

TEST(DockerModel, ContainerOnOneNetworkWithPublishes) {
  Engine e;
  Translation t = e.translate();
  const Container* web = t.config.find_container("web");
  ASSERT_TRUE(web);
  EXPECT_EQ(web->ns, "default");
  EXPECT_EQ(web->labels, (std::map<std::string, std::string>{{"app", "web"}}));
  EXPECT_EQ(attachments(*web),
            std::vector<std::string>{"n1 172.18.0.2 " +
                                     e.interfaces.at({e.container_id("web"), e.network_id("n1")})});
  // -p 8080:80 -p 127.0.0.1:5353:53/udp -p 9000-9001:9000-9001: Docker lists
  // the range port by port, moat keeps it a range.
  EXPECT_EQ(publishes(*web), (std::vector<std::string>{"8080:80/tcp", "9000-9001:9000-9001/tcp",
                                                       "127.0.0.1:5353:53/udp"}));
  ASSERT_EQ(web->publish.size(), 3u);
  EXPECT_FALSE(web->publish[0].host_ip);  // "0.0.0.0" without IPv6: every address
  EXPECT_EQ(web->publish[1].count, 2);
  EXPECT_EQ(web->publish[2].host_ip->str(), "127.0.0.1");
  EXPECT_EQ(web->publish[2].protocol, Protocol::udp);
  ASSERT_EQ(web->expose.size(), 4u);  // Config.ExposedPorts, by port
  EXPECT_EQ(web->expose[0].port, 53);
  EXPECT_EQ(web->expose[0].protocol, Protocol::udp);
  EXPECT_EQ(web->expose[1].port, 80);
}

TEST(DockerModel, ContainerOnThreeNetworksWithComposeLabels) {
  Engine e;
  Translation t = e.translate();
  const Container* multi = t.config.find_container("multi");
  ASSERT_TRUE(multi);
  EXPECT_EQ(multi->labels.at("com.docker.compose.project"), "shop");
  EXPECT_EQ(multi->labels.at("com.docker.compose.service"), "api");
  EXPECT_EQ(multi->labels.at("org.example.note"), "a value with spaces");
  // Started on n1 (Docker maps its ports there), then connected to noicc and
  // to the internal intnet: non-internal first, the start network leading.
  ASSERT_EQ(multi->networks.size(), 3u);
  EXPECT_EQ(multi->networks[0].network, "n1");
  EXPECT_EQ(multi->networks[1].network, "noicc");
  EXPECT_EQ(multi->networks[2].network, "intnet");
  for (const Attachment& a : multi->networks) {
    EXPECT_TRUE(t.config.find_network(a.network)->subnet.contains(a.ip)) << a.network;
    EXPECT_FALSE(a.host_interface.empty());
  }
  EXPECT_EQ(publishes(*multi), std::vector<std::string>{"8443:443/tcp"});
  // --expose 6000: exposed, not published.
  ASSERT_EQ(multi->expose.size(), 2u);
  EXPECT_EQ(multi->expose[1].port, 6000);
}

TEST(DockerModel, PublishFormsFromTheEngine) {
  Engine e;
  Translation t = e.translate();
  // -p 6000 on the default bridge: dockerd chose the host port.
  const Container* defc = t.config.find_container("defc");
  ASSERT_TRUE(defc);
  EXPECT_EQ(defc->networks.at(0).network, "bridge");
  EXPECT_EQ(publishes(*defc), (std::vector<std::string>{"8081:80/tcp", "32768:6000/tcp"}));

  // A dual-stack network: dockerd binds 0.0.0.0 and ::, which is moat's
  // publish on every address of both families, nothing skipped.
  const Container* v6 = t.config.find_container("v6");
  ASSERT_TRUE(v6);
  EXPECT_EQ(attachments(*v6).at(0).substr(0, 16), "dual 172.30.0.5 ");
  EXPECT_EQ(publishes(*v6), std::vector<std::string>{"8085:80/tcp"});
  ASSERT_EQ(v6->publish.size(), 1u);
  EXPECT_TRUE(v6->publish[0].on_ipv4());
  EXPECT_TRUE(v6->publish[0].on_ipv6());
  EXPECT_FALSE(find_skipped(t, Skipped::Kind::publish, "v6 :::8085->80/tcp"));
  EXPECT_FALSE(find_skipped(t, Skipped::Kind::publish, "v6 0.0.0.0:8085->80/tcp"));

  // host_binding_ipv4=127.0.0.1 on local1: the default address of its ports.
  const Container* lc = t.config.find_container("lc");
  ASSERT_TRUE(lc);
  EXPECT_EQ(publishes(*lc), std::vector<std::string>{"127.0.0.1:8083:80/tcp"});

  // Docker maps no port for a container on internal networks only
  // (NetworkSettings.Ports is empty though PortBindings has -p 8082:80).
  const Container* intonly = t.config.find_container("intonly");
  ASSERT_TRUE(intonly);
  EXPECT_TRUE(intonly->publish.empty());
}

// --ipv6 --subnet fd00:db8::/64: dockerd 20.10 lists the pool without a
// gateway and gives the bridge its first host, as the endpoint says.
TEST(DockerModel, Ipv6NetworkAndEndpointFromTheEngine) {
  Engine e;
  Translation t = e.translate();
  ASSERT_TRUE(t.ok()) << problems(t);
  const Network* dual = t.config.find_network("dual");
  ASSERT_TRUE(dual);
  ASSERT_TRUE(dual->subnet6);
  EXPECT_EQ(dual->subnet6->str(), "fd00:db8::/64");
  EXPECT_EQ(dual->gateway6.str(), "fd00:db8::1");
  for (const Network& n : t.config.networks) {
    if (n.name != "dual") EXPECT_FALSE(n.subnet6) << n.name;
  }
  const Container* v6 = t.config.find_container("v6");
  ASSERT_TRUE(v6);
  ASSERT_EQ(v6->networks.size(), 1u);
  ASSERT_TRUE(v6->networks[0].ip6);
  EXPECT_EQ(v6->networks[0].ip6->str(), "fd00:db8::2");
  EXPECT_TRUE(v6->networks[0].ip6_from_file);
  EXPECT_FALSE(t.config.find_container("web")->networks[0].ip6);
  for (const Skipped& s : t.skipped) EXPECT_NE(s.name, "dual") << s.why;
}

TEST(DockerModel, UnresolvedInterfacesArePending) {
  Engine e;
  std::string multi = e.container_id("multi"), web = e.container_id("web");
  e.interfaces.erase({multi, e.network_id("noicc")});
  e.interfaces.erase({web, e.network_id("n1")});
  Translation t = e.translate();
  ASSERT_TRUE(t.ok()) << problems(t);
  ASSERT_EQ(t.pending.size(), 2u);
  auto has = [&](const std::string& c, const std::string& n) {
    return std::any_of(t.pending.begin(), t.pending.end(), [&](const PendingEndpoint& p) {
      return p.container == c && p.network == n && p.container_id == e.container_id(c) &&
             p.network_id == e.network_id(n);
    });
  };
  EXPECT_TRUE(has("multi", "noicc"));
  EXPECT_TRUE(has("web", "n1"));
  EXPECT_FALSE(t.config.find_container("web"));  // nothing of it is known yet
  const Container* m = t.config.find_container("multi");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->networks.size(), 2u);
  EXPECT_EQ(m->networks[1].network, "intnet");
  EXPECT_EQ(publishes(*m), std::vector<std::string>{"8443:443/tcp"});  // n1 is resolved

  // Without n1's interface, Docker's port mapping would land on noicc.
  e.interfaces.erase({multi, e.network_id("n1")});
  e.interfaces[{multi, e.network_id("noicc")}] = "vethX";
  Translation t2 = e.translate();
  const Container* m2 = t2.config.find_container("multi");
  ASSERT_TRUE(m2);
  EXPECT_EQ(m2->networks.at(0).network, "noicc");
  EXPECT_TRUE(m2->publish.empty());
}

// `allocated`: `a` has addresses IPAM chose, which the JSON writes out.
void expect_equal(const Config& a, const Config& b, bool allocated = false) {
  ASSERT_EQ(a.networks.size(), b.networks.size());
  for (size_t i = 0; i < a.networks.size(); ++i) {
    const Network &x = a.networks[i], &y = b.networks[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.subnet, y.subnet) << x.name;
    EXPECT_EQ(x.gateway, y.gateway) << x.name;
    EXPECT_EQ(x.subnet6, y.subnet6) << x.name;
    EXPECT_EQ(x.gateway6, y.gateway6) << x.name;
    EXPECT_EQ(x.icc, y.icc) << x.name;
    EXPECT_EQ(x.internal, y.internal) << x.name;
    EXPECT_EQ(x.masquerade, y.masquerade) << x.name;
  }
  ASSERT_EQ(a.containers.size(), b.containers.size());
  for (size_t i = 0; i < a.containers.size(); ++i) {
    const Container &x = a.containers[i], &y = b.containers[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.ns, y.ns) << x.name;
    EXPECT_EQ(x.labels, y.labels) << x.name;
    ASSERT_EQ(x.networks.size(), y.networks.size()) << x.name;
    for (size_t j = 0; j < x.networks.size(); ++j) {
      EXPECT_EQ(x.networks[j].network, y.networks[j].network) << x.name;
      EXPECT_EQ(x.networks[j].ip, y.networks[j].ip) << x.name;
      EXPECT_EQ(allocated || x.networks[j].ip_from_file, y.networks[j].ip_from_file) << x.name;
      EXPECT_EQ(x.networks[j].ip6, y.networks[j].ip6) << x.name;
      EXPECT_EQ(x.networks[j].host_interface, y.networks[j].host_interface) << x.name;
    }
    ASSERT_EQ(x.publish.size(), y.publish.size()) << x.name;
    for (size_t j = 0; j < x.publish.size(); ++j) {
      const Publish &p = x.publish[j], &q = y.publish[j];
      EXPECT_EQ(p.host_ip, q.host_ip) << x.name;
      EXPECT_EQ(p.host_port, q.host_port) << x.name;
      EXPECT_EQ(p.container_port, q.container_port) << x.name;
      EXPECT_EQ(p.count, q.count) << x.name;
      EXPECT_EQ(p.protocol, q.protocol) << x.name;
      EXPECT_EQ(p.text, q.text) << x.name;
    }
    ASSERT_EQ(x.expose.size(), y.expose.size()) << x.name;
    for (size_t j = 0; j < x.expose.size(); ++j) {
      EXPECT_EQ(x.expose[j].port, y.expose[j].port) << x.name;
      EXPECT_EQ(x.expose[j].protocol, y.expose[j].protocol) << x.name;
    }
  }
  EXPECT_EQ(a.uplinks, b.uplinks);
}

TEST(DockerModel, ConfigToJsonRoundTrips) {
  Engine e;
  TranslateOptions o;
  o.uplinks = {"uplink0"};
  o.source = "docker-x1";
  Translation t = e.translate(o);
  ASSERT_TRUE(t.ok()) << problems(t);
  EXPECT_EQ(t.text, config_to_json(t.config));
  ParseResult back = parse_config(config_to_json(t.config), "again");
  ASSERT_TRUE(back.config) << (back.problems.empty() ? "" : back.problems[0].format("again"));
  expect_equal(t.config, *back.config);
  EXPECT_EQ(back.config->uplinks, std::vector<std::string>{"uplink0"});
  EXPECT_EQ(t.config.source, "docker-x1");
  // A file written by hand reads back alike: config_to_json is not only for translations.
  ParseResult hand = parse_config(R"({"networks": [{"name": "b", "subnet": "10.9.0.0/24"}],
    "containers": [{"name": "c", "networks": ["b"], "publish": ["127.0.0.1:80:8080/udp"],
                    "expose": [6000]}]})",
                                  "hand");
  ASSERT_TRUE(hand.config);
  ParseResult hand2 = parse_config(config_to_json(*hand.config), "hand2");
  ASSERT_TRUE(hand2.config);
  expect_equal(*hand.config, *hand2.config, true);
}

// Synthetic: this harness cannot create macvlan networks ("operation not supported").
TEST(DockerModel, OtherDriversAreSkipped) {
  json networks = json::parse(R"([
    {"Name": "mv", "Id": "m1", "Driver": "macvlan", "Internal": false,
     "IPAM": {"Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1"}]}, "Options": {}},
    {"Name": "b1", "Id": "b1", "Driver": "bridge", "Internal": false,
     "IPAM": {"Config": [{"Subnet": "10.6.0.0/24", "Gateway": "10.6.0.1"}]}, "Options": {}}])");
  json both = json::parse(R"({"Id": "c1", "Name": "/both", "State": {"Running": true},
    "HostConfig": {"NetworkMode": "mv"}, "Config": {"Labels": null},
    "NetworkSettings": {"Ports": {}, "Networks": {
      "mv": {"NetworkID": "m1", "IPAddress": "10.5.0.2", "Gateway": "10.5.0.1"},
      "b1": {"NetworkID": "b1", "IPAddress": "10.6.0.2", "Gateway": "10.6.0.1"}}}})");
  json only = both;
  only["Id"] = "c2";
  only["Name"] = "/only";
  only["NetworkSettings"]["Networks"].erase("b1");
  Translation t = translate(networks, {both, only}, {{{"c1", "b1"}, "veth1"}});
  ASSERT_TRUE(t.ok()) << problems(t);
  const Skipped* mv = find_skipped(t, Skipped::Kind::network, "mv");
  ASSERT_TRUE(mv);
  EXPECT_EQ(mv->why, "driver \"macvlan\": moat enforces bridge networks only");
  EXPECT_TRUE(find_skipped(t, Skipped::Kind::attachment, "both on mv"));
  ASSERT_TRUE(t.config.find_container("both"));
  EXPECT_EQ(attachments(*t.config.find_container("both")),
            std::vector<std::string>{"b1 10.6.0.2 veth1"});
  EXPECT_TRUE(find_skipped(t, Skipped::Kind::container, "only"));
  EXPECT_TRUE(t.pending.empty());
}

// Synthetic: between two snapshots of a restart, two containers can show
// the same host port; the first by name keeps it.
TEST(DockerModel, PublishConflictsKeepTheFirst) {
  json networks = json::parse(R"([{"Name": "b1", "Id": "b1", "Driver": "bridge",
    "IPAM": {"Config": [{"Subnet": "10.6.0.0/24", "Gateway": "10.6.0.1"}]},
    "Options": {"com.docker.network.bridge.enable_icc": "0"}}])");
  auto container = [](const std::string& name, const std::string& ip, const std::string& ports) {
    return json::parse(R"({"Id": ")" + name + R"(", "Name": "/)" + name +
                       R"(", "State": {"Running": true}, "HostConfig": {"NetworkMode": "b1"},
      "NetworkSettings": {"Ports": )" +
                       ports + R"(, "Networks": {
        "b1": {"NetworkID": "b1", "IPAddress": ")" +
                       ip + R"("}}}})");
  };
  std::vector<json> cs = {
      container("zz", "10.6.0.3", R"({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]})"),
      container("aa", "10.6.0.2",
                R"({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "81/tcp": null})")};
  Translation t = translate(networks, cs, {{{"zz", "b1"}, "v1"}, {{"aa", "b1"}, "v2"}});
  ASSERT_TRUE(t.ok()) << problems(t);
  EXPECT_FALSE(t.config.find_network("b1")->icc);  // Go's ParseBool: "0"
  EXPECT_EQ(publishes(*t.config.find_container("aa")),
            std::vector<std::string>{"127.0.0.1:8080:80/tcp"});
  EXPECT_TRUE(t.config.find_container("zz")->publish.empty());
  EXPECT_TRUE(find_skipped(t, Skipped::Kind::publish, "zz 8080:80/tcp"));
  EXPECT_TRUE(t.config.find_container("aa")->expose.empty());  // no ExposedPorts in this JSON
}

// Synthetic, as dockerd 20.10 cannot show most of these (one IPv6 pool per
// network in practice, no address for a container with IPv6 turned off
// before 26.0): a network `name` on 10.`octet`.0.0/24 with `pools` after
// its IPv4 one.
json network6(const std::string& name, int octet, const std::string& pools,
              bool enable_ipv6 = true) {
  std::string v4 = "10." + std::to_string(octet) + ".0.";
  json config = json::parse("[" + pools + "]");
  config.insert(config.begin(), json{{"Subnet", v4 + "0/24"}, {"Gateway", v4 + "1"}});
  return {{"Name", name},
          {"Id", name},
          {"Driver", "bridge"},
          {"EnableIPv6", enable_ipv6},
          {"IPAM", {{"Config", config}}},
          {"Options", json::object()}};
}

// A container `name` on network `net` with `endpoint` merged into its endpoint.
json container6(const std::string& name, const std::string& net, const std::string& ip,
                const json& endpoint) {
  json c = json::parse(R"({"State": {"Running": true}, "NetworkSettings": {"Ports": {}}})");
  c["Id"] = name;
  c["Name"] = "/" + name;
  c["HostConfig"]["NetworkMode"] = net;
  json ep = {{"NetworkID", net}, {"IPAddress", ip}};
  ep.update(endpoint);
  c["NetworkSettings"]["Networks"][net] = ep;
  return c;
}

TEST(DockerModel, Ipv6PoolGivesSubnetAndGateway) {
  json networks = json::array({
      network6("given", 1, R"({"Subnet": "fd00:1::/64", "Gateway": "fd00:1::fe"})"),
      network6("bad-gw", 2, R"({"Subnet": "fd00:2::/64", "Gateway": "fd00:9::1"})"),
      network6("two", 3, R"({"Subnet": "fd00:3::/64"}, {"Subnet": "fd00:4::/64"})"),
      network6("off", 4, R"({"Subnet": "fd00:5::/64", "Gateway": "fd00:5::1"})", false),
      network6("none", 5, R"({"Subnet": "10.9.0.0/24"})"),
  });
  Translation t = translate(networks, {}, {});
  ASSERT_TRUE(t.ok()) << problems(t);
  auto v6 = [&](const std::string& n) {
    const Network* net = t.config.find_network(n);
    if (!net) return std::string("missing");
    return net->subnet6 ? net->subnet6->str() + " " + net->gateway6.str() : "none";
  };
  EXPECT_EQ(v6("given"), "fd00:1::/64 fd00:1::fe");
  EXPECT_EQ(v6("bad-gw"), "fd00:2::/64 fd00:2::1");  // not on the subnet: its first host
  EXPECT_EQ(v6("two"), "fd00:3::/64 fd00:3::1");
  EXPECT_EQ(v6("off"), "none");  // a pool without EnableIPv6 is not used
  EXPECT_EQ(v6("none"), "none");
  const Skipped* two = find_skipped(t, Skipped::Kind::network, "two");
  ASSERT_TRUE(two);
  EXPECT_EQ(two->why, "moat follows one IPv6 subnet per network: fd00:4::/64 is ignored");
  // The second IPv4 subnet of "none" has its own note; EnableIPv6 has one too.
  std::vector<std::string> notes;
  for (const Skipped& s : t.skipped) {
    if (s.name == "none") notes.push_back(s.why);
  }
  EXPECT_EQ(notes, (std::vector<std::string>{
                       "moat follows one IPv4 subnet per network: 10.9.0.0/24 is ignored",
                       "EnableIPv6 without an IPv6 subnet"}));
  EXPECT_FALSE(find_skipped(t, Skipped::Kind::network, "given"));
  EXPECT_FALSE(find_skipped(t, Skipped::Kind::network, "off"));
  EXPECT_EQ(t.skipped.size(), 3u);
}

TEST(DockerModel, Ipv6PoolsMoatCannotUseAreSkipped) {
  json networks = json::array({
      network6("hostbits", 1, R"({"Subnet": "fd00:1::1/64"}, {"Subnet": "fd00:2::/64"})"),
      network6("ll", 2, R"({"Subnet": "fe80::/64"})"),
      network6("tiny", 3, R"({"Subnet": "fd00:3::/124"})"),
  });
  Translation t = translate(networks, {}, {});
  ASSERT_TRUE(t.ok()) << problems(t);
  // A pool that cannot be followed does not count as the first.
  EXPECT_EQ(t.config.find_network("hostbits")->subnet6->str(), "fd00:2::/64");
  EXPECT_FALSE(t.config.find_network("ll")->subnet6);
  EXPECT_FALSE(t.config.find_network("tiny")->subnet6);
  auto why = [&](const std::string& n) {
    const Skipped* s = find_skipped(t, Skipped::Kind::network, n);
    return s ? s->why : "no note";
  };
  EXPECT_EQ(why("hostbits"),
            "IPv6 subnet \"fd00:1::1/64\" is not followed: host bits are set (did you mean "
            "fd00:1::/64?)");
  EXPECT_EQ(why("ll"),
            "IPv6 subnet \"fe80::/64\" is not followed: it overlaps link-local addresses "
            "(fe80::/10)");
  EXPECT_EQ(why("tiny"), "IPv6 subnet \"fd00:3::/124\" is not followed: it is smaller than /120");
}

TEST(DockerModel, Ipv6AddressesOfEndpoints) {
  json networks = json::array({
      network6("n6", 1, R"({"Subnet": "fd00:6::/64"})"),
      network6("off", 2, R"({"Subnet": "fd00:7::/64"})", false),
  });
  std::vector<json> cs = {
      container6("a", "n6", "10.1.0.2",
                 {{"GlobalIPv6Address", "FD00:6:0::a"},
                  {"GlobalIPv6PrefixLen", 64},
                  {"IPv6Gateway", "fd00:6::1"}}),
      // IPv6 turned off in the container (--sysctl net.ipv6.conf.all.disable_ipv6=1).
      container6("b", "n6", "10.1.0.3", {{"GlobalIPv6Address", ""}, {"GlobalIPv6PrefixLen", 0}}),
      container6("c", "n6", "10.1.0.4", {{"GlobalIPv6Address", "fd00:6::zz"}}),
      container6("d", "n6", "10.1.0.5", {{"GlobalIPv6Address", "fd00:8::5"}}),
      container6("e", "n6", "10.1.0.6", {{"GlobalIPv6Address", "fd00:6::"}}),
      container6("f", "n6", "10.1.0.7",
                 {{"GlobalIPv6Address", "fd00:6::7"}, {"GlobalIPv6PrefixLen", 48}}),
      container6("g", "n6", "10.1.0.8", {{"GlobalIPv6Address", 17}}),
      container6("h", "off", "10.2.0.9", {{"GlobalIPv6Address", "fd00:7::9"}}),
  };
  InterfaceMap ifs;
  for (const json& c : cs)
    ifs[{c["Id"], c["HostConfig"]["NetworkMode"]}] = "v" + c["Id"].get<std::string>();
  Translation t = translate(networks, cs, ifs);
  ASSERT_TRUE(t.ok()) << problems(t) << t.text;
  auto ip6 = [&](const std::string& name) {
    const Container* c = t.config.find_container(name);
    if (!c || c->networks.size() != 1) return std::string("missing");
    return c->networks[0].ip6 ? c->networks[0].ip6->str() : "none";
  };
  EXPECT_EQ(ip6("a"), "fd00:6::a");
  EXPECT_EQ(ip6("b"), "none");
  EXPECT_EQ(ip6("c"), "none");
  EXPECT_EQ(ip6("d"), "none");
  EXPECT_EQ(ip6("e"), "none");
  EXPECT_EQ(ip6("f"), "none");
  EXPECT_EQ(ip6("g"), "none");  // not a string: as if absent
  EXPECT_EQ(ip6("h"), "none");
  EXPECT_EQ(t.config.find_container("c")->networks[0].ip.str(), "10.1.0.4");  // IPv4 still
  auto why = [&](const std::string& name) {
    const Skipped* s = find_skipped(t, Skipped::Kind::attachment, name);
    return s ? s->why : "no note";
  };
  EXPECT_EQ(why("a on n6"), "no note");
  EXPECT_EQ(why("b on n6"), "no note");
  EXPECT_EQ(why("c on n6"), "\"fd00:6::zz\" is not an IPv6 address: followed over IPv4 only");
  EXPECT_EQ(why("d on n6"), "fd00:8::5 is outside subnet fd00:6::/64: followed over IPv4 only");
  EXPECT_EQ(why("e on n6"),
            "fd00:6:: is the network address of subnet fd00:6::/64: followed over IPv4 only");
  EXPECT_EQ(why("f on n6"),
            "fd00:6::7/48 disagrees with subnet fd00:6::/64: followed over IPv4 only");
  EXPECT_EQ(why("h on off"), "no note");
  EXPECT_EQ(t.skipped.size(), 4u);
  // The file says which attachments have no address, so none is allocated.
  json text = json::parse(t.text);
  EXPECT_EQ(text["containers"][1]["networks"][0]["ipv6"], false) << t.text;
  EXPECT_FALSE(text["containers"][7]["networks"][0].contains("ipv6")) << t.text;
}

TEST(DockerModel, Ipv6GatewayFromTheEndpointWhenThePoolHasNone) {
  json networks =
      json::array({network6("n6", 1, R"({"Subnet": "fd00:6::/64"})"),
                   network6("gw", 2, R"({"Subnet": "fd00:7::/64", "Gateway": "fd00:7::1"})")});
  std::vector<json> cs = {
      // No address: its gateway is not taken.
      container6("a", "n6", "10.1.0.2", {{"IPv6Gateway", "fd00:6::fd"}}),
      container6("b", "n6", "10.1.0.3",
                 {{"GlobalIPv6Address", "fd00:6::3"}, {"IPv6Gateway", "fd00:6::fe"}}),
      container6("c", "gw", "10.2.0.4",
                 {{"GlobalIPv6Address", "fd00:7::4"}, {"IPv6Gateway", "fd00:7::fe"}}),
  };
  Translation t =
      translate(networks, cs, {{{"a", "n6"}, "va"}, {{"b", "n6"}, "vb"}, {{"c", "gw"}, "vc"}});
  ASSERT_TRUE(t.ok()) << problems(t);
  EXPECT_EQ(t.config.find_network("n6")->gateway6.str(), "fd00:6::fe");
  EXPECT_EQ(t.config.find_network("gw")->gateway6.str(), "fd00:7::1");  // the pool's word wins
}

// Docker's bindings per family (issue 16): 0.0.0.0 beside :: is every
// address of both families, :: or an IPv6 address alone is IPv6's only, an
// IPv4 address IPv4's only. Every form lands in the plan's maps.
TEST(DockerModel, Ipv6PublishesFollowDockersBindings) {
  json networks = json::array({network6("n6", 1, R"({"Subnet": "fd00:6::/64"})")});
  json c = container6("a", "n6", "10.1.0.2", {{"GlobalIPv6Address", "fd00:6::2"}});
  // -p 8080:80, -p [::1]:8081:81, -p [::]:8082:82, -p 127.0.0.1:8084:84,
  // -p [::]:9000-9001:9000-9001, -p [2001:db8::1]:8087:87/udp.
  c["NetworkSettings"]["Ports"] = json::parse(R"({
    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
    "81/tcp": [{"HostIp": "::1", "HostPort": "8081"}],
    "82/tcp": [{"HostIp": "::", "HostPort": "8082"}],
    "84/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8084"}],
    "9000/tcp": [{"HostIp": "::", "HostPort": "9000"}],
    "9001/tcp": [{"HostIp": "::", "HostPort": "9001"}],
    "87/udp": [{"HostIp": "2001:DB8::1", "HostPort": "8087"}]})");
  Translation t = translate(networks, {c}, {{{"a", "n6"}, "va"}});
  ASSERT_TRUE(t.ok()) << problems(t) << t.text;
  const Container* a = t.config.find_container("a");
  ASSERT_TRUE(a);
  EXPECT_EQ(publishes(*a),
            (std::vector<std::string>{"8080:80/tcp", "[::]:8082:82/tcp",
                                      "[::]:9000-9001:9000-9001/tcp", "[::1]:8081:81/tcp",
                                      "127.0.0.1:8084:84/tcp", "[2001:db8::1]:8087:87/udp"}));
  EXPECT_TRUE(t.skipped.empty()) << t.skipped.at(0).name << ": " << t.skipped.at(0).why;

  auto plan = compile(t.config, {});
  ASSERT_TRUE(plan) << plan.error().message();
  std::vector<uint16_t> v4, v6;
  for (const auto& e : plan->publish) v4.push_back(ntohs(e.key.port));
  for (const auto& e : plan->publish6) v6.push_back(ntohs(e.key.port));
  EXPECT_EQ(v4, (std::vector<uint16_t>{8080, 8084}));
  EXPECT_EQ(v6, (std::vector<uint16_t>{8080, 8082, 9000, 9001, 8081, 8087}));
  for (const auto& e : plan->publish6) EXPECT_EQ(e.network, "n6");
}

// What moat cannot serve as Docker does is skipped with the reason, and the
// rest of the container is followed.
TEST(DockerModel, Ipv6PublishesMoatCannotServeAreSkipped) {
  json networks = json::array({network6("n6", 1, R"({"Subnet": "fd00:6::/64"})")});
  // b has no IPv6 address (IPv6 turned off in it): with Docker's userland
  // proxy, dockerd lists :: for -p 8090:80 and ::1 for -p [::1]:8091:81 and
  // forwards them to b's IPv4 address.
  json b = container6("b", "n6", "10.1.0.3", {{"GlobalIPv6Address", ""}});
  b["NetworkSettings"]["Ports"] = json::parse(R"({
    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8090"}, {"HostIp": "::", "HostPort": "8090"}],
    "81/tcp": [{"HostIp": "::1", "HostPort": "8091"}],
    "82/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8092"}]})");
  // d has one: -p 0.0.0.0:8093:83 is IPv4's alone (published so); an
  // IPv4-mapped address and a zone are not host addresses moat publishes on.
  json d = container6("d", "n6", "10.1.0.4", {{"GlobalIPv6Address", "fd00:6::4"}});
  d["NetworkSettings"]["Ports"] = json::parse(R"({
    "83/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8093"}],
    "84/tcp": [{"HostIp": "::ffff:127.0.0.1", "HostPort": "8094"}],
    "85/tcp": [{"HostIp": "fe80::1%eth0", "HostPort": "8095"}],
    "86/tcp": [{"HostIp": "::", "HostPort": "8096"}]})");
  Translation t = translate(networks, {b, d}, {{{"b", "n6"}, "vb"}, {{"d", "n6"}, "vd"}});
  ASSERT_TRUE(t.ok()) << problems(t) << t.text;
  // Without IPv6, 0.0.0.0 alone or beside :: is IPv4's publish.
  EXPECT_EQ(publishes(*t.config.find_container("b")),
            (std::vector<std::string>{"8090:80/tcp", "8092:82/tcp"}));
  EXPECT_EQ(publishes(*t.config.find_container("d")),
            (std::vector<std::string>{"[::]:8096:86/tcp", "0.0.0.0:8093:83/tcp"}));
  const Publish& any4 = t.config.find_container("d")->publish.at(1);
  EXPECT_TRUE(any4.on_ipv4());
  EXPECT_FALSE(any4.on_ipv6());
  auto why = [&](const std::string& label) {
    const Skipped* s = find_skipped(t, Skipped::Kind::publish, label);
    return s ? s->why : "no note";
  };
  const std::string no_ipv6 =
      "the container has no IPv6 address on network \"n6\", which its ports are published from: "
      "Docker's userland proxy would forward IPv6 to its IPv4 address, which moat does not "
      "translate";
  EXPECT_EQ(why("b :::8090->80/tcp"), no_ipv6);
  EXPECT_EQ(why("b ::1:8091->81/tcp"), no_ipv6);
  EXPECT_EQ(why("d 0.0.0.0:8093->83/tcp"), "no note");
  EXPECT_EQ(why("d ::ffff:127.0.0.1:8094->84/tcp"),
            "\"::ffff:127.0.0.1\" is an IPv4-mapped address; write the IPv4 address");
  EXPECT_EQ(why("d fe80::1%eth0:8095->85/tcp"), "\"fe80::1%eth0\" is not an IPv6 address");
  EXPECT_EQ(t.skipped.size(), 4u);
}

TEST(DockerModel, MalformedJsonIsReportedNotThrown) {
  Translation t = translate(json::object(), {json("garbage"), json::array()}, {});
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.problems.at(0).message, "GET /networks did not return an array");

  Translation t2 = translate(json::array({json(3), json::object()}), {json("garbage")}, {});
  EXPECT_TRUE(t2.ok()) << problems(t2);
  EXPECT_TRUE(t2.config.networks.empty());
  EXPECT_EQ(t2.skipped.size(), 3u);
}

}  // namespace
}  // namespace moat::docker
