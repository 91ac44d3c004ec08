// Unit tests for config.h: the file format, every validation message and IPAM.
//
// Documents are written with single quotes for readability; doc() turns them
// into JSON. No test needs root.
#include "config/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace moat {
namespace {

std::string doc(std::string text) {
  std::replace(text.begin(), text.end(), '\'', '"');
  return text;
}

ParseResult parse(const std::string& single_quoted) {
  return parse_config(doc(single_quoted), "moat.json");
}

std::string render(const std::vector<Problem>& problems) {
  std::string out;
  for (const Problem& p : problems) out += "\n  " + p.format("moat.json");
  return out;
}

// Parses a document that must be valid.
Config valid(const std::string& single_quoted) {
  ParseResult r = parse(single_quoted);
  EXPECT_TRUE(r.problems.empty()) << render(r.problems);
  EXPECT_TRUE(r.config.has_value());
  return r.config.value_or(Config{});
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------
// One problem per document, with its exact path and a distinctive message part

struct ProblemCase {
  const char* name;
  const char* document;
  const char* path;
  const char* message;
};

class SingleProblem : public testing::TestWithParam<ProblemCase> {};

TEST_P(SingleProblem, IsReportedAtItsPath) {
  const ProblemCase& c = GetParam();
  ParseResult r = parse(c.document);
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, c.path);
  EXPECT_TRUE(contains(r.problems[0].message, doc(c.message))) << r.problems[0].message;
}

std::string case_name(const testing::TestParamInfo<ProblemCase>& info) { return info.param.name; }

// Shared pieces of the documents below.
#define NET_A "'networks': [{'name': 'a', 'subnet': '172.20.0.0/16'}]"

const ProblemCase kDocumentCases[] = {
    {"DocumentNotObject", "[]", "", "the document must be an object"},
    {"UnknownTopLevelKey", "{'$schema': 'x'}", "", "unknown key '$schema'"},
    {"VersionNotAllowed", "{'version': 1}", "", "unknown key 'version'"},
    {"TopLevelSuggestion", "{'containres': []}", "", "(did you mean 'containers'?)"},
    {"NetworksNotArray", "{'networks': {}}", "networks",
     "must be an array of networks, not an object"},
    {"ContainersNotArray", "{'containers': 'x'}", "containers", "must be an array of containers"},
    {"PoliciesNotArray", "{'policies': {}}", "policies", "must be an array of policies"},
    {"DuplicateKey", "{'networks': [{'name': 'a', 'name': 'b'}]}", "networks[0].name",
     "duplicate key 'name'"},
};
INSTANTIATE_TEST_SUITE_P(Document, SingleProblem, testing::ValuesIn(kDocumentCases), case_name);

const ProblemCase kNetworkCases[] = {
    {"NotObject", "{'networks': ['a']}", "networks[0]", "must be an object, not the string 'a'"},
    {"MissingName", "{'networks': [{'subnet': '10.0.0.0/24'}]}", "networks[0]",
     "missing required key 'name'"},
    {"NameNotString", "{'networks': [{'name': 5}]}", "networks[0].name",
     "must be a string, not the number 5"},
    {"NameBadCharacters", "{'networks': [{'name': '-a'}]}", "networks[0].name",
     "invalid network name '-a': use letters, digits"},
    {"NameEmpty", "{'networks': [{'name': ''}]}", "networks[0].name", "it is empty"},
    {"NameTooLong",
     "{'networks': [{'name': 'n234567890123456789012345678901234567890123456789012345678901234'}]}",
     "networks[0].name", "it has 64 characters; the limit is 63"},
    {"UnknownKeySuggestion", "{'networks': [{'name': 'a', 'subnett': '10.0.0.0/24'}]}",
     "networks[0]", "unknown key 'subnett' (did you mean 'subnet'?)"},
    {"UnknownKeyNoSuggestion", "{'networks': [{'name': 'a', 'colour': 'red'}]}", "networks[0]",
     "unknown key 'colour'"},
    {"IccNotBool", "{'networks': [{'name': 'a', 'icc': 'yes'}]}", "networks[0].icc",
     "must be true or false, not the string 'yes'"},
    {"InternalNotBool", "{'networks': [{'name': 'a', 'internal': 1}]}", "networks[0].internal",
     "must be true or false"},
    {"MasqueradeNotBool", "{'networks': [{'name': 'a', 'masquerade': null}]}",
     "networks[0].masquerade", "must be true or false, not null"},
    {"SubnetPrefixTooLong", "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/33'}]}",
     "networks[0].subnet", "invalid subnet '172.20.0.0/33': the prefix length"},
    {"SubnetHostBits", "{'networks': [{'name': 'a', 'subnet': '172.20.0.1/16'}]}",
     "networks[0].subnet", "host bits are set (did you mean 172.20.0.0/16?)"},
    {"SubnetBanana", "{'networks': [{'name': 'a', 'subnet': 'banana'}]}", "networks[0].subnet",
     "invalid subnet 'banana'"},
    {"SubnetNotString", "{'networks': [{'name': 'a', 'subnet': 16}]}", "networks[0].subnet",
     "must be a string"},
    {"SubnetTooSmall", "{'networks': [{'name': 'a', 'subnet': '10.0.0.0/31'}]}",
     "networks[0].subnet", "subnet 10.0.0.0/31 is too small"},
    {"SubnetsOverlap",
     "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/16'}, "
     "{'name': 'b', 'subnet': '172.20.8.0/24'}]}",
     "networks[1].subnet",
     "subnet 172.20.8.0/24 of network 'b' overlaps subnet 172.20.0.0/16 of network 'a'"},
    {"GatewayOutsideSubnet",
     "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/16', 'gateway': '172.21.0.1'}]}",
     "networks[0].gateway", "gateway 172.21.0.1 is outside subnet 172.20.0.0/16"},
    {"GatewayIsNetworkAddress",
     "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/16', 'gateway': '172.20.0.0'}]}",
     "networks[0].gateway", "is the network address"},
    {"GatewayIsBroadcast",
     "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/16', 'gateway': '172.20.255.255'}]}",
     "networks[0].gateway", "is the broadcast address"},
    {"GatewayWithoutSubnet", "{'networks': [{'name': 'a', 'gateway': '172.20.0.1'}]}",
     "networks[0].gateway", "a gateway needs an explicit 'subnet'"},
    {"GatewayNotAnAddress",
     "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/16', 'gateway': '172.20.0'}]}",
     "networks[0].gateway", "invalid IPv4 address '172.20.0'"},
    {"DuplicateName", "{'networks': [{'name': 'a'}, {'name': 'a'}]}", "networks[1].name",
     "duplicate network name 'a' (first used at networks[0])"},
};
INSTANTIATE_TEST_SUITE_P(Network, SingleProblem, testing::ValuesIn(kNetworkCases), case_name);

// Issue 14: validate passed these and the kernel got them (or apply
// refused them only at run time).
const ProblemCase kSpecialSubnetCases[] = {
    {"Everything", "{'networks': [{'name': 'a', 'subnet': '0.0.0.0/0'}]}", "networks[0].subnet",
     "subnet 0.0.0.0/0 cannot be a container network: it overlaps 'this network' (0.0.0.0/8)"},
    {"Loopback", "{'networks': [{'name': 'a', 'subnet': '127.0.0.0/16'}]}", "networks[0].subnet",
     "it overlaps loopback (127.0.0.0/8)"},
    {"Multicast", "{'networks': [{'name': 'a', 'subnet': '224.1.0.0/16'}]}", "networks[0].subnet",
     "it overlaps multicast (224.0.0.0/4)"},
    {"Reserved", "{'networks': [{'name': 'a', 'subnet': '255.255.255.0/24'}]}",
     "networks[0].subnet", "it overlaps reserved and broadcast (240.0.0.0/4)"},
};
INSTANTIATE_TEST_SUITE_P(SpecialSubnet, SingleProblem, testing::ValuesIn(kSpecialSubnetCases),
                         case_name);

#define TWO_ON_V1                                                                  \
  "'containers': [{'name': 'c', 'networks': [{'network': 'a', 'interface': 'v1'}]}, " \
  "{'name': 'd', 'networks': [{'network': 'a', 'interface': 'v1'}]}]"
#define C_ON_V1 "'containers': [{'name': 'c', 'networks': [{'network': 'a', 'interface': 'v1'}]}]"
const ProblemCase kInterfaceCases[] = {
    {"TwoAttachmentsOneInterface", "{" NET_A ", " TWO_ON_V1 "}",
     "containers[1].networks[0].interface",
     "interface 'v1' is already used by container 'c' (containers[0].networks[0])"},
    {"UplinkIsAContainersInterface", "{" NET_A ", " C_ON_V1 ", 'host': {'uplinks': ['v1']}}",
     "host.uplinks[0]", "uplink 'v1' is already used by container 'c'"},
    {"UplinkTwice", "{'host': {'uplinks': ['u0', 'u0']}}", "host.uplinks[1]",
     "uplink 'u0' is already used by uplink (host.uplinks[0])"},
    {"UplinkAlias", "{'host': {'uplinks': ['eth0:1']}}", "host.uplinks[0]",
     "invalid uplink interface name 'eth0:1': it must not be"},
    {"UplinkTooLong", "{'host': {'uplinks': ['eth-much-too-long']}}", "host.uplinks[0]",
     "invalid uplink interface name 'eth-much-too-long'"},
};
INSTANTIATE_TEST_SUITE_P(Interface, SingleProblem, testing::ValuesIn(kInterfaceCases), case_name);

const ProblemCase kContainerCases[] = {
    {"MissingName", "{'containers': [{}]}", "containers[0]", "missing required key 'name'"},
    {"NameBadCharacters", "{'containers': [{'name': 'web app'}]}", "containers[0].name",
     "invalid container name 'web app'"},
    {"UnknownKeySuggestion", "{" NET_A ", 'containers': [{'name': 'c', 'netwroks': ['a']}]}",
     "containers[0]", "unknown key 'netwroks' (did you mean 'networks'?)"},
    {"NamespaceNotDnsLabel", "{'containers': [{'name': 'c', 'namespace': 'Prod'}]}",
     "containers[0].namespace", "invalid namespace name 'Prod'"},
    {"LabelsNotObject", "{'containers': [{'name': 'c', 'labels': ['app']}]}",
     "containers[0].labels", "must be an object of strings"},
    {"LabelValueNotString", "{'containers': [{'name': 'c', 'labels': {'app': 1}}]}",
     "containers[0].labels.app", "must be a string, not the number 1"},
    {"LabelKeyWithDots", "{'containers': [{'name': 'c', 'labels': {'app.io/name': true}}]}",
     "containers[0].labels[\"app.io/name\"]", "must be a string"},
    {"NetworksNotArray", "{" NET_A ", 'containers': [{'name': 'c', 'networks': 'a'}]}",
     "containers[0].networks", "must be an array of network attachments"},
    {"AttachmentNotObject", "{" NET_A ", 'containers': [{'name': 'c', 'networks': [7]}]}",
     "containers[0].networks[0]", "must be a network name or an object"},
    {"AttachmentMissingNetwork",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [{'interface': 'veth0'}]}]}",
     "containers[0].networks[0]", "missing required key 'network'"},
    {"AttachmentUnknownKey",
     "{" NET_A
     ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv4': '1.2.3.4'}]}]}",
     "containers[0].networks[0]", "unknown key 'ipv4' (did you mean 'ip'?)"},
    {"InterfaceTooLong",
     "{" NET_A ", 'containers': [{'name': 'c', "
     "'networks': [{'network': 'a', 'interface': 'veth-much-too-long'}]}]}",
     "containers[0].networks[0].interface", "invalid interface name 'veth-much-too-long'"},
    {"InterfaceWithSlash",
     "{" NET_A
     ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'interface': 'a/b'}]}]}",
     "containers[0].networks[0].interface", "must not be"},
    {"MacMalformed",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'mac': '02:42'}]}]}",
     "containers[0].networks[0].mac", "'02:42' is not a MAC address like '02:42:ac:12:00:02'"},
    {"MacMulticast",
     "{" NET_A ", 'containers': [{'name': 'c', "
     "'networks': [{'network': 'a', 'mac': '01:00:5e:00:00:01'}]}]}",
     "containers[0].networks[0].mac", "01:00:5e:00:00:01 is a group (multicast) address"},
    {"UnknownNetworkShorthand", "{" NET_A ", 'containers': [{'name': 'c', 'networks': ['b']}]}",
     "containers[0].networks[0]", "unknown network 'b'"},
    {"UnknownNetworkSuggestion",
     "{'networks': [{'name': 'backend'}], 'containers': [{'name': 'c', 'networks': "
     "[{'network': 'bakend'}]}]}",
     "containers[0].networks[0].network", "unknown network 'bakend' (did you mean 'backend'?)"},
    {"UnknownNetworkNoneDefined", "{'containers': [{'name': 'c', 'networks': ['a']}]}",
     "containers[0].networks[0]", "the file defines no networks"},
    {"AttachedTwice", "{" NET_A ", 'containers': [{'name': 'c', 'networks': ['a', 'a']}]}",
     "containers[0].networks[1]",
     "container 'c' is already attached to network 'a' (at containers[0].networks[0])"},
    {"DuplicateName", "{'containers': [{'name': 'c'}, {'name': 'd'}, {'name': 'c'}]}",
     "containers[2].name", "duplicate container name 'c' (first used at containers[0])"},
};
INSTANTIATE_TEST_SUITE_P(Container, SingleProblem, testing::ValuesIn(kContainerCases), case_name);

#define ON_A(ip) "{'network': 'a', 'ip': '" ip "'}"

const ProblemCase kAddressCases[] = {
    {"OutsideSubnet",
     "{" NET_A ", 'containers': [{'name': 'x', 'networks': ['a']}, {'name': 'y', 'networks': "
     "['a']}, {'name': 'c', 'networks': [" ON_A("172.21.0.2") "]}]}",
     "containers[2].networks[0].ip", "172.21.0.2 is outside subnet 172.20.0.0/16 of network 'a'"},
    {"NetworkAddress",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [" ON_A("172.20.0.0") "]}]}",
     "containers[0].networks[0].ip", "172.20.0.0 is the network address of subnet 172.20.0.0/16"},
    {"Broadcast",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [" ON_A("172.20.255.255") "]}]}",
     "containers[0].networks[0].ip", "is the broadcast address"},
    {"Gateway", "{" NET_A ", 'containers': [{'name': 'c', 'networks': [" ON_A("172.20.0.1") "]}]}",
     "containers[0].networks[0].ip", "172.20.0.1 is the gateway of network 'a'"},
    {"ExplicitGateway",
     "{'networks': [{'name': 'a', 'subnet': '10.0.0.0/24', 'gateway': '10.0.0.254'}], "
     "'containers': [{'name': 'c', 'networks': [" ON_A("10.0.0.254") "]}]}",
     "containers[0].networks[0].ip", "is the gateway"},
    {"Duplicate",
     "{" NET_A ", 'containers': ["
     "{'name': 'c', 'networks': [{'network': 'a', 'ip': '172.20.0.9'}]}, "
     "{'name': 'd', 'networks': [{'network': 'a', 'ip': '172.20.0.9'}]}]}",
     "containers[1].networks[0].ip",
     "172.20.0.9 is already used by container 'c' (at containers[0].networks[0].ip)"},
    {"NotAnAddress",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [" ON_A("172.20.0.300") "]}]}",
     "containers[0].networks[0].ip", "invalid IPv4 address '172.20.0.300'"},
    {"WithPrefixLength",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [" ON_A("172.20.0.2/16") "]}]}",
     "containers[0].networks[0].ip", "without a prefix length"},
    {"NetworkWithoutSubnet",
     "{'networks': [{'name': 'a'}], "
     "'containers': [{'name': 'c', 'networks': [" ON_A("172.18.0.5") "]}]}",
     "containers[0].networks[0].ip", "a fixed ip needs a network with an explicit 'subnet'"},
    {"PoolExhausted",
     "{'networks': [{'name': 'a', 'subnet': '10.0.0.0/30'}], "
     "'containers': [{'name': 'c', 'networks': ['a']}, {'name': 'd', 'networks': ['a']}]}",
     "containers[1].networks[0]", "no free address is left in subnet 10.0.0.0/30 of network 'a'"},
};
INSTANTIATE_TEST_SUITE_P(Address, SingleProblem, testing::ValuesIn(kAddressCases), case_name);

// ---------------------------------------------------------------------------
// IPv6 (Docker's --ipv6): the same checks as for IPv4, under their own keys

const ProblemCase kIpv6NetworkCases[] = {
    {"FlagNotBool", "{'networks': [{'name': 'a', 'ipv6': 'yes'}]}", "networks[0].ipv6",
     "must be true or false, not the string 'yes'"},
    {"FlagFalseWithSubnet",
     "{'networks': [{'name': 'a', 'ipv6': false, 'ipv6_subnet': 'fd00:1::/64'}]}",
     "networks[0].ipv6", "is false, but the network has an 'ipv6_subnet'; remove one of them"},
    {"SubnetNotString", "{'networks': [{'name': 'a', 'ipv6_subnet': 64}]}",
     "networks[0].ipv6_subnet", "must be a string, not the number 64"},
    {"SubnetBanana", "{'networks': [{'name': 'a', 'ipv6_subnet': 'banana'}]}",
     "networks[0].ipv6_subnet", "invalid IPv6 subnet 'banana': missing the prefix length"},
    {"SubnetIsIpv4", "{'networks': [{'name': 'a', 'ipv6_subnet': '172.20.0.0/16'}]}",
     "networks[0].ipv6_subnet",
     "invalid IPv6 subnet '172.20.0.0/16': '172.20.0.0' is not an IPv6 address"},
    {"SubnetPrefixTooLong", "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00::/129'}]}",
     "networks[0].ipv6_subnet",
     "invalid IPv6 subnet 'fd00::/129': the prefix length must be a number from 0 to 128"},
    {"SubnetHostBits", "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::1/64'}]}",
     "networks[0].ipv6_subnet",
     "invalid IPv6 subnet 'fd00:1::1/64': host bits are set (did you mean fd00:1::/64?)"},
    {"SubnetZoneId", "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00::%eth0/64'}]}",
     "networks[0].ipv6_subnet", "'fd00::%eth0' is not an IPv6 address"},
    {"SubnetTooSmall", "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00::/121'}]}",
     "networks[0].ipv6_subnet",
     "IPv6 subnet fd00::/121 is too small: an IPv6 network needs /120 or shorter"},
    {"SubnetsOverlap",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00::/48'}, "
     "{'name': 'b', 'ipv6_subnet': 'fd00:0:0:5::/64'}]}",
     "networks[1].ipv6_subnet",
     "IPv6 subnet fd00:0:0:5::/64 of network 'b' overlaps IPv6 subnet fd00::/48 of network 'a' "
     "(networks[0])"},
    {"SubnetsOverlapSpelledDifferently",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'FD00:0001:0000::/64'}, "
     "{'name': 'b', 'ipv6_subnet': 'fd00:1::/64'}]}",
     "networks[1].ipv6_subnet", "overlaps IPv6 subnet fd00:1::/64 of network 'a'"},
    {"GatewayWithoutSubnet",
     "{'networks': [{'name': 'a', 'ipv6': true, 'ipv6_gateway': 'fd00::1'}]}",
     "networks[0].ipv6_gateway", "an IPv6 gateway needs an explicit 'ipv6_subnet'"},
    {"GatewayOutsideSubnet",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': 'fd00:2::1'}]}",
     "networks[0].ipv6_gateway", "IPv6 gateway fd00:2::1 is outside subnet fd00:1::/64"},
    {"GatewayIsNetworkAddress",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': 'fd00:1::'}]}",
     "networks[0].ipv6_gateway",
     "IPv6 gateway fd00:1:: is the network address of subnet fd00:1::/64"},
    {"GatewayNotAnAddress",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': 'fd00:1::g'}]}",
     "networks[0].ipv6_gateway", "invalid IPv6 address 'fd00:1::g'"},
    {"GatewayIsIpv4",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': '172.20.0.1'}]}",
     "networks[0].ipv6_gateway", "invalid IPv6 address '172.20.0.1' (that is an IPv4 address)"},
    {"GatewayWithPrefixLength",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': 'fd00:1::1/64'}]}",
     "networks[0].ipv6_gateway", "without a prefix length"},
    {"UnknownKeySubnet6", "{'networks': [{'name': 'a', 'subnet6': 'fd00::/64'}]}", "networks[0]",
     "unknown key 'subnet6' (did you mean 'ipv6_subnet'?)"},
    {"UnknownKeyGateway6", "{'networks': [{'name': 'a', 'gateway6': 'fd00::1'}]}", "networks[0]",
     "unknown key 'gateway6' (did you mean 'ipv6_gateway'?)"},
    {"UnknownKeySuggestion", "{'networks': [{'name': 'a', 'ipv6_subnett': 'fd00::/64'}]}",
     "networks[0]", "unknown key 'ipv6_subnett' (did you mean 'ipv6_subnet'?)"},
    {"DefaultPoolExhausted",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd6d:6f61:7400::/48'}, "
     "{'name': 'b', 'ipv6': true}]}",
     "networks[1]",
     "no default IPv6 subnet is left (the /64s of fd6d:6f61:7400::/48 are used); set "
     "'ipv6_subnet'"},
};
INSTANTIATE_TEST_SUITE_P(Ipv6Network, SingleProblem, testing::ValuesIn(kIpv6NetworkCases),
                         case_name);

const ProblemCase kSpecialSubnet6Cases[] = {
    {"Everything", "{'networks': [{'name': 'a', 'ipv6_subnet': '::/0'}]}",
     "networks[0].ipv6_subnet",
     "IPv6 subnet ::/0 cannot be a container network: it overlaps the unspecified address "
     "(::/128)"},
    {"Unspecified", "{'networks': [{'name': 'a', 'ipv6_subnet': '::/64'}]}",
     "networks[0].ipv6_subnet", "it overlaps the unspecified address (::/128)"},
    {"Loopback", "{'networks': [{'name': 'a', 'ipv6_subnet': '::1/128'}]}",
     "networks[0].ipv6_subnet", "it overlaps loopback (::1/128)"},
    {"Ipv4Mapped", "{'networks': [{'name': 'a', 'ipv6_subnet': '::ffff:0:0/96'}]}",
     "networks[0].ipv6_subnet", "it overlaps IPv4-mapped addresses (::ffff:0:0/96)"},
    {"Ipv4MappedPart", "{'networks': [{'name': 'a', 'ipv6_subnet': '::ffff:10.0.0.0/104'}]}",
     "networks[0].ipv6_subnet",
     "IPv6 subnet ::ffff:10.0.0.0/104 cannot be a container network: it overlaps IPv4-mapped"},
    {"LinkLocal", "{'networks': [{'name': 'a', 'ipv6_subnet': 'fe80::/64'}]}",
     "networks[0].ipv6_subnet", "it overlaps link-local addresses (fe80::/10)"},
    {"LinkLocalEnd", "{'networks': [{'name': 'a', 'ipv6_subnet': 'febf:ffff::/32'}]}",
     "networks[0].ipv6_subnet", "it overlaps link-local addresses (fe80::/10)"},
    {"Multicast", "{'networks': [{'name': 'a', 'ipv6_subnet': 'ff02::/16'}]}",
     "networks[0].ipv6_subnet", "it overlaps multicast (ff00::/8)"},
    {"Everything6Bits", "{'networks': [{'name': 'a', 'ipv6_subnet': 'fc00::/6'}]}",
     "networks[0].ipv6_subnet", "it overlaps link-local addresses (fe80::/10)"},
};
INSTANTIATE_TEST_SUITE_P(SpecialSubnet6, SingleProblem, testing::ValuesIn(kSpecialSubnet6Cases),
                         case_name);

#define NET6_A \
  "'networks': [{'name': 'a', 'subnet': '172.20.0.0/16', 'ipv6_subnet': 'fd00:1::/64'}]"
#define ON6_A(ip) "{'network': 'a', 'ipv6': '" ip "'}"

const ProblemCase kAddress6Cases[] = {
    {"NotAnAddress",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::g") "]}]}",
     "containers[0].networks[0].ipv6", "invalid IPv6 address 'fd00:1::g'"},
    {"NotString",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv6': 5}]}]}",
     "containers[0].networks[0].ipv6", "must be a string, not the number 5"},
    {"ZoneId",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::5%eth0") "]}]}",
     "containers[0].networks[0].ipv6",
     "invalid IPv6 address 'fd00:1::5%eth0' (a zone id like '%eth0' has no place here)"},
    {"Ipv4Address",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("172.20.0.5") "]}]}",
     "containers[0].networks[0].ipv6", "(that is an IPv4 address)"},
    {"WithPrefixLength",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::5/64") "]}]}",
     "containers[0].networks[0].ipv6", "without a prefix length"},
    {"TrueIsNoAddress",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv6': true}]}]}",
     "containers[0].networks[0].ipv6", "must be a string, not true"},
    {"UnknownKeyIp6",
     "{" NET6_A
     ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ip6': 'fd00:1::5'}]}]}",
     "containers[0].networks[0]", "unknown key 'ip6' (did you mean 'ipv6'?)"},
    {"NetworkWithoutIpv6",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::5") "]}]}",
     "containers[0].networks[0].ipv6",
     "a fixed ipv6 address needs a network with IPv6; network 'a' has none (give it an "
     "'ipv6_subnet')"},
    {"NetworkWithIpv6Off",
     "{'networks': [{'name': 'a', 'ipv6': false}], "
     "'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::5") "]}]}",
     "containers[0].networks[0].ipv6", "a fixed ipv6 address needs a network with IPv6"},
    {"NetworkWithoutIpv6Subnet",
     "{'networks': [{'name': 'a', 'ipv6': true}], "
     "'containers': [{'name': 'c', 'networks': [" ON6_A("fd6d:6f61:7400::5") "]}]}",
     "containers[0].networks[0].ipv6",
     "a fixed ipv6 address needs a network with an explicit 'ipv6_subnet'; network 'a' has none"},
    {"OutsideSubnet",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:2::5") "]}]}",
     "containers[0].networks[0].ipv6", "fd00:2::5 is outside subnet fd00:1::/64 of network 'a'"},
    {"NetworkAddress",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::") "]}]}",
     "containers[0].networks[0].ipv6",
     "fd00:1:: is the network address of subnet fd00:1::/64 of network 'a'"},
    {"Gateway", "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1::1") "]}]}",
     "containers[0].networks[0].ipv6", "fd00:1::1 is the IPv6 gateway of network 'a'"},
    {"ExplicitGateway",
     "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': 'fd00:1::fe'}], "
     "'containers': [{'name': 'c', 'networks': [" ON6_A("fd00:1:0:0::FE") "]}]}",
     "containers[0].networks[0].ipv6", "fd00:1::fe is the IPv6 gateway of network 'a'"},
    {"Duplicate",
     "{" NET6_A ", 'containers': ["
     "{'name': 'c', 'networks': [" ON6_A("fd00:1::9") "]}, "
                                                      "{'name': 'd', 'networks': [" ON6_A(
                                                          "fd00:1:0:0:0:0:0:0009") "]}]}",
     "containers[1].networks[0].ipv6",
     "fd00:1::9 is already used by container 'c' (at containers[0].networks[0].ipv6)"},
};
INSTANTIATE_TEST_SUITE_P(Address6, SingleProblem, testing::ValuesIn(kAddress6Cases), case_name);

#define PUBLISHING(entries) \
  "{" NET_A ", 'containers': [{'name': 'c', 'networks': ['a'], 'publish': [" entries "]}]}"

const ProblemCase kPublishCases[] = {
    {"PortZero", PUBLISHING("'5000:0'"), "containers[0].publish[0]",
     "invalid port mapping '5000:0': port 0 is out of range 1-65535"},
    {"PortTooLarge", PUBLISHING("'65536:80'"), "containers[0].publish[0]",
     "port 65536 is out of range"},
    {"PortNotNumber", PUBLISHING("'abc:80'"), "containers[0].publish[0]",
     "'abc' is not a port number"},
    {"ReversedRange", PUBLISHING("'8010-8000:8010-8000'"), "containers[0].publish[0]",
     "port range '8010-8000' ends before it starts"},
    {"UnequalRanges", PUBLISHING("'8000-8010:9000-9001'"), "containers[0].publish[0]",
     "must be ranges of the same length (11 and 2 ports)"},
    {"HostRangeSinglePort", PUBLISHING("'8000-8001:80'"), "containers[0].publish[0]",
     "must be ranges of the same length"},
    {"SctpPortChange", PUBLISHING("'9000:9001/sctp'"), "containers[0].publish[0]",
     "SCTP ports cannot be changed (the SCTP checksum covers them): use 9000:9000/sctp"},
    {"BadProtocol", PUBLISHING("'8080:80/icmp'"), "containers[0].publish[0]",
     "unknown protocol 'icmp' (use tcp, udp or sctp)"},
    {"ProtocolIsLowerCase", PUBLISHING("'8080:80/TCP'"), "containers[0].publish[0]",
     "unknown protocol 'TCP' (use tcp, udp or sctp)"},
    {"BadHostIp", PUBLISHING("'127.0.0:8080:80'"), "containers[0].publish[0]",
     "'127.0.0' is not an IPv4 address"},
    {"MissingHostPort", PUBLISHING("'80'"), "containers[0].publish[0]", "the host port is missing"},
    {"TooManyParts", PUBLISHING("'::1:8080:80'"), "containers[0].publish[0]",
     "expected [ip:]host:container[/protocol]"},
    {"NotStringOrObject", PUBLISHING("8080"), "containers[0].publish[0]",
     "must be a string like '8080:80/tcp' or an object, not the number 8080"},
    {"ObjectPortZero", PUBLISHING("{'host_port': 0, 'container_port': 80}"),
     "containers[0].publish[0].host_port", "port 0 is out of range"},
    {"ObjectPortNotNumber", PUBLISHING("{'host_port': 80, 'container_port': 80.5}"),
     "containers[0].publish[0].container_port", "must be a port number or a range"},
    {"ObjectMissingContainerPort", PUBLISHING("{'host_port': 80}"), "containers[0].publish[0]",
     "missing required key 'container_port'"},
    {"ObjectBadHostIp", PUBLISHING("{'host_ip': 'localhost', 'host_port': 1, 'container_port': 1}"),
     "containers[0].publish[0].host_ip", "'localhost' is not an IPv4 address"},
    {"ObjectBadHostIp6", PUBLISHING("{'host_ip': 'fd00::zz', 'host_port': 1, 'container_port': 1}"),
     "containers[0].publish[0].host_ip", "'fd00::zz' is not an IPv6 address"},
    {"ObjectBadProtocol", PUBLISHING("{'host_port': 1, 'container_port': 1, 'protocol': 'icmp'}"),
     "containers[0].publish[0].protocol", "unknown protocol 'icmp'"},
    {"ObjectUnequalRanges", PUBLISHING("{'host_port': '8000-8010', 'container_port': 80}"),
     "containers[0].publish[0]", "must be ranges of the same length"},
    {"ObjectUnknownKey", PUBLISHING("{'hostport': 1, 'host_port': 1, 'container_port': 1}"),
     "containers[0].publish[0]", "unknown key 'hostport' (did you mean 'host_port'?)"},
    {"SamePortTwice", PUBLISHING("'8080:80', '8080:81'"), "containers[0].publish[1]",
     "host port 8080/tcp is already published by container 'c' (containers[0].publish[0]: "
     "'8080:80')"},
    {"AnyAddressVersusSpecific", PUBLISHING("'0.0.0.0:8080:80', '127.0.0.1:8080:81'"),
     "containers[0].publish[1]", "host port 8080/tcp is already published"},
    {"OverlappingRanges",
     PUBLISHING("'8000-8010:8000-8010/udp', '9000-9005:9000-9005/udp', '8010:80/udp'"),
     "containers[0].publish[2]", "host port 8010/udp is already published"},
};
INSTANTIATE_TEST_SUITE_P(Publish, SingleProblem, testing::ValuesIn(kPublishCases), case_name);

// IPv6 host addresses (issue 16): bracketed in the string form, on a
// dual-stack network; a wildcard publish claims IPv6 too.
#define PUBLISHING6(entries) \
  "{" NET6_A ", 'containers': [{'name': 'c', 'networks': ['a'], 'publish': [" entries "]}]}"

const ProblemCase kPublish6Cases[] = {
    {"UnclosedBracket", PUBLISHING6("'[::1:8080:80'"), "containers[0].publish[0]",
     "expected [IPv6]:host:container, e.g. '[::1]:8080:80'"},
    {"NoColonAfterBracket", PUBLISHING6("'[::1]8080:80'"), "containers[0].publish[0]",
     "expected [IPv6]:host:container"},
    {"BracketedTooManyParts", PUBLISHING6("'[::1]:1:2:3'"), "containers[0].publish[0]",
     "expected [ip:]host:container[/protocol]"},
    {"BracketedIpv4", PUBLISHING6("'[127.0.0.1]:8080:80'"), "containers[0].publish[0]",
     "'[127.0.0.1]' is not an IPv6 address"},
    {"ZoneId", PUBLISHING6("'[fe80::1%eth0]:8080:80'"), "containers[0].publish[0]",
     "'[fe80::1%eth0]' is not an IPv6 address"},
    {"V4Mapped", PUBLISHING6("'[::ffff:127.0.0.1]:8080:80'"), "containers[0].publish[0]",
     "is an IPv4-mapped address; write the IPv4 address"},
    {"Multicast", PUBLISHING6("'[ff02::1]:8080:80/udp'"), "containers[0].publish[0]",
     "'[ff02::1]' is a multicast address"},
    {"ObjectMapped",
     PUBLISHING6("{'host_ip': '::ffff:10.0.0.1', 'host_port': 1, 'container_port': 1}"),
     "containers[0].publish[0].host_ip", "is an IPv4-mapped address"},
    {"WildcardClaimsIpv6", PUBLISHING6("'8080:80', '[::1]:8080:81'"), "containers[0].publish[1]",
     "host port 8080/tcp is already published by container 'c' (containers[0].publish[0]: "
     "'8080:80')"},
    {"Ipv6WildcardClaimsIpv6Address", PUBLISHING6("'[::]:8080:80', '[fd00:1::1]:8080:81'"),
     "containers[0].publish[1]", "host port 8080/tcp is already published"},
    {"SameIpv6AddressTwice", PUBLISHING6("'[::1]:8000-8005:80-85/udp', '[0:0::1]:8005:80/udp'"),
     "containers[0].publish[1]", "host port 8005/udp is already published"},
    {"Ipv6AddressThenWildcard", PUBLISHING6("'[::1]:8080:80', '8080:81'"),
     "containers[0].publish[1]", "host port 8080/tcp is already published"},
    {"Ipv6AddressWithoutIpv6",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': ['a'], 'publish': ['[::1]:8080:80']}]}",
     "containers[0].publish[0]",
     "'[::1]:8080:80' publishes on an IPv6 address, but container 'c' has no IPv6 address on "
     "network 'a', which it is published from; give the network an \"ipv6_subnet\" or publish "
     "on an IPv4 address"},
    {"Ipv6AddressWithIpv6Off",
     "{" NET6_A ", 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv6': false}], "
     "'publish': [{'host_ip': 'fd00:1::1', 'host_port': 80, 'container_port': 80}]}]}",
     "containers[0].publish[0]", "has no IPv6 address on network 'a'"},
    {"Ipv6OnTheInternalNetworkDoesNotCount",
     "{'networks': [{'name': 'pub', 'subnet': '10.9.0.0/24'}, {'name': 'in', 'internal': true, "
     "'ipv6_subnet': 'fd00:9::/64'}], 'containers': [{'name': 'c', 'networks': ['in', 'pub'], "
     "'publish': ['[::1]:8080:80']}]}",
     "containers[0].publish[0]", "has no IPv6 address on network 'pub'"},
};
INSTANTIATE_TEST_SUITE_P(Publish6, SingleProblem, testing::ValuesIn(kPublish6Cases), case_name);

const ProblemCase kPublishReachCases[] = {
    {"OnlyInternalNetworks",
     "{'networks': [{'name': 'db', 'internal': true}], "
     "'containers': [{'name': 'c', 'networks': ['db'], 'publish': ['5432:5432']}]}",
     "containers[0].publish", "internal network containers cannot be published"},
    {"NoNetworks", "{'containers': [{'name': 'c', 'publish': ['80:80']}]}", "containers[0].publish",
     "a container without networks cannot be published"},
    {"AcrossContainers",
     "{" NET_A ", 'containers': [{'name': 'c', 'networks': ['a'], 'publish': ['8080:80']}, "
     "{'name': 'd', 'networks': ['a'], 'publish': [{'host_ip': '10.1.1.1', 'host_port': 8080, "
     "'container_port': 80}]}]}",
     "containers[1].publish[0]",
     "is already published by container 'c' (containers[0].publish[0]: '8080:80')"},
};
INSTANTIATE_TEST_SUITE_P(PublishReach, SingleProblem, testing::ValuesIn(kPublishReachCases),
                         case_name);

#define EXPOSING(entries) "{'containers': [{'name': 'c', 'expose': [" entries "]}]}"

const ProblemCase kExposeBadCases[] = {
    {"NotANumber", EXPOSING("'abc'"), "containers[0].expose[0]",
     "invalid exposed port 'abc': 'abc' is not a port number"},
    {"BadProtocol", EXPOSING("'80/icmp'"), "containers[0].expose[0]", "unknown protocol 'icmp'"},
    {"Zero", EXPOSING("0"), "containers[0].expose[0]", "port 0 is out of range"},
    {"Negative", EXPOSING("'6000', -1"), "containers[0].expose[1]", "'-1' is not a port number"},
    {"Fraction", EXPOSING("80.5"), "containers[0].expose[0]",
     "must be a port like '6000/tcp' or a number, not the number 80.5"},
    {"Range", EXPOSING("'8000-8010'"), "containers[0].expose[0]", "is not a port number"},
    {"ArrayExpected", "{'containers': [{'name': 'c', 'expose': '80'}]}", "containers[0].expose",
     "must be an array of ports"},
};
INSTANTIATE_TEST_SUITE_P(Expose, SingleProblem, testing::ValuesIn(kExposeBadCases), case_name);

// ---------------------------------------------------------------------------
// Syntax errors, formatting, collecting

TEST(ParseConfig, SyntaxErrorHasLineAndColumn) {
  const std::string text =
      "{\n"
      "  \"networks\": [\n"
      "    {\"name\": \"a\",}\n"
      "  ]\n"
      "}\n";
  ParseResult r = parse_config(text, "moat.json");
  EXPECT_FALSE(r.config);
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  const Problem& p = r.problems[0];
  EXPECT_EQ(p.line, 3);
  EXPECT_EQ(p.column, 18);
  EXPECT_EQ(p.path, "");
  EXPECT_EQ(p.message, "invalid JSON: unexpected '}'; expected string literal");
  EXPECT_EQ(p.format("moat.json"),
            "moat.json:3:18: invalid JSON: unexpected '}'; expected string literal");
}

TEST(ParseConfig, SyntaxErrorColumnCountsCharactersNotBytes) {
  ParseResult r = parse_config("{\"a\": \"äöü\" x}", "f");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].line, 1);
  EXPECT_EQ(r.problems[0].column, 13);
}

TEST(ParseConfig, EmptyAndTruncatedInput) {
  ParseResult empty = parse_config("", "f");
  ASSERT_EQ(empty.problems.size(), 1u);
  EXPECT_EQ(empty.problems[0].line, 1);
  EXPECT_EQ(empty.problems[0].column, 1);
  EXPECT_TRUE(contains(empty.problems[0].message, "unexpected end of input"))
      << empty.problems[0].message;

  ParseResult truncated = parse_config("{\"networks\": [\n", "f");
  ASSERT_EQ(truncated.problems.size(), 1u);
  EXPECT_EQ(truncated.problems[0].line, 2);
  EXPECT_EQ(truncated.problems[0].column, 1);
}

TEST(ParseConfig, NumberOverflowIsAProblemNotAnException) {
  ParseResult r = parse_config("{\"networks\": [1e999]}", "f");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_TRUE(contains(r.problems[0].message, "invalid JSON")) << r.problems[0].message;
}

TEST(Problem, Formats) {
  EXPECT_EQ((Problem{"networks[1].subnet", "bad"}).format("f.json"),
            "f.json: networks[1].subnet: bad");
  EXPECT_EQ((Problem{"", "bad"}).format("f.json"), "f.json: bad");
  EXPECT_EQ((Problem{"", "bad", 3, 5}).format("f.json"), "f.json:3:5: bad");
}

TEST(ParseConfig, CollectsEveryProblemInDocumentOrder) {
  // Found by different passes (overlap and IP checks run after reading), but
  // reported as they stand in the file.
  ParseResult r = parse(
      "{'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ip': '11.0.0.1'}]},"
      "                {'name': 'd', 'networks': ['zz'], 'exposee': []}],"
      " 'networks': [{'name': 'a', 'subnet': '10.0.0.0/8', 'icc': 1},"
      "              {'subnet': '10.1.0.0/16', 'name': 'b'}]}");
  EXPECT_FALSE(r.config);
  std::vector<std::string> paths;
  for (const Problem& p : r.problems) paths.push_back(p.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"containers[0].networks[0].ip", "containers[1]",
                                             "containers[1].networks[0]", "networks[0].icc",
                                             "networks[1].subnet"}))
      << render(r.problems);
}

TEST(ParseConfig, NestedOrderFollowsTheFileNotTheCode) {
  // gateway is written before subnet here; so are its problems.
  ParseResult r = parse("{'networks': [{'name': 'a', 'gateway': 'x', 'subnet': 'y'}]}");
  ASSERT_EQ(r.problems.size(), 2u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "networks[0].gateway");
  EXPECT_EQ(r.problems[1].path, "networks[0].subnet");
}

TEST(ParseConfig, KeepsGoingAfterBadEntries) {
  ParseResult r = parse(
      "{'networks': [5, {'name': 'a', 'subnet': '172.20.0.0/16'}],"
      " 'containers': [{'name': 'c', 'networks': ['a'], 'publish': ['0:0', '1:1/icmp']}]}");
  ASSERT_EQ(r.problems.size(), 3u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "networks[0]");
  EXPECT_EQ(r.problems[1].path, "containers[0].publish[0]");
  EXPECT_EQ(r.problems[2].path, "containers[0].publish[1]");
}

// ---------------------------------------------------------------------------
// The model: defaults and forms

TEST(ParseConfig, ReadsTheExampleFromTheFormat) {
  Config cfg = valid(
      "{'networks': [{'name': 'backend', 'subnet': '172.20.0.0/16', 'gateway': '172.20.0.1',"
      "               'icc': true, 'internal': false, 'masquerade': true}],"
      " 'containers': [{'name': 'rechnung', 'namespace': 'default', 'labels': {'app': 'rechnung'},"
      "                 'networks': [{'network': 'backend', 'ip': '172.20.0.2',"
      "                               'interface': 'veth1234'}],"
      "                 'publish': ['5000:5000/tcp'], 'expose': ['6000/tcp', '53/udp', 80]}],"
      " 'policies': []}");
  EXPECT_EQ(cfg.source, "moat.json");
  ASSERT_EQ(cfg.networks.size(), 1u);
  ASSERT_EQ(cfg.containers.size(), 1u);
  const Container& c = cfg.containers[0];
  EXPECT_EQ(c.name, "rechnung");
  EXPECT_EQ(c.labels.at("app"), "rechnung");
  ASSERT_EQ(c.networks.size(), 1u);
  EXPECT_EQ(c.networks[0].network, "backend");
  EXPECT_EQ(c.networks[0].ip.str(), "172.20.0.2");
  EXPECT_TRUE(c.networks[0].ip_from_file);
  EXPECT_EQ(c.networks[0].host_interface, "veth1234");
  ASSERT_EQ(c.publish.size(), 1u);
  EXPECT_EQ(c.publish[0].host_port, 5000);
  ASSERT_EQ(c.expose.size(), 3u);
  EXPECT_EQ(c.expose[0].port, 6000);
  EXPECT_EQ(c.expose[0].protocol, Protocol::tcp);
  EXPECT_EQ(c.expose[1].port, 53);
  EXPECT_EQ(c.expose[1].protocol, Protocol::udp);
  EXPECT_EQ(c.expose[2].port, 80);
  EXPECT_EQ(c.expose[2].protocol, Protocol::tcp);
  EXPECT_EQ(cfg.find_network("backend"), &cfg.networks[0]);
  EXPECT_EQ(cfg.find_container("rechnung"), &cfg.containers[0]);
  EXPECT_EQ(cfg.find_network("nope"), nullptr);
  EXPECT_EQ(cfg.find_container("nope"), nullptr);
}

TEST(ParseConfig, EmptyDocumentIsValid) {
  Config cfg = valid("{}");
  EXPECT_TRUE(cfg.networks.empty());
  EXPECT_TRUE(cfg.containers.empty());
}

TEST(ParseConfig, Defaults) {
  Config cfg = valid("{'networks': [{'name': 'a'}], 'containers': [{'name': 'c'}]}");
  const Network& n = cfg.networks[0];
  EXPECT_TRUE(n.icc);
  EXPECT_FALSE(n.internal);
  EXPECT_TRUE(n.masquerade);
  const Container& c = cfg.containers[0];
  EXPECT_EQ(c.ns, "default");
  EXPECT_TRUE(c.labels.empty());
  EXPECT_TRUE(c.networks.empty());  // like --net=none
}

TEST(ParseConfig, NetworkFlags) {
  Config cfg =
      valid("{'networks': [{'name': 'a', 'icc': false, 'internal': true, 'masquerade': false}]}");
  EXPECT_FALSE(cfg.networks[0].icc);
  EXPECT_TRUE(cfg.networks[0].internal);
  EXPECT_FALSE(cfg.networks[0].masquerade);
}

TEST(ParseConfig, AttachmentShorthandAndOrder) {
  Config cfg = valid(
      "{'networks': [{'name': 'front'}, {'name': 'back'}],"
      " 'containers': [{'name': 'c', 'networks': ['back', {'network': 'front'}]}]}");
  const auto& nets = cfg.containers[0].networks;
  ASSERT_EQ(nets.size(), 2u);
  EXPECT_EQ(nets[0].network, "back");
  EXPECT_EQ(nets[1].network, "front");
  EXPECT_FALSE(nets[0].ip_from_file);
  EXPECT_EQ(nets[0].host_interface, "");
}

TEST(ParseConfig, PoliciesAndNamespacesAreRead) {  // their format: policy_parse_test.cpp
  Config cfg = valid(
      "{'namespaces': [{'name': 'x', 'labels': {'team': 'a'}}],"
      " 'policies': [{'name': 'p', 'podSelector': {}}]}");
  ASSERT_EQ(cfg.namespaces.size(), 1u);
  ASSERT_EQ(cfg.policies.size(), 1u);
  EXPECT_EQ(cfg.policies[0].ns, "default");
}

struct PublishForm {
  const char* entry;    // as written in the publish array
  const char* host_ip;  // "" for none
  uint16_t host_port;
  uint16_t container_port;
  uint16_t count;
  Protocol protocol;
  const char* text;
};

TEST(ParseConfig, PublishForms) {
  const PublishForm forms[] = {
      {"'5000:5000'", "", 5000, 5000, 1, Protocol::tcp, "5000:5000"},
      {"'8080:80/udp'", "", 8080, 80, 1, Protocol::udp, "8080:80/udp"},
      {"'127.0.0.1:8080:80'", "127.0.0.1", 8080, 80, 1, Protocol::tcp, "127.0.0.1:8080:80"},
      {"'8000-8010:8000-8010/tcp'", "", 8000, 8000, 11, Protocol::tcp, "8000-8010:8000-8010/tcp"},
      {"'127.0.0.1:8000-8001:9000-9001/udp'", "127.0.0.1", 8000, 9000, 2, Protocol::udp,
       "127.0.0.1:8000-8001:9000-9001/udp"},
      {"'1:1/sctp'", "", 1, 1, 1, Protocol::sctp, "1:1/sctp"},
      {"'65535:65535/udp'", "", 65535, 65535, 1, Protocol::udp, "65535:65535/udp"},
      {"'0.0.0.0:80:80'", "0.0.0.0", 80, 80, 1, Protocol::tcp, "0.0.0.0:80:80"},  // every IPv4 one
      {"{'host_ip': '127.0.0.1', 'host_port': 8080, 'container_port': 80, 'protocol': 'udp'}",
       "127.0.0.1", 8080, 80, 1, Protocol::udp, "127.0.0.1:8080:80/udp"},
      {"{'host_port': '8000-8010', 'container_port': '9000-9010'}", "", 8000, 9000, 11,
       Protocol::tcp, "8000-8010:9000-9010/tcp"},
      {"{'host_port': '443', 'container_port': 8443}", "", 443, 8443, 1, Protocol::tcp,
       "443:8443/tcp"},
  };
  for (const PublishForm& f : forms) {
    SCOPED_TRACE(f.entry);
    Config cfg = valid(std::string("{'networks': [{'name': 'a'}], 'containers': [{'name': 'c', "
                                   "'networks': ['a'], 'publish': [") +
                       f.entry + "]}]}");
    ASSERT_EQ(cfg.containers.size(), 1u);
    ASSERT_EQ(cfg.containers[0].publish.size(), 1u);
    const Publish& p = cfg.containers[0].publish[0];
    EXPECT_EQ(p.host_ip ? p.host_ip->str() : "", f.host_ip);
    EXPECT_EQ(p.host_port, f.host_port);
    EXPECT_EQ(p.container_port, f.container_port);
    EXPECT_EQ(p.count, f.count);
    EXPECT_EQ(p.protocol, f.protocol);
    EXPECT_EQ(p.text, f.text);
  }
}

TEST(ParseConfig, PublishFormsIpv6) {
  const struct {
    const char* entry;
    const char* host_ip6;  // "" for none
    uint16_t host_port;
    Protocol protocol;
    const char* text;
  } forms[] = {
      {"'[::1]:8080:80'", "::1", 8080, Protocol::tcp, "[::1]:8080:80"},
      {"'[fd00:1::1]:8080:80/udp'", "fd00:1::1", 8080, Protocol::udp, "[fd00:1::1]:8080:80/udp"},
      {"'[::]:8000-8001:80-81'", "::", 8000, Protocol::tcp, "[::]:8000-8001:80-81"},
      {"{'host_ip': '::1', 'host_port': 8080, 'container_port': 80}", "::1", 8080, Protocol::tcp,
       "[::1]:8080:80/tcp"},
      {"{'host_ip': '[FD00:1::1]', 'host_port': 53, 'container_port': 53, 'protocol': 'udp'}",
       "fd00:1::1", 53, Protocol::udp, "[fd00:1::1]:53:53/udp"},
  };
  for (const auto& f : forms) {
    SCOPED_TRACE(f.entry);
    Config cfg = valid(std::string("{" NET6_A ", 'containers': [{'name': 'c', "
                                   "'networks': ['a'], 'publish': [") +
                       f.entry + "]}]}");
    ASSERT_EQ(cfg.containers.at(0).publish.size(), 1u);
    const Publish& p = cfg.containers[0].publish[0];
    EXPECT_FALSE(p.host_ip);
    EXPECT_EQ(p.host_ip6 ? p.host_ip6->str() : "", f.host_ip6);
    EXPECT_EQ(p.on_ipv4(), !p.host_ip6);
    EXPECT_TRUE(p.on_ipv6());
    EXPECT_EQ(p.host_port, f.host_port);
    EXPECT_EQ(p.protocol, f.protocol);
    EXPECT_EQ(p.text, f.text);
  }
}

// What config_to_json() writes (render_publish) reads back the same.
TEST(ParseConfig, Ipv6PublishRoundTrips) {
  Config cfg = valid("{" NET6_A
                     ", 'containers': [{'name': 'c', 'networks': ['a'], "
                     "'publish': ['[::1]:8080:80/udp', '[::]:9000:90', '127.0.0.1:7000:70']}]}");
  auto again = parse_config(config_to_json(cfg), "again.json");
  ASSERT_TRUE(again.config) << (again.problems.empty() ? "" : again.problems[0].message);
  const auto& p = again.config->containers.at(0).publish;
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].host_ip6->str(), "::1");
  EXPECT_EQ(p[0].protocol, Protocol::udp);
  EXPECT_EQ(p[1].host_ip6->str(), "::");
  EXPECT_EQ(p[2].host_ip->str(), "127.0.0.1");
  EXPECT_FALSE(p[2].host_ip6);
}

TEST(ParseConfig, Ipv6PublishesThatDoNotCollide) {
  Config cfg = valid("{" NET6_A
                     ", 'containers': [{'name': 'c', 'networks': ['a'], "
                     "'publish': ['127.0.0.1:8080:80', '[::1]:8080:81', '[fd00:1::1]:8080:82', "
                     "'10.0.0.1:7000:70', '[::]:7000:71', '[::1]:8080:80/udp', "
                     "'0.0.0.0:9000:90', '[::]:9000:91']}]}");
  EXPECT_EQ(cfg.containers[0].publish.size(), 8u);
}

// 0.0.0.0 is every host IPv4 address and no IPv6 one, as Docker's
// `-p 0.0.0.0:8080:80` and portmap's hostIP 0.0.0.0; no address at all is
// both families. It stays 0.0.0.0 when written back.
TEST(ParseConfig, ZeroAddressPublishesOnIpv4Only) {
  Config cfg = valid("{" NET6_A
                     ", 'containers': [{'name': 'c', 'networks': ['a'], "
                     "'publish': ['0.0.0.0:8080:80', '8081:81', "
                     "{'host_ip': '0.0.0.0', 'host_port': 8082, 'container_port': 82}]}]}");
  const auto& p = cfg.containers.at(0).publish;
  ASSERT_EQ(p.size(), 3u);
  for (const Publish* zero : {&p[0], &p[2]}) {
    SCOPED_TRACE(zero->text);
    ASSERT_TRUE(zero->host_ip);
    EXPECT_EQ(zero->host_ip->str(), "0.0.0.0");
    EXPECT_TRUE(zero->on_ipv4());
    EXPECT_TRUE(zero->any_ipv4());
    EXPECT_FALSE(zero->on_ipv6());
  }
  EXPECT_TRUE(p[1].on_ipv4() && p[1].on_ipv6());
  auto again = parse_config(config_to_json(cfg), "again.json");
  ASSERT_TRUE(again.config) << (again.problems.empty() ? "" : again.problems[0].message);
  const auto& q = again.config->containers.at(0).publish;
  EXPECT_FALSE(q.at(0).on_ipv6());
  EXPECT_EQ(q.at(0).text, "0.0.0.0:8080:80/tcp");
  EXPECT_TRUE(q.at(1).on_ipv6());
}

TEST(ParseConfig, PublishesThatDoNotCollide) {
  Config cfg = valid(
      "{'networks': [{'name': 'a'}, {'name': 'db', 'internal': true}],"
      " 'containers': [{'name': 'c', 'networks': ['db', 'a'],"
      "                 'publish': ['8080:80', '8080:80/udp', '8081:80']},"
      "                {'name': 'd', 'networks': ['a'],"
      "                 'publish': ['127.0.0.1:9000:80', '127.0.0.2:9000:80', "
      "'8070-8079:80-89']}]}");
  EXPECT_EQ(cfg.containers[1].publish.size(), 3u);
}

TEST(ToString, Protocol) {
  EXPECT_EQ(to_string(Protocol::tcp), "tcp");
  EXPECT_EQ(to_string(Protocol::udp), "udp");
  EXPECT_EQ(to_string(Protocol::sctp), "sctp");
}

// ---------------------------------------------------------------------------
// IPAM

std::string networks_without_subnet(int count) {
  std::string text;
  for (int i = 0; i < count; ++i) {
    text += (i ? ", " : "") + std::string("{'name': 'n") + std::to_string(i) + "'}";
  }
  return text;
}

TEST(Ipam, DefaultSubnetsSkipExplicitOnes) {
  Config cfg = valid(
      "{'networks': [{'name': 'a'}, {'name': 'b', 'subnet': '172.19.4.0/24'},"
      "              {'name': 'c'}, {'name': 'd', 'subnet': '172.18.0.0/16'}]}");
  EXPECT_EQ(cfg.networks[0].subnet.str(), "172.20.0.0/16");
  EXPECT_EQ(cfg.networks[1].subnet.str(), "172.19.4.0/24");
  EXPECT_EQ(cfg.networks[2].subnet.str(), "172.21.0.0/16");
  EXPECT_EQ(cfg.networks[3].subnet.str(), "172.18.0.0/16");
}

TEST(Ipam, DefaultGatewayIsTheFirstHost) {
  Config cfg = valid(
      "{'networks': [{'name': 'a'}, {'name': 'b', 'subnet': '10.5.0.0/16'},"
      "              {'name': 'c', 'subnet': '10.6.0.0/24', 'gateway': '10.6.0.254'}]}");
  EXPECT_EQ(cfg.networks[0].gateway.str(), "172.18.0.1");
  EXPECT_EQ(cfg.networks[1].gateway.str(), "10.5.0.1");
  EXPECT_EQ(cfg.networks[2].gateway.str(), "10.6.0.254");
}

TEST(Ipam, SmallPoolFollowsTheLargeOne) {
  Config cfg = valid("{'networks': [" + networks_without_subnet(16) + "]}");
  EXPECT_EQ(cfg.networks[13].subnet.str(), "172.31.0.0/16");
  EXPECT_EQ(cfg.networks[14].subnet.str(), "192.168.0.0/20");
  EXPECT_EQ(cfg.networks[15].subnet.str(), "192.168.16.0/20");
}

TEST(Ipam, RunsOutOfDefaultSubnets) {
  ParseResult r = parse("{'networks': [" + networks_without_subnet(31) + "]}");
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "networks[30]");
  EXPECT_TRUE(contains(r.problems[0].message, "no default subnet is left"));
}

TEST(Ipam, NextFreeAddressSkipsExplicitOnes) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'subnet': '172.20.0.0/24'}],"
      " 'containers': [{'name': 'c0', 'networks': ['a']},"
      "                {'name': 'c1', 'networks': [{'network': 'a', 'ip': '172.20.0.2'}]},"
      "                {'name': 'c2', 'networks': ['a']},"
      "                {'name': 'c3', 'networks': [{'network': 'a', 'ip': '172.20.0.4'}]},"
      "                {'name': 'c4', 'networks': ['a']}]}");
  auto ip_of = [&cfg](int i) { return cfg.containers[i].networks[0].ip.str(); };
  EXPECT_EQ(ip_of(0), "172.20.0.3");
  EXPECT_EQ(ip_of(1), "172.20.0.2");
  EXPECT_EQ(ip_of(2), "172.20.0.5");
  EXPECT_EQ(ip_of(3), "172.20.0.4");
  EXPECT_EQ(ip_of(4), "172.20.0.6");
  EXPECT_FALSE(cfg.containers[0].networks[0].ip_from_file);
  EXPECT_TRUE(cfg.containers[1].networks[0].ip_from_file);
}

TEST(Ipam, AllocatesPerNetworkInAttachmentOrder) {
  Config cfg = valid(
      "{'networks': [{'name': 'a'}, {'name': 'b'}],"
      " 'containers': [{'name': 'c', 'networks': ['b', 'a']}, {'name': 'd', 'networks': ['a']}]}");
  EXPECT_EQ(cfg.containers[0].networks[0].ip.str(), "172.19.0.2");
  EXPECT_EQ(cfg.containers[0].networks[1].ip.str(), "172.18.0.2");
  EXPECT_EQ(cfg.containers[1].networks[0].ip.str(), "172.18.0.3");
}

TEST(Ipam, GatewayElsewhereLeavesTheFirstHostFree) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'subnet': '10.0.0.0/24', 'gateway': '10.0.0.254'}],"
      " 'containers': [{'name': 'c', 'networks': ['a']}]}");
  EXPECT_EQ(cfg.containers[0].networks[0].ip.str(), "10.0.0.1");
}

TEST(Ipam, SlashThirtyHoldsOneContainer) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'subnet': '10.0.0.0/30'}],"
      " 'containers': [{'name': 'c', 'networks': ['a']}]}");
  EXPECT_EQ(cfg.networks[0].gateway.str(), "10.0.0.1");
  EXPECT_EQ(cfg.containers[0].networks[0].ip.str(), "10.0.0.2");

  ParseResult full = parse(
      "{'networks': [{'name': 'a', 'subnet': '10.0.0.0/30'}],"
      " 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ip': '10.0.0.2'}]},"
      "                {'name': 'd', 'networks': ['a']}, {'name': 'e', 'networks': ['a']}]}");
  ASSERT_EQ(full.problems.size(), 2u) << render(full.problems);
  EXPECT_EQ(full.problems[0].path, "containers[1].networks[0]");
  EXPECT_EQ(full.problems[1].path, "containers[2].networks[0]");
}

// ---------------------------------------------------------------------------
// IPv6 IPAM

std::string ip6_of(const Config& cfg, size_t container, size_t attachment = 0) {
  const auto& ip6 = cfg.containers[container].networks[attachment].ip6;
  return ip6 ? ip6->str() : "none";
}

TEST(Ipam6, NoIpv6UnlessAskedFor) {
  Config cfg = valid(
      "{'networks': [{'name': 'a'}, {'name': 'b', 'ipv6': false}],"
      " 'containers': [{'name': 'c', 'networks': ['a', 'b']}]}");
  EXPECT_FALSE(cfg.networks[0].subnet6);
  EXPECT_FALSE(cfg.networks[1].subnet6);
  EXPECT_EQ(cfg.networks[0].gateway6, Ipv6{});
  EXPECT_FALSE(cfg.containers[0].networks[0].ip6);
  EXPECT_FALSE(cfg.containers[0].networks[0].ip6_from_file);
  EXPECT_FALSE(cfg.containers[0].networks[1].ip6);
}

TEST(Ipam6, DefaultSubnetsAreSlash64sOfMoatsPool) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6': true}, "
      "              {'name': 'b', 'ipv6_subnet': 'fd6d:6f61:7400:1::/64'},"
      "              {'name': 'c', 'ipv6': true}, {'name': 'd'},"
      "              {'name': 'e', 'ipv6': true, 'ipv6_subnet': '2001:db8:1::/48'}]}");
  EXPECT_EQ(cfg.networks[0].subnet6->str(), "fd6d:6f61:7400::/64");
  EXPECT_EQ(cfg.networks[0].gateway6.str(), "fd6d:6f61:7400::1");
  EXPECT_EQ(cfg.networks[1].subnet6->str(), "fd6d:6f61:7400:1::/64");
  EXPECT_EQ(cfg.networks[1].gateway6.str(), "fd6d:6f61:7400:1::1");
  EXPECT_EQ(cfg.networks[2].subnet6->str(), "fd6d:6f61:7400:2::/64");
  EXPECT_FALSE(cfg.networks[3].subnet6);
  EXPECT_EQ(cfg.networks[4].subnet6->str(), "2001:db8:1::/48");
  EXPECT_EQ(cfg.networks[4].gateway6.str(), "2001:db8:1::1");
  // IPv4 is allocated as without IPv6.
  EXPECT_EQ(cfg.networks[0].subnet.str(), "172.18.0.0/16");
  EXPECT_EQ(cfg.networks[1].subnet.str(), "172.19.0.0/16");
  EXPECT_EQ(cfg.networks[2].subnet.str(), "172.20.0.0/16");
  EXPECT_EQ(cfg.networks[3].subnet.str(), "172.21.0.0/16");
}

TEST(Ipam6, DefaultSubnetsSkipExplicitOnesAnywhereInTheFile) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6': true},"
      "              {'name': 'b', 'ipv6_subnet': 'fd6d:6f61:7400::/63'},"
      "              {'name': 'c', 'ipv6': true},"
      "              {'name': 'd', 'ipv6_subnet': 'fd6d:6f61:7400:3::/120'},"
      "              {'name': 'e', 'ipv6': true}]}");
  EXPECT_EQ(cfg.networks[0].subnet6->str(), "fd6d:6f61:7400:2::/64");
  EXPECT_EQ(cfg.networks[2].subnet6->str(), "fd6d:6f61:7400:4::/64");
  EXPECT_EQ(cfg.networks[4].subnet6->str(), "fd6d:6f61:7400:5::/64");
}

TEST(Ipam6, GatewayGivenOrFirstHost) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': 'fd00:1::fffe'},"
      "              {'name': 'b', 'ipv6_subnet': 'fd00:2::100/120'}]}");
  EXPECT_EQ(cfg.networks[0].gateway6.str(), "fd00:1::fffe");
  EXPECT_EQ(cfg.networks[1].gateway6.str(), "fd00:2::101");
}

TEST(Ipam6, AddressesFollowTheGatewayInContainerOrder) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6': true}, {'name': 'b', 'ipv6_subnet': 'fd00:b::/64'}],"
      " 'containers': [{'name': 'c', 'networks': ['b', 'a']}, {'name': 'd', 'networks': ['a']},"
      "                {'name': 'e', 'networks': ['a', 'b']}]}");
  EXPECT_EQ(ip6_of(cfg, 0, 0), "fd00:b::2");
  EXPECT_EQ(ip6_of(cfg, 0, 1), "fd6d:6f61:7400::2");
  EXPECT_EQ(ip6_of(cfg, 1, 0), "fd6d:6f61:7400::3");
  EXPECT_EQ(ip6_of(cfg, 2, 0), "fd6d:6f61:7400::4");
  EXPECT_EQ(ip6_of(cfg, 2, 1), "fd00:b::3");
  EXPECT_FALSE(cfg.containers[0].networks[0].ip6_from_file);
  // Both families on every attachment of a dual-stack network.
  EXPECT_EQ(cfg.containers[1].networks[0].ip.str(), "172.18.0.3");
}

TEST(Ipam6, NextFreeAddressSkipsExplicitOnes) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'subnet': '172.18.0.0/16', 'ipv6_subnet': 'fd00:1::/64'}],"
      " 'containers': [{'name': 'c0', 'networks': ['a']},"
      "                {'name': 'c1', 'networks': [{'network': 'a', 'ipv6': 'fd00:1::2'}]},"
      "                {'name': 'c2', 'networks': ['a']},"
      "                {'name': 'c3', 'networks': [{'network': 'a', 'ipv6': 'FD00:1::4'}]},"
      "                {'name': 'c4', 'networks': ['a']},"
      "                {'name': 'c5', 'networks': [{'network': 'a', 'ip': '172.18.0.2'}]}]}");
  EXPECT_EQ(ip6_of(cfg, 0), "fd00:1::3");
  EXPECT_EQ(ip6_of(cfg, 1), "fd00:1::2");
  EXPECT_EQ(ip6_of(cfg, 2), "fd00:1::5");
  EXPECT_EQ(ip6_of(cfg, 3), "fd00:1::4");
  EXPECT_EQ(ip6_of(cfg, 4), "fd00:1::6");
  EXPECT_EQ(ip6_of(cfg, 5), "fd00:1::7");  // an explicit IPv4 address, an allocated IPv6 one
  EXPECT_FALSE(cfg.containers[0].networks[0].ip6_from_file);
  EXPECT_TRUE(cfg.containers[1].networks[0].ip6_from_file);
  EXPECT_TRUE(cfg.containers[5].networks[0].ip_from_file);
  EXPECT_FALSE(cfg.containers[5].networks[0].ip6_from_file);
}

TEST(Ipam6, GatewayElsewhereLeavesTheFirstHostFree) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00::/64', 'ipv6_gateway': 'fd00::ff'}],"
      " 'containers': [{'name': 'c', 'networks': ['a']}]}");
  EXPECT_EQ(ip6_of(cfg, 0), "fd00::1");
}

TEST(Ipam6, DualStackContainerOnAnIpv4OnlyNetworkToo) {
  Config cfg = valid(
      "{'networks': [{'name': 'v4', 'subnet': '10.4.0.0/24'},"
      "              {'name': 'dual', 'subnet': '10.6.0.0/24', 'ipv6_subnet': 'fd00:6::/64'}],"
      " 'containers': [{'name': 'c', 'networks': ['v4', {'network': 'dual', 'ip': '10.6.0.9',"
      "                                                  'ipv6': 'fd00:6::9'}]},"
      "                {'name': 'd', 'networks': ['dual', 'v4']}]}");
  const Container& c = cfg.containers[0];
  EXPECT_EQ(c.networks[0].ip.str(), "10.4.0.2");
  EXPECT_FALSE(c.networks[0].ip6);
  EXPECT_EQ(c.networks[1].ip.str(), "10.6.0.9");
  EXPECT_EQ(ip6_of(cfg, 0, 1), "fd00:6::9");
  EXPECT_TRUE(c.networks[1].ip6_from_file);
  const Container& d = cfg.containers[1];
  EXPECT_EQ(d.networks[0].ip.str(), "10.6.0.2");
  EXPECT_EQ(ip6_of(cfg, 1, 0), "fd00:6::2");
  EXPECT_EQ(d.networks[1].ip.str(), "10.4.0.3");
  EXPECT_FALSE(d.networks[1].ip6);
}

TEST(Ipam6, FalseMeansNoAddressAndNoneIsAllocated) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64'}, {'name': 'b'}],"
      " 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv6': false},"
      "                                           {'network': 'b', 'ipv6': false}]},"
      "                {'name': 'd', 'networks': ['a']}]}");
  EXPECT_EQ(ip6_of(cfg, 0, 0), "none");
  EXPECT_TRUE(cfg.containers[0].networks[0].ip6_from_file);
  EXPECT_EQ(ip6_of(cfg, 0, 1), "none");    // no IPv6 on b anyway
  EXPECT_EQ(ip6_of(cfg, 1), "fd00:1::2");  // c holds no address
}

TEST(Ipam6, ShortAndLongPrefixesWork) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6_subnet': 'fc00::/7'},"  // shorter than /48 is allowed
      "              {'name': 'b', 'ipv6_subnet': '2001:db8::/120'}],"
      " 'containers': [{'name': 'c', 'networks': ['a', 'b']}]}");
  EXPECT_EQ(ip6_of(cfg, 0, 0), "fc00::2");
  EXPECT_EQ(ip6_of(cfg, 0, 1), "2001:db8::2");
}

TEST(Ipam6, Slash120Holds254Containers) {
  // fd00::/120: the network address and the gateway, then ::2 to ::ff (IPv6
  // has no broadcast address, so the last one is a host's).
  auto document = [](int containers) {
    std::string text = "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00::/120'}], 'containers': [";
    for (int i = 0; i < containers; ++i) {
      text += (i ? ", " : "") + std::string("{'name': 'c") + std::to_string(i) +
              "', 'networks': ['a']}";
    }
    return text + "]}";
  };
  Config cfg = valid(document(254));
  ASSERT_EQ(cfg.containers.size(), 254u);
  EXPECT_EQ(ip6_of(cfg, 0), "fd00::2");
  EXPECT_EQ(ip6_of(cfg, 253), "fd00::ff");

  ParseResult r = parse(document(255));
  ASSERT_EQ(r.problems.size(), 1u) << render(r.problems);
  EXPECT_EQ(r.problems[0].path, "containers[254].networks[0]");
  EXPECT_TRUE(contains(r.problems[0].message,
                       doc("no free IPv6 address is left in subnet fd00::/120 of network 'a'")))
      << r.problems[0].message;
}

TEST(Ipam6, Ipv4AndIpv6ProblemsAreIndependent) {
  // A broken IPv4 subnet leaves IPv6 checked, and the other way round.
  ParseResult r = parse(
      "{'networks': [{'name': 'a', 'subnet': '10.0.0.1/8', 'ipv6_subnet': 'fd00::/64'},"
      "              {'name': 'b', 'subnet': '10.0.0.0/8', 'ipv6_subnet': 'fd00::1/64'}],"
      " 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv6': 'fd00::1'}]}]}");
  std::vector<std::string> paths;
  for (const Problem& p : r.problems) paths.push_back(p.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"networks[0].subnet", "networks[1].ipv6_subnet",
                                             "containers[0].networks[0].ipv6"}))
      << render(r.problems);
}

TEST(ConfigToJson, WritesIpv6BackSoThatItReadsAlike) {
  Config cfg = valid(
      "{'networks': [{'name': 'v4', 'subnet': '10.4.0.0/24'},"
      "              {'name': 'dual', 'ipv6': true, 'icc': false},"
      "              {'name': 'given', 'ipv6_subnet': 'fd00:1::/64', 'ipv6_gateway': "
      "'fd00:1::fe'}],"
      " 'containers': [{'name': 'c', 'networks': ['v4', 'dual', "
      "                 {'network': 'given', 'ipv6': 'fd00:1::9', 'interface': 'veth1'}]}]}");
  const std::string text = config_to_json(cfg);
  EXPECT_TRUE(contains(text, "\"ipv6_subnet\": \"fd6d:6f61:7400::/64\"")) << text;
  EXPECT_TRUE(contains(text, "\"ipv6_gateway\": \"fd00:1::fe\"")) << text;
  EXPECT_TRUE(contains(text, "\"ipv6\": \"fd00:1::9\"")) << text;
  ParseResult back = parse_config(text, "again");
  ASSERT_TRUE(back.config) << render(back.problems);
  const Config& again = *back.config;
  ASSERT_EQ(again.networks.size(), cfg.networks.size());
  for (size_t i = 0; i < cfg.networks.size(); ++i) {
    const Network &x = cfg.networks[i], &y = again.networks[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.subnet, y.subnet) << x.name;
    EXPECT_EQ(x.gateway, y.gateway) << x.name;
    EXPECT_EQ(x.subnet6, y.subnet6) << x.name;
    EXPECT_EQ(x.gateway6, y.gateway6) << x.name;
    EXPECT_EQ(x.icc, y.icc) << x.name;
    EXPECT_EQ(x.internal, y.internal) << x.name;
    EXPECT_EQ(x.masquerade, y.masquerade) << x.name;
  }
  ASSERT_EQ(again.containers.size(), 1u);
  const auto &xs = cfg.containers[0].networks, &ys = again.containers[0].networks;
  ASSERT_EQ(xs.size(), ys.size());
  for (size_t j = 0; j < xs.size(); ++j) {
    EXPECT_EQ(xs[j].network, ys[j].network);
    EXPECT_EQ(xs[j].ip, ys[j].ip) << xs[j].network;
    EXPECT_EQ(xs[j].ip6, ys[j].ip6) << xs[j].network;
    EXPECT_EQ(xs[j].host_interface, ys[j].host_interface) << xs[j].network;
  }
  EXPECT_FALSE(ys[0].ip6);
  EXPECT_TRUE(ys[1].ip6_from_file);  // every value explicit, as for IPv4
  // And once more: the text is a fixed point.
  EXPECT_EQ(config_to_json(again), text);
}

TEST(ConfigToJson, WritesFalseForAnAttachmentWithoutIpv6OnAnIpv6Network) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6_subnet': 'fd00:1::/64'}, {'name': 'b'}],"
      " 'containers': [{'name': 'c', 'networks': [{'network': 'a', 'ipv6': false}, 'b']}]}");
  const std::string text = config_to_json(cfg);
  const auto written = nlohmann::json::parse(text)["containers"][0]["networks"];
  EXPECT_EQ(written[0]["ipv6"], false) << text;
  EXPECT_FALSE(written[1].contains("ipv6")) << text;
  ParseResult back = parse_config(text, "again");
  ASSERT_TRUE(back.config) << render(back.problems);
  EXPECT_EQ(ip6_of(*back.config, 0, 0), "none");
  EXPECT_EQ(config_to_json(*back.config), text);
}

TEST(ConfigToJson, WritesNoIpv6KeysForAnIpv4OnlyFile) {
  Config cfg = valid(
      "{'networks': [{'name': 'a', 'ipv6': false}],"
      " 'containers': [{'name': 'c', 'networks': ['a']}]}");
  EXPECT_FALSE(contains(config_to_json(cfg), "ipv6")) << config_to_json(cfg);
}

// ---------------------------------------------------------------------------
// closest_match

TEST(ClosestMatch, Suggests) {
  const std::vector<std::string> keys = {"name",     "namespace", "labels",
                                         "networks", "publish",   "expose"};
  struct Case {
    const char* word;
    const char* expected;
  };
  const Case cases[] = {
      {"netwroks", "networks"},  // a transposition counts once
      {"NETWORKS", "networks"},  // case-insensitive
      {"network", "networks"},
      {"publsh", "publish"},
      {"nmae", "name"},
      {"namespaces", "namespace"},
      {"exposed", "expose"},
      {"lables", "labels"},
      {"xyz", ""},
      {"volumes", ""},
      {"", ""},
  };
  for (const Case& c : cases) EXPECT_EQ(closest_match(c.word, keys), c.expected) << c.word;
}

TEST(ClosestMatch, DistanceLimitGrowsWithLength) {
  // max(2, len/3): three edits are fine for a nine-letter word, not for a six-letter one.
  EXPECT_EQ(closest_match("interfxyz", {"interface"}), "interface");
  EXPECT_EQ(closest_match("subxyz", {"subnet"}), "");
  EXPECT_EQ(closest_match("subnxt", {"subnet"}), "subnet");
}

TEST(ClosestMatch, NeedsSomethingInCommon) {
  EXPECT_EQ(closest_match("ab", {"ip"}), "");  // two edits, but nothing left of the word
  EXPECT_EQ(closest_match("i", {"ip"}), "ip");
  EXPECT_EQ(closest_match("anything", {}), "");
}

TEST(ClosestMatch, FirstOfEquallyCloseWins) {
  EXPECT_EQ(closest_match("ucp", {"tcp", "udp"}), "tcp");
  EXPECT_EQ(closest_match("ucp", {"udp", "tcp"}), "udp");
}

// ---------------------------------------------------------------------------
// The example files shipped with the project

TEST(PolicyFiles, AllParseWithoutProblems) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(MOAT_SOURCE_DIR) / "policies";
  std::vector<fs::path> files;
  if (fs::is_directory(dir)) {
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      if (entry.is_regular_file() && entry.path().extension() == ".json") {
        files.push_back(entry.path());
      }
    }
  }
  if (files.empty()) GTEST_SKIP() << "no *.json files under " << dir;
  for (const fs::path& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    ParseResult r = parse_config(text.str(), file.string());
    std::string rendered;
    for (const Problem& p : r.problems) rendered += "\n  " + p.format(file.string());
    EXPECT_TRUE(r.problems.empty()) << rendered;
    EXPECT_TRUE(r.config.has_value()) << file;
  }
}

}  // namespace
}  // namespace moat
