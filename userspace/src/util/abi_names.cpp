#include "util/abi_names.h"

#include <netinet/in.h>

#include "abi.h"

namespace moat {

const char* ct_kind_name(uint8_t kind) {
  switch (kind) {
    case MOAT_CT_DNAT: return "published";
    case MOAT_CT_DNAT_REPLY: return "published-reply";
    case MOAT_CT_SNAT: return "egress";
    case MOAT_CT_SNAT_REPLY: return "egress-reply";
    case MOAT_CT_TRACK: return "tracked";
    default: return "";
  }
}

const char* tcp_state_name(uint8_t state) {
  switch (state) {
    case MOAT_TCP_SYN_SENT: return "syn-sent";
    case MOAT_TCP_ESTABLISHED: return "established";
    case MOAT_TCP_CLOSING: return "closing";
    default: return "";
  }
}

const std::vector<std::string>& drop_reason_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v(MOAT_NR_DROP_SLOTS);
#define MOAT_X_NAME(name, num, metric, text) v[num] = metric;
    MOAT_DROP_REASONS(MOAT_X_NAME)
#undef MOAT_X_NAME
    return v;
  }();
  return names;
}

}  // namespace moat
