// mutate.h - turning a valid frame into the frames parsers get wrong: any
// header field (addresses and ports from the pools, TCP flag combinations,
// protocol, TTL, fragment bits), lying lengths and versions, IPv4 options,
// truncation, trailers, broken checksums, an 802.1Q tag, foreign or
// broadcast MACs, random bytes. Checksums are made right again after a
// mutation unless breaking them was the point, so most mutants are frames a
// host would accept.
#pragma once

#include <cstdint>
#include <string>

#include "frame.h"
#include "pools.h"

namespace fuzz {

// Applies one to three mutations drawn from `seed`; returns their names.
std::string mutate(Bytes& frame, uint64_t seed, const Pools& pools);

}  // namespace fuzz
