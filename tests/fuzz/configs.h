// configs.h - the configurations a run fuzzes: a handful of fixed ones
// (isolation between networks, icc off and internal networks, published
// ports of every form with masquerading and routed networks, policies with
// allow and deny rules, ipBlock with except, label and namespace
// selectors, Kubernetes objects, multi-network containers; dual-stack
// networks in isolation, icc-internal and policies) and random ones drawn
// from a seed. Every attachment names its device (fz0, fz1, ...) and
// MAC; uplinks are fzu0, fzu1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "topology.h"

namespace fuzz {

inline constexpr size_t kMaxAttachments = 20;
inline constexpr const char* kUplinkDevices[] = {"fzu0", "fzu1"};
inline constexpr const char* kUnknownDevice = "fzx";
std::string attachment_device(size_t i);

std::vector<FuzzConfig> seed_configs();
FuzzConfig random_config(uint64_t seed);

}  // namespace fuzz
