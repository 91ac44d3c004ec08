#include "util/paths.h"

namespace moat::paths {

std::string pin_dir(const std::string& instance) { return std::string(kPinRoot) + "/" + instance; }
std::string state_dir(const std::string& instance) { return std::string(kRunDir) + "/" + instance; }
std::string netns_path(const std::string& name) { return std::string(kNetnsDir) + "/" + name; }

}  // namespace moat::paths
