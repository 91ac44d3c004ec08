// proto.h - the protocols moat knows, with one table of names, so a file, a
// policy, a map key and a printed flow all spell a protocol the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moat {

// The values are the IPPROTO_* numbers: a map key's proto is the value itself.
enum class Protocol : uint8_t { icmp = 1, tcp = 6, udp = 17, sctp = 132 };

std::string to_string(Protocol p);        // "tcp", "udp", "sctp", "icmp"
std::string to_string_upper(Protocol p);  // "TCP": how Kubernetes spells them in policies
constexpr uint8_t ip_protocol_number(Protocol p) { return static_cast<uint8_t>(p); }

// The protocol named `text` ("udp"; with any_case also "UDP" or "Udp").
std::optional<Protocol> parse_protocol(std::string_view text, bool any_case = false);

// An IPPROTO_* number for people: "tcp", "udp", "icmp", "sctp"; "" for 0 (no
// protocol); any other number as text ("47").
std::string proto_name(uint8_t ipproto);

}  // namespace moat
