// detail.h - helpers the observe/ sources share; not part of observe.h.
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>

#include "abi.h"
#include "util/net.h"

namespace moat::obs::detail {

inline std::string ip_str(uint32_t be) { return Ipv4{ntohl(be)}.str(); }

inline std::string ip6_str(const moat_ip& a) {
  Ipv6 v;
  std::copy(std::begin(a.b), std::end(a.b), v.bytes.begin());
  return v.str();
}

// 1234567 -> "1.2M": columns of rates and byte counts stay narrow.
std::string human(double v);

}  // namespace moat::obs::detail
