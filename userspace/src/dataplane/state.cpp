#include "dataplane/state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

#include "dataplane/dataplane.h"
#include "dataplane/host.h"
#include "util/fd.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {

namespace {

// 2: a blob it names may be a patch ("p-..."), which a moat of format 1
// would read as the text itself and whose base it would prune. Records of
// 1 name whole blobs only, so this moat reads both; a moat of 1 refuses a
// record of 2 (`moat down` and apply again) rather than read it wrongly.
// 3: the identities' names may be in a blob ("identities_blob"), which a
// moat of 2 would carry over and prune.
constexpr int kRecordFormat = 3;
constexpr int kOldestRecordFormat = 1;

// The last record this process wrote, parsed from the very bytes it wrote
// once they were written (keep_written_records()): an agent's next apply
// finds those bytes in the file and takes the parsed record instead of
// parsing it again on its way to the kernel. Equal bytes parse alike, so
// what it gets is what a parse of the file would give.
struct KeptRecord {
  std::string path, text;
  json parsed;
  uint64_t serial = 0;
};
bool g_keep_records = false;
std::optional<KeptRecord> g_kept_record;
std::set<std::string> g_left_tmp;  // instances where a kept intent may be left as `.tmp`
uint64_t g_records_written = 0, g_last_read_serial = 0;

// nullopt when `path` does not exist; the parsed object otherwise, or why not.
// `serial`: the kept record's number when it was the one read, else 0.
Result<std::optional<json>> read_json_object(const std::string& path, uint64_t* serial = nullptr) {
  auto text = read_whole(path);
  if (!text) return std::unexpected(text.error());
  if (!*text) return std::nullopt;
  json j;
  if (serial) *serial = 0;
  if (g_kept_record && g_kept_record->path == path && g_kept_record->text == **text) {
    j = std::move(g_kept_record->parsed);
    if (serial) *serial = g_kept_record->serial;
    g_kept_record.reset();
  } else {
    if (g_kept_record && g_kept_record->path == path) g_kept_record.reset();  // rewritten
    try {
      j = json::parse(**text);
    } catch (const json::exception& e) {
      return fail(std::string("not JSON (") + e.what() + ")");
    }
  }
  // value() would throw on a "format" of another type: check the type first.
  if (!j.is_object() || !j.contains("format") || !j["format"].is_number_integer() ||
      j["format"].get<int>() < kOldestRecordFormat || j["format"].get<int>() > kRecordFormat)
    return fail("not a record this moat wrote (format " + std::to_string(kOldestRecordFormat) +
                " to " + std::to_string(kRecordFormat) + ")");
  return j;
}

// From the file's offset to its end: a pipe (`moat apply -f <(...)`) or a
// procfs file reads the same way.
Result<std::string> read_rest_of(int fd, const std::string& path) {
  struct stat st {};
  size_t want = fstat(fd, &st) == 0 && st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0;
  // Read straight into the string, neither zeroed first nor copied through
  // a buffer: a 10 MB file is touched once. A byte more than the size, so
  // that the read seeing the end needs no growth. A file of no size
  // (procfs: a sysctl read at an offset past 0 reads nothing) is read in
  // one go of 64 KiB.
  std::string out;
  size_t have = 0;
  for (size_t room = want ? want + 1 : 1 << 16;; room = std::max(room * 2, have + (1 << 16))) {
    int err = 0;
    out.resize_and_overwrite(room, [&](char* p, size_t n) {
      while (have < n) {
        ssize_t got = read(fd, p + have, n - have);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          err = got < 0 ? errno : 0;
          return have;
        }
        have += static_cast<size_t>(got);
      }
      return have;
    });
    if (err) return fail_errno("read " + path, err);
    if (have < room) break;  // the end was seen
  }
  return out;
}

}  // namespace

Result<std::optional<std::string>> read_whole(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) {
    if (errno == ENOENT) return std::nullopt;
    return fail_errno("read " + path, errno);
  }
  return read_rest_of(fd.get(), path);
}

Result<std::string> read_open_file(int fd, const std::string& path) {
  if (lseek(fd, 0, SEEK_SET) != 0) return fail_errno("read " + path, errno);
  return read_rest_of(fd, path);
}

namespace {

// ---- blobs: the large parts of a record, each in a file of its own ----------
//
// An input file's text and the rule table are most of a record (100,000
// rules: 30 MB); as JSON strings they were escaped, dumped and parsed again
// on every apply, and a changed rule wrote them all. They are kept as files
// named by their content instead, written once, shared by the record and
// the intent that name them: an unchanged input costs a comparison.

std::string blob_dir(const std::string& instance) { return state_dir(instance) + "/blobs"; }

// The name is a hash of the content and its size; a name already taken by
// other bytes (a collision) gets a suffix, so a name always means one content.
Result<std::string> put_blob(const std::string& instance, std::string_view bytes) {
  char base[40];
  std::snprintf(base, sizeof base, "%016zx-%zu", std::hash<std::string_view>{}(bytes),
                bytes.size());
  if (auto r = mkdirs(blob_dir(instance)); !r) return std::unexpected(r.error());
  for (int n = 0; n < 16; n++) {
    std::string name = n ? std::string(base) + "-" + std::to_string(n) : std::string(base);
    std::string path = blob_dir(instance) + "/" + name;
    auto have = read_whole(path);
    if (!have) return std::unexpected(have.error());
    if (*have && **have == bytes) return name;
    if (*have) continue;
    if (auto r = write_file_atomic(path, bytes); !r) return std::unexpected(r.error());
    return name;
  }
  return fail("no free name in " + blob_dir(instance) + " for " + base);
}

// ---- patches ------------------------------------------------------------------------------
//
// A blob named "p-<base>-<hash>-<size>" is a patch: blob <base>'s bytes
// with one range replaced. A one-rule change writes its 10 MB input file
// and 11 MB rule table this way, as the few bytes that changed (the whole
// blobs took a fifth of the change). Its base is always a whole blob, so a
// read is one whole blob and one splice; a patch of a patch is made anew
// from the base, covering both ranges, and a patch that grows past a
// sixteenth of its text is written whole instead. Content hashes and
// hex digits never start with "p", so no whole blob's name looks like one.

constexpr char kPatchMagic[8] = {'m', 'o', 'a', 't', 'p', 'c', 'h', '1'};

bool is_patch_name(std::string_view name) { return name.starts_with("p-"); }

// The base of patch `name`: its name without "p-" and the last two fields.
std::string patch_base(std::string_view name) {
  name.remove_prefix(2);
  for (int i = 0; i < 2; ++i) {
    size_t dash = name.rfind('-');
    name = name.substr(0, dash == std::string_view::npos ? 0 : dash);
  }
  return std::string(name);
}

std::string encode_patch(const BlobPatch& p) {
  std::string out(kPatchMagic, sizeof kPatchMagic);
  for (const uint64_t& v : {p.base_size, p.at, p.cut}) out += u64_view(v);
  out += p.bytes;
  return out;
}

Result<BlobPatch> decode_patch(std::string_view in) {
  BlobPatch p;
  if (in.size() < sizeof kPatchMagic + 24 || !in.starts_with({kPatchMagic, sizeof kPatchMagic}))
    return fail("not a patch");
  in.remove_prefix(sizeof kPatchMagic);
  for (uint64_t* v : {&p.base_size, &p.at, &p.cut}) {
    std::memcpy(v, in.data(), 8);
    in.remove_prefix(8);
  }
  if (p.at > p.base_size || p.cut > p.base_size - p.at) return fail("a patch out of its base");
  p.bytes = in;
  return p;
}

bool valid_blob_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name[0] != '.';
}

Result<std::string> read_blob_file(const std::string& instance, const std::string& name) {
  if (!valid_blob_name(name)) return fail("\"" + name + "\" is no blob name");
  auto have = read_whole(blob_dir(instance) + "/" + name);
  if (!have) return std::unexpected(have.error());
  if (!*have) return fail(blob_dir(instance) + "/" + name + " is missing");
  return std::move(**have);
}

Result<BlobPatch> read_patch(const std::string& instance, const std::string& name) {
  auto file = read_blob_file(instance, name);
  if (!file) return std::unexpected(file.error());
  auto p = decode_patch(*file);
  if (!p) return fail(blob_dir(instance) + "/" + name + ": " + p.error().message());
  return p;
}

// The file of blob `name` mapped.
Result<MappedFile> map_blob_file(const std::string& instance, const std::string& name) {
  if (!valid_blob_name(name)) return fail("\"" + name + "\" is no blob name");
  auto m = MappedFile::open(blob_dir(instance) + "/" + name);
  if (!m) return std::unexpected(m.error());
  if (!*m) return fail(blob_dir(instance) + "/" + name + " is missing");
  return std::move(**m);
}

// Input files' texts out of `inputs` into blobs ("text" -> "blob"), but
// those shorter than `inline_below` bytes.
Result<json> inputs_to_blobs(const std::string& instance, const json& inputs,
                             size_t inline_below = 0) {
  json out = json::object();
  for (const auto& [k, v] : inputs.items())
    if (k != "files") out[k] = v;
  out["files"] = json::array();
  for (const auto& f : inputs.value("files", json::array())) {
    json row = f;
    if (auto t = row.find("text"); t != row.end() && t->is_string() &&
                                   t->get_ref<const std::string&>().size() >= inline_below) {
      auto name = put_blob(instance, t->get_ref<const std::string&>());
      if (!name) return std::unexpected(name.error());
      row.erase("text");
      row["blob"] = *name;
    }
    out["files"].push_back(std::move(row));
  }
  return out;
}

// The other way, in place; records written before blobs hold "text" already.
Result<void> inputs_from_blobs(const std::string& instance, json& inputs) {
  if (!inputs.is_object() || !inputs.contains("files") || !inputs["files"].is_array()) return {};
  for (auto& f : inputs["files"]) {
    if (!f.is_object() || !f.contains("blob")) continue;
    if (!f["blob"].is_string()) return fail("a file's blob is not a name");
    auto text = read_blob(instance, f["blob"].get<std::string>());
    if (!text) return std::unexpected(text.error());
    f["text"] = std::move(*text);
    f.erase("blob");
  }
  return {};
}

void blob_names(const json& j, std::set<std::string>& names) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if ((k == "blob" || k == "rules_blob" || k == "identities_blob") && v.is_string()) {
        names.insert(v.get<std::string>());
        if (is_patch_name(v.get_ref<const std::string&>()))
          names.insert(patch_base(v.get_ref<const std::string&>()));
      } else
        blob_names(v, names);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) blob_names(v, names);
  }
}

// Blobs neither the record nor the intent names any more: left by earlier
// applies. A failure leaves a file behind, never a record without its blob.
void prune_blobs(const std::string& instance, const json& record) {
  std::set<std::string> keep;
  blob_names(record, keep);
  if (auto intent = read_json_object(intent_file(instance)); intent && *intent)
    blob_names(**intent, keep);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(blob_dir(instance), ec)) {
    std::string name = e.path().filename();
    if (!keep.contains(name)) fs::remove(e.path(), ec);
  }
}

// Rule rows: one line each, fields separated by tabs; backslash escapes
// a tab, a newline or itself in a field.
void put_field(std::string& out, std::string_view f) {
  for (char c : f) {
    if (c == '\\' || c == '\t' || c == '\n') {
      out += '\\';
      out += c == '\t' ? 't' : c == '\n' ? 'n' : '\\';
    } else {
      out += c;
    }
  }
}

std::vector<std::string> split_fields(std::string_view line) {
  std::vector<std::string> fields(1);
  for (size_t i = 0; i < line.size(); i++) {
    char c = line[i];
    if (c == '\t') {
      fields.emplace_back();
    } else if (c == '\\' && i + 1 < line.size()) {
      char e = line[++i];
      fields.back() += e == 't' ? '\t' : e == 'n' ? '\n' : e;
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

// state.policy: "rules_text" (as written by encode_rule_rows) -> "rules_blob",
// and many identities' names -> "identities_blob" (their JSON text). Kept
// out of the record, neither is parsed or written again by a command that
// only reads the record's state and writes it back (a one-rule change:
// 0.5 ms of its 100,000 rules' record, README stop 59). A few names stay
// inline: a Docker agent's sync would otherwise make a blob (a file, and
// the old one's removal) for each container started.
constexpr size_t kInlineIdentitiesBytes = 4096;
Result<json> state_to_blobs(const std::string& instance, const json& state) {
  auto pol = state.find("policy");
  if (pol == state.end() || !pol->is_object()) return state;
  auto ids = pol->find("identities");
  std::string ids_text;
  if (ids != pol->end() && ids->is_object()) ids_text = ids->dump();
  if (!pol->contains("rules_text") && ids_text.size() < kInlineIdentitiesBytes) return state;
  json out = state;
  json& p = out["policy"];
  if (p.contains("rules_text")) {
    auto name = put_blob(instance, p["rules_text"].get_ref<const std::string&>());
    if (!name) return std::unexpected(name.error());
    p.erase("rules_text");
    p["rules_blob"] = *name;
  }
  if (ids_text.size() >= kInlineIdentitiesBytes) {
    auto name = put_blob(instance, ids_text);
    if (!name) return std::unexpected(name.error());
    p.erase("identities");
    p["identities_blob"] = *name;
  }
  return out;
}

Result<void> state_from_blobs(const std::string& instance, json& state) {
  if (!state.is_object() || !state.contains("policy") || !state["policy"].is_object()) return {};
  json& p = state["policy"];
  // Names for display only: a blob lost or damaged shows none, and the
  // record stays good for everything else.
  if (p.contains("identities_blob")) {
    json ids = json::object();
    if (p["identities_blob"].is_string())
      if (auto text = read_blob(instance, p["identities_blob"].get<std::string>()))
        if (json got = json::parse(*text, nullptr, false); got.is_object()) ids = std::move(got);
    p["identities"] = std::move(ids);
    p.erase("identities_blob");
  }
  if (!p.contains("rules_blob")) return {};
  if (!p["rules_blob"].is_string()) return fail("the rule table's blob is not a name");
  auto text = read_blob(instance, p["rules_blob"].get<std::string>());
  if (!text) return std::unexpected(text.error());
  auto rows = decode_rule_rows(*text);
  if (!rows) return std::unexpected(rows.error());
  p["rules"] = std::move(*rows);
  p.erase("rules_blob");
  return {};
}

}  // namespace

Result<BlobText> map_blob(const std::string& instance, const std::string& name) {
  BlobText b;
  if (!is_patch_name(name)) {
    auto f = map_blob_file(instance, name);
    if (!f) return std::unexpected(f.error());
    b.file = std::move(*f);
    b.patch.base_size = b.file.view().size();
    return b;
  }
  auto p = read_patch(instance, name);
  if (!p) return std::unexpected(p.error());
  const std::string base_name = patch_base(name);
  if (is_patch_name(base_name)) return fail("patch " + name + " has a patch for its base");
  auto f = map_blob_file(instance, base_name);
  if (!f) return std::unexpected(f.error());
  if (f->view().size() != p->base_size)
    return fail("patch " + name + " does not fit its base " + base_name);
  b.file = std::move(*f);
  b.patch = std::move(*p);
  return b;
}

Result<std::string> read_blob(const std::string& instance, const std::string& name) {
  // Copied once, from the mapping, the patch's bytes in place.
  auto b = map_blob(instance, name);
  if (!b) return std::unexpected(b.error());
  return b->text().str();
}

std::string_view u64_view(const uint64_t& v) {
  return {reinterpret_cast<const char*>(&v), sizeof v};
}

std::string apply_patch(std::string_view base, const BlobPatch& p) {
  return apply_splices(base, {p});
}

std::optional<std::vector<BlobPatch>> section_splices(std::string_view base, std::string_view magic,
                                                      std::span<const std::string_view> sections) {
  return section_splices(TextPieces::memory(base), magic, sections);
}

std::optional<std::vector<BlobPatch>> section_splices(const TextPieces& base,
                                                      std::string_view magic,
                                                      std::span<const std::string_view> sections) {
  const size_t size = base.size();
  if (!base.starts_with(magic)) return std::nullopt;
  std::vector<BlobPatch> out;
  size_t a = magic.size();
  for (std::string_view y : sections) {
    uint64_t na = 0;
    const uint64_t nb = y.size();
    if (size - a < sizeof na || !base.read(a, sizeof na, reinterpret_cast<char*>(&na)))
      return std::nullopt;
    a += sizeof na;
    if (na > size - a) return std::nullopt;
    if (na != nb)  // the size in front of it
      out.push_back({size, a - sizeof na, sizeof na, std::string(u64_view(nb))});
    const auto same = shared_ends(base.sub(a, na), TextPieces::memory(y));
    if (!same) return std::nullopt;
    if (na != nb || same->prefix != na) {
      const size_t pre = same->prefix, suf = same->suffix;
      out.push_back({size, a + pre, na - pre - suf, std::string(y.substr(pre, nb - pre - suf))});
    }
    a += na;
  }
  if (a != size) return std::nullopt;
  return out;
}

std::string apply_splices(std::string_view base, const std::vector<BlobPatch>& splices) {
  std::string out;
  size_t grow = 0;
  for (const BlobPatch& p : splices) grow += p.bytes.size();
  out.reserve(base.size() + grow);
  size_t at = 0;
  for (const BlobPatch& p : splices) {
    out.append(base.substr(at, p.at - at));
    out += p.bytes;
    at = p.at + p.cut;
  }
  out.append(base.substr(at));
  return out;
}

BlobPatch merge_patch(const BlobPatch& was, const SplicedText& before, size_t begin, size_t cut,
                      std::string_view bytes) {
  // `after`[from, to): the text after the change, not made whole.
  auto after = [&](size_t from, size_t to) {
    std::string out;
    out.reserve(to - from);
    // `n` bytes lie at `at` in after: `bytes`, or `before`[b, b + n).
    auto take = [&](size_t at, size_t b, size_t n, bool changed) {
      const size_t lo = std::max(from, at), hi = std::min(to, at + n);
      if (lo >= hi) return;
      if (changed)
        out.append(bytes.substr(lo - at, hi - lo));
      else
        out += before.substr(b + (lo - at), hi - lo);
    };
    take(0, 0, begin, false);
    take(begin, 0, bytes.size(), true);
    take(begin + bytes.size(), begin + cut, before.size() - begin - cut, false);
    return out;
  };
  // A patch that changes nothing has no range to cover.
  if (was.cut == 0 && was.bytes.empty())
    return {before.size(), begin, cut, after(begin, begin + bytes.size())};
  // Both ranges as one: from the first byte either touches to the last, in
  // `before` (end_b), the base (end_base) and after the change (end_a).
  const size_t from = std::min<size_t>(was.at, begin);
  const size_t end_b = std::max<size_t>(was.at + was.bytes.size(), begin + cut);
  const size_t end_base = end_b - was.bytes.size() + was.cut;
  const size_t end_a = end_b - cut + bytes.size();
  return {was.base_size, from, end_base - from, after(from, end_a)};
}

Result<std::string> put_blob_change(const std::string& instance, const std::string& was,
                                    const SplicedText& before, size_t begin, size_t cut,
                                    std::string_view bytes) {
  if (begin > before.size() || cut > before.size() - begin) return fail("a change out of its text");
  const size_t size = before.size() - cut + bytes.size();
  auto whole = [&] {
    std::string text = before.str();
    text.replace(begin, cut, bytes);
    return put_blob(instance, text);
  };
  // The patch `was` already is, in its base's terms; none: `before` is its base.
  BlobPatch old{before.size(), 0, 0, {}};
  std::string base = was;
  if (is_patch_name(was)) {
    auto p = read_patch(instance, was);
    if (!p) return std::unexpected(p.error());
    if (p->base_size - p->cut + p->bytes.size() != before.size())
      return fail("patch " + was + " is not of the text it is said to be");
    old = std::move(*p);
    base = patch_base(was);
  }
  const BlobPatch p = merge_patch(old, before, begin, cut, bytes);
  if (!valid_blob_name(base) || p.bytes.size() > std::max<size_t>(size / 16, 4096)) return whole();
  const std::string file = encode_patch(p);
  char tail[48];
  std::snprintf(tail, sizeof tail, "-%016zx-%zu", std::hash<std::string_view>{}(file), size);
  const std::string name = "p-" + base + tail;
  const std::string path = blob_dir(instance) + "/" + name;
  auto have = read_whole(path);
  if (!have) return std::unexpected(have.error());
  if (*have && **have == file) return name;
  // Taken by other bytes (a hash collision): whole, under a name of its own.
  if (*have) return whole();
  if (auto r = write_file_atomic(path, file); !r) return std::unexpected(r.error());
  return name;
}

std::string encode_rule_rows(const std::vector<RuleInfo>& rows) {
  // Reserved to the byte (escapes aside): growing a 1 MB table by doubling
  // left a 2 MB block, fresh memory that costs here as much as the work.
  size_t bytes = 0;
  for (const auto& r : rows)
    bytes += r.policy.size() + r.ns.size() + r.direction.size() + r.action.size() + r.text.size() +
             5 + std::to_string(r.rule_index).size() + 1;
  std::string out;
  out.reserve(bytes);
  for (const auto& r : rows) {
    for (const std::string* f : {&r.policy, &r.ns, &r.direction, &r.action, &r.text}) {
      put_field(out, *f);
      out += '\t';
    }
    out += std::to_string(r.rule_index);
    out += '\n';
  }
  return out;
}

Result<json> decode_rule_rows(std::string_view text) {
  json rows = json::array();
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return fail("the rule table's last line is cut");
    auto f = split_fields(text.substr(0, nl));
    text.remove_prefix(nl + 1);
    if (f.size() != 6)
      return fail("a rule table line has " + std::to_string(f.size()) + " fields, not 6");
    int index = 0;
    try {
      index = std::stoi(f[5]);
    } catch (const std::exception&) {
      return fail("a rule table line has no index");
    }
    rows.push_back({{"policy", f[0]},
                    {"namespace", f[1]},
                    {"direction", f[2]},
                    {"index", index},
                    {"action", f[3]},
                    {"text", f[4]}});
  }
  return rows;
}

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

Result<json> read_record(const std::string& instance, bool with_inputs) {
  g_last_read_serial = 0;
  uint64_t serial = 0;
  auto j = read_json_object(record_file(instance), &serial);
  bool whole = j && (!*j || ((**j).contains("state") && (**j)["state"].is_object() &&
                             (**j).contains("inputs") && (**j).contains("options")));
  Result<void> blobs;
  if (j && whole && *j && with_inputs) blobs = inputs_from_blobs(instance, (**j)["inputs"]);
  if (!j || !whole || !blobs)
    return fail(record_file(instance) + " is damaged: " +
                (!j      ? j.error().message()
                 : blobs ? std::string("parts are missing")
                         : blobs.error().message()) +
                "; " + repair_hint(instance));
  g_last_read_serial = serial;
  // Moved out, not copied: a copy of a Docker agent's record was 0.1 ms of
  // its way to the kernel.
  return std::move(*j).value_or(json::object());
}

Result<json> read_state(const std::string& instance) {
  auto rec = read_record(instance);
  if (!rec) return std::unexpected(rec.error());
  json st = rec->value("state", json::object());
  if (auto r = state_from_blobs(instance, st); !r)
    return fail(record_file(instance) + " is damaged: " + r.error().message() + "; " +
                repair_hint(instance));
  return st;
}

namespace {

// An agent's intents (keep_written_records()): each written over the inode
// its last clear_intent() left as `intent.json.tmp`, there until the agent
// stops. Making and freeing an inode per intent on ext4 (/run on this VM)
// waits on dockerd's own writes while a container starts, and the intent
// is on the agent's way to the kernel. Only the intent: it is read under
// the lock alone, while the record is also read without it (`moat status`,
// the CNI plugin's STATUS), and a reader holding it open across two writes
// would see the second written into the file it reads.
Result<void> write_kept_or_not(const std::string& instance, const std::string& path,
                               std::string_view text) {
  if (!g_keep_records) return write_file_atomic(path, text);
  g_left_tmp.insert(instance);  // a failed write may leave one as well
  return rewrite_file_atomic(path, text);
}

}  // namespace

Result<void> write_record(const std::string& instance, const json& state, const json& inputs,
                          const json& options) {
  if (auto r = mkdirs(state_dir(instance)); !r) return r;
  auto st = state_to_blobs(instance, state);
  if (!st) return std::unexpected(st.error());
  auto in = inputs_to_blobs(instance, inputs);
  if (!in) return std::unexpected(in.error());
  json rec = {{"format", kRecordFormat}, {"state", *st}, {"inputs", *in}, {"options", options}};
  std::string text = rec.dump() + "\n";
  if (auto r = write_file_atomic(record_file(instance), text); !r) return r;
  prune_blobs(instance, rec);
  g_kept_record.reset();
  ++g_records_written;
  if (g_keep_records)
    g_kept_record = KeptRecord{record_file(instance), text, json::parse(text), g_records_written};
  return {};
}

void keep_written_records(bool on) {
  g_keep_records = on;
  if (!on) g_kept_record.reset();
}

std::set<std::string> kept_state_file_instances() { return g_left_tmp; }

void drop_kept_state_files(const std::string& instance) {
  g_left_tmp.erase(instance);
  unlink((intent_file(instance) + ".tmp").c_str());
  rmdir(state_dir(instance).c_str());  // only when empty: a failed first apply's
}

uint64_t last_read_record_serial() { return g_last_read_serial; }
uint64_t next_record_serial() { return g_records_written + 1; }

Result<std::optional<json>> read_intent(const std::string& instance) {
  auto j = read_json_object(intent_file(instance));
  // An intent, readable or not, is an apply that may have changed the
  // kernel after the record was written: the record no longer vouches for
  // the kernel (last_read_record_serial()), even if it is the same file.
  if (!j || *j) g_kept_record.reset();
  Result<void> blobs;
  if (j && *j && (**j).contains("inputs")) blobs = inputs_from_blobs(instance, (**j)["inputs"]);
  if (!j || !blobs)
    return fail(intent_file(instance) +
                " is damaged: " + (j ? blobs.error().message() : j.error().message()));
  return *j;
}

Result<json> stage_inputs(const std::string& instance, const Inputs& inputs, size_t inline_below) {
  if (auto r = mkdirs(state_dir(instance)); !r) return std::unexpected(r.error());
  Inputs names;  // large texts are not copied: they go to blobs
  names.replace_policies = inputs.replace_policies;
  names.producer = inputs.producer;
  for (const auto& f : inputs.files)
    names.files.push_back({f.name, f.text.size() < inline_below ? f.text : ""});
  json j = inputs_json(names);
  for (size_t i = 0; i < inputs.files.size(); i++) {
    if (inputs.files[i].text.size() < inline_below) continue;
    auto name = put_blob(instance, inputs.files[i].text);
    if (!name) return std::unexpected(name.error());
    j["files"][i].erase("text");
    j["files"][i]["blob"] = *name;
  }
  return j;
}

void drop_unrecorded_blobs(const std::string& instance) {
  auto rec = read_record(instance, false);
  if (!rec) return;  // damaged: left as it is for the repair the error names
  prune_blobs(instance, *rec);
  // An agent's kept intent file (or one a killed agent left) would keep a
  // failed first apply's directory.
  drop_kept_state_files(instance);
  std::error_code ec;
  fs::remove(blob_dir(instance), ec);  // each only when empty
  fs::remove(state_dir(instance), ec);
}

Result<void> write_intent(const std::string& instance, const json& intent) {
  if (auto r = mkdirs(state_dir(instance)); !r) return r;
  json j = intent;
  if (j.contains("inputs")) {
    auto in = inputs_to_blobs(instance, j["inputs"], kInlineInputBytes);
    if (!in) return std::unexpected(in.error());
    j["inputs"] = std::move(*in);
  }
  j["format"] = kRecordFormat;
  return write_kept_or_not(instance, intent_file(instance), j.dump() + "\n");
}

Result<void> clear_intent(const std::string& instance) {
  const std::string path = intent_file(instance);
  if (g_keep_records) {
    // Gone from its name as by unlink(2), its inode kept for the next intent.
    if (rename(path.c_str(), (path + ".tmp").c_str()) == 0) {
      g_left_tmp.insert(instance);
      return {};
    }
    if (errno == ENOENT) return {};
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return fail_errno("remove " + path, errno);
  return {};
}

Result<void> write_file_atomic(const std::string& path, std::string_view text) {
  return write_file_atomic(path, {text});
}

Result<void> write_file_atomic(const std::string& path,
                               std::initializer_list<std::string_view> parts) {
  std::string tmp = path + ".tmp";
  Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.ok()) return fail_errno("create " + tmp, errno);
  // All parts in one call: where the page cache takes a write in folios as
  // large as its length and place allow (ext4 here), a 10-byte part first
  // left the next 2 MiB of the policy image in 4 KiB pages, and a mapping
  // of them pays a page fault each where a 2 MiB folio is mapped at once
  // (PolicyImage::from_mapping() reads the image through its mapping).
  std::vector<iovec> iov;
  for (std::string_view text : parts)
    if (!text.empty()) iov.push_back({const_cast<char*>(text.data()), text.size()});
  for (size_t at = 0; at < iov.size();) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - at, IOV_MAX));
    const ssize_t n = writev(fd.get(), iov.data() + at, count);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("write " + tmp, errno);
    if (n == 0) return fail("write " + tmp + ": nothing written");
    auto done = static_cast<size_t>(n);
    while (at < iov.size() && done >= iov[at].iov_len) done -= iov[at++].iov_len;
    if (done > 0) {  // a part written in part: its rest next
      iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + done;
      iov[at].iov_len -= done;
    }
  }
  fd.reset();
  // No fsync: what these files describe (pinned maps and programs, filters,
  // namespaces) does not outlive the machine's crash that fsync guards
  // against, while a process killed at any point leaves the old file or the
  // new one in the page cache, never half. Each fsync cost 3-4 ms where /run
  // is on a disk (this VM), a dozen per apply: most of a Docker agent sync.
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail_errno("replace " + path, errno);
  return {};
}

Result<void> rewrite_file_atomic(const std::string& path, std::string_view text) {
  std::string tmp = path + ".tmp";
  Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (!fd.ok()) return fail_errno("create " + tmp, errno);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return fail_errno("stat " + tmp, errno);
  for (size_t done = 0; done < text.size();) {
    ssize_t n = pwrite(fd.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("write " + tmp, errno);
    done += static_cast<size_t>(n);
  }
  if (static_cast<size_t>(st.st_size) > text.size() &&
      ftruncate(fd.get(), static_cast<off_t>(text.size())) != 0)
    return fail_errno("truncate " + tmp, errno);
  fd.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail_errno("replace " + path, errno);
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
