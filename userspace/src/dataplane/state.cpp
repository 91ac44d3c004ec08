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

namespace {

constexpr int kRecordFormat = 1;

// nullopt when `path` does not exist; the parsed object otherwise, or why not.
Result<std::optional<json>> read_json_object(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return std::nullopt;
    return fail_errno("read " + path, errno);
  }
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    return fail(std::string("not JSON (") + e.what() + ")");
  }
  // value() would throw on a "format" of another type: check the type first.
  if (!j.is_object() || !j.contains("format") || !j["format"].is_number_integer() ||
      j["format"].get<int>() != kRecordFormat)
    return fail("not a record this moat wrote (format " + std::to_string(kRecordFormat) + ")");
  return j;
}

}  // namespace

std::string record_file(const std::string& instance) {
  return state_dir(instance) + "/record.json";
}
std::string intent_file(const std::string& instance) {
  return state_dir(instance) + "/intent.json";
}

std::string repair_hint(const std::string& instance) {
  return "`moat down --instance " + instance +
         "` removes everything the instance holds (found in the kernel, not in this file); "
         "then apply again";
}

Result<json> read_record(const std::string& instance) {
  auto j = read_json_object(record_file(instance));
  bool whole = j && (!*j || ((**j).contains("state") && (**j)["state"].is_object() &&
                             (**j).contains("inputs") && (**j).contains("options")));
  if (!j || !whole)
    return fail(record_file(instance) +
                " is damaged: " + (j ? std::string("parts are missing") : j.error().message()) +
                "; " + repair_hint(instance));
  return j->value_or(json::object());
}

Result<json> read_state(const std::string& instance) {
  auto rec = read_record(instance);
  if (!rec) return std::unexpected(rec.error());
  return rec->value("state", json::object());
}

Result<void> write_record(const std::string& instance, const json& state, const json& inputs,
                          const json& options) {
  if (auto r = mkdirs(state_dir(instance)); !r) return r;
  json rec = {
      {"format", kRecordFormat}, {"state", state}, {"inputs", inputs}, {"options", options}};
  return write_file_atomic(record_file(instance), rec.dump() + "\n");
}

Result<std::optional<json>> read_intent(const std::string& instance) {
  auto j = read_json_object(intent_file(instance));
  if (!j) return fail(intent_file(instance) + " is damaged: " + j.error().message());
  return *j;
}

Result<void> write_intent(const std::string& instance, const json& intent) {
  if (auto r = mkdirs(state_dir(instance)); !r) return r;
  json j = intent;
  j["format"] = kRecordFormat;
  return write_file_atomic(intent_file(instance), j.dump() + "\n");
}

Result<void> clear_intent(const std::string& instance) {
  if (unlink(intent_file(instance).c_str()) != 0 && errno != ENOENT)
    return fail_errno("remove " + intent_file(instance), errno);
  return {};
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
  // The rename itself is durable only once its directory is.
  std::string dir = path.substr(0, path.rfind('/'));
  if (Fd d(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); !d.ok() || fsync(d.get()) != 0)
    return fail_errno("sync " + dir, errno);
  return {};
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
  if (!ok && why)
    *why = "instance names are 1-40 characters of [A-Za-z0-9_-], not starting with '-'";
  return ok;
}

std::vector<std::string> instances() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& dir : {std::string(paths::kPinRoot), std::string(paths::kRunDir)})
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.is_directory() && e.path().filename() != "labs") names.insert(e.path().filename());
  return {names.begin(), names.end()};
}

}  // namespace moat
