// hook.h - the four places moat's TC programs judge a packet, as the model,
// the generator and the report name them (the BPF side's names).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "abi.h"
#include "observe/snapshot.h"

namespace fuzz {

enum class Hook : uint32_t {
  FromContainer = MOAT_DIR_FROM_CONTAINER,
  ToContainer = MOAT_DIR_TO_CONTAINER,
  FromWorld = MOAT_DIR_FROM_WORLD,
  ToWorld = MOAT_DIR_TO_WORLD,
};

inline const char* hook_name(Hook h) { return moat::obs::dir_name(static_cast<uint32_t>(h)); }

inline std::optional<Hook> hook_from_name(const std::string& s) {
  for (Hook h : {Hook::FromContainer, Hook::ToContainer, Hook::FromWorld, Hook::ToWorld})
    if (s == hook_name(h)) return h;
  return std::nullopt;
}

inline bool at_uplink(Hook h) { return h == Hook::FromWorld || h == Hook::ToWorld; }

}  // namespace fuzz
