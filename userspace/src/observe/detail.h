// detail.h - helpers the observe/ sources share; not part of observe.h.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <string>

#include "util/net.h"

namespace moat::obs::detail {

inline std::string ip_str(uint32_t be) { return Ipv4{ntohl(be)}.str(); }

// 1234567 -> "1.2M": columns of rates and byte counts stay narrow.
std::string human(double v);

}  // namespace moat::obs::detail
