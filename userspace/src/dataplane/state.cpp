#include "dataplane/state.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "dataplane/dataplane.h"
#include "dataplane/host.h"
#include "util/fd.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {

std::string state_file(const std::string& instance) { return state_dir(instance) + "/state.json"; }

Result<json> read_state(const std::string& instance) {
  std::ifstream in(state_file(instance));
  if (!in) return json::object();
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    return fail(state_file(instance) + " is corrupt: " + e.what());
  }
}

Result<void> write_file_atomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.ok()) return fail_errno("create " + tmp, errno);
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("write " + tmp, errno);
    done += static_cast<size_t>(n);
  }
  if (fsync(fd.get()) != 0) return fail_errno("sync " + tmp, errno);
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail_errno("replace " + path, errno);
  return {};
}

Result<void> write_state(const std::string& instance, const json& st) {
  if (auto r = mkdirs(state_dir(instance)); !r) return r;
  return write_file_atomic(state_file(instance), st.dump(2) + "\n");
}

IdTable ids_from_state(const json& st) {
  IdTable ids;
  if (st.contains("ids")) {
    ids.networks = st["ids"].value("networks", std::map<std::string, uint32_t>{});
    ids.containers = st["ids"].value("containers", std::map<std::string, uint32_t>{});
  }
  return ids;
}

// ---- public (dataplane.h) ----------------------------------------------------------

std::string pin_dir(const std::string& instance) { return paths::pin_dir(instance); }
std::string state_dir(const std::string& instance) { return paths::state_dir(instance); }

bool valid_instance_name(const std::string& name, std::string* why) {
  bool ok = !name.empty() && name.size() <= 40 && name[0] != '-' && name[0] != '.';
  for (char c : name) ok = ok && (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  if (!ok && why) *why = "instance names are 1-40 characters of [A-Za-z0-9_-], not starting with '-'";
  return ok;
}

Result<json> instance_state(const std::string& instance) { return read_state(instance); }

std::vector<std::string> instances() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& dir : {std::string(paths::kPinRoot), std::string(paths::kRunDir)})
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory() && e.path().filename() != "labs") names.insert(e.path().filename());
  return {names.begin(), names.end()};
}

}  // namespace moat
