// hook.h - the four places moat's TC programs judge a packet, as the model,
// the generator and the report name them (the BPF side's names).
#pragma once

#include <optional>
#include <string>

namespace fuzz {

enum class Hook { FromContainer, ToContainer, FromWorld, ToWorld };

inline const char* hook_name(Hook h) {
  switch (h) {
    case Hook::FromContainer:
      return "from_container";
    case Hook::ToContainer:
      return "to_container";
    case Hook::FromWorld:
      return "from_world";
    case Hook::ToWorld:
      return "to_world";
  }
  return "?";
}

inline std::optional<Hook> hook_from_name(const std::string& s) {
  for (Hook h : {Hook::FromContainer, Hook::ToContainer, Hook::FromWorld, Hook::ToWorld})
    if (s == hook_name(h)) return h;
  return std::nullopt;
}

inline bool at_uplink(Hook h) { return h == Hook::FromWorld || h == Hook::ToWorld; }

}  // namespace fuzz
