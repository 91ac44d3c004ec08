// abi_names.h - names for people of the values that cross kernel/user
// space (bpf/abi.h): drop reasons, conntrack kinds, TCP states.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/proto.h"  // proto_name()

namespace moat {

const char* ct_kind_name(uint8_t kind);     // enum moat_ct_kind: "published", ...; "" for none
const char* tcp_state_name(uint8_t state);  // enum moat_tcp_state: "syn-sent", ...; "" for none

// Drop reason metric names indexed by counter slot ("" where unused).
const std::vector<std::string>& drop_reason_names();

}  // namespace moat
