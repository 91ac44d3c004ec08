// state.h - an instance's record on disk, /run/moat/<instance>/record.json:
// what the kernel cannot tell us (names of interfaces, ids given to networks
// and containers, which qdiscs moat created) and the inputs it was applied
// from, in one file, so the two can never disagree. Written only after the
// kernel holds what it says, always as a whole (temporary file,
// rename): a crash leaves the old record or the new one, never half.
//
// intent.json sits next to it while an apply runs: what that apply is about
// to write. A crash leaves it behind, and whoever takes the lock next
// settles it against the kernel (reconcile.h) before trusting the record.
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/inputs.h"
#include "plan/plan.h"
#include "policy/policy.h"
#include "util/mapped.h"
#include "util/result.h"
#include "util/spliced.h"
#include "util/windowed.h"

namespace moat {

std::string record_file(const std::string& instance);  // <state_dir>/record.json
std::string intent_file(const std::string& instance);  // <state_dir>/intent.json

// The whole record: {"format", "state", "inputs", "options"}; {} when the
// instance has none. Input files' texts are kept in blobs/ beside it, named
// by their content, and read back into "inputs" here; the rule table stays
// in its blob, and so do many identities' names (read_state() reads both). Fails when the file is
// not what write_record() writes, with the way to repair. `with_inputs` false: "inputs" keeps the
// blobs' names, unread (an apply needs only the state; a 10 MB policy file took 50 ms to read
// back).
Result<nlohmann::json> read_record(const std::string& instance, bool with_inputs = true);
// Its "state" part; {} when the instance has no record.
Result<nlohmann::json> read_state(const std::string& instance);
Result<void> write_record(const std::string& instance, const nlohmann::json& state,
                          const nlohmann::json& inputs, const nlohmann::json& options);
// A process that applies again and again (keep_kernel_handles()) keeps the
// record it last wrote, parsed after the write, for the next read of the
// same bytes: off an agent's path from its decision to the kernel. It also
// writes its intents with rewrite_file_atomic(), and clears an intent by
// moving it back to its temporary name, to be written over next.
void keep_written_records(bool on);
// The instances whose state directory may hold an intent left for the
// next write (keep_written_records()), and its removal (any left, the
// agent's or a killed agent's): only under the instance's lock, where no
// other writer has one of its own half written.
std::set<std::string> kept_state_file_instances();
void drop_kept_state_files(const std::string& instance);
// Records written by this process are numbered from 1. The number of the one
// the last read_record() found on disk with the very bytes this process
// wrote last (the kept one), 0 when it read other bytes or none; and the
// number the next write gets. The kept one is forgotten as soon as an
// intent is seen (read_intent(), even a damaged one): an interrupted apply
// may have changed the kernel without a record. So while a read finds the
// number an apply expected, every other moat writer since that apply has
// either recorded other bytes or left an intent: what the apply left in the
// kernel is there (moat never writes the same bytes without a full apply).
uint64_t last_read_record_serial();
uint64_t next_record_serial();

// The bytes of blob `name` (a record's or an intent's "blob").
Result<std::string> read_blob(const std::string& instance, const std::string& name);
// A blob kept as a patch of another (its base): base[at, at + cut) replaced
// by `bytes`.
struct BlobPatch {
  uint64_t base_size = 0, at = 0, cut = 0;
  std::string bytes;
};
std::string apply_patch(std::string_view base, const BlobPatch& p);
// A blob read in place (map_blob()): its file mapped, or a patch's base
// mapped with the patch's bytes over one range; never copied whole.
struct BlobText {
  MappedFile file;  // the blob, or a patch's base
  BlobPatch patch;  // a whole blob's: {size, 0, 0, ""}
  // Views of `file` and `patch`: taken again after a move.
  SplicedText text() const { return {file.view(), patch.at, patch.cut, patch.bytes}; }
};
Result<BlobText> map_blob(const std::string& instance, const std::string& name);
// A u64's bytes as the state files store it (host order, the size fields
// of patches and images).
std::string_view u64_view(const uint64_t& v);
// The patch of `was`'s base that gives `before` (what `was` gives) with its
// bytes [begin, begin + cut) replaced by `bytes`: one range covering both
// changes. `before` must be apply_patch(base, was); a whole blob is the
// patch {before.size(), 0, 0, ""} of itself.
BlobPatch merge_patch(const BlobPatch& was, const SplicedText& before, size_t begin, size_t cut,
                      std::string_view bytes);
// Where `magic` and then each of `sections` as a u64 size and its bytes
// (PolicyImage::bytes(), as PolicyImage::sections() gives them without
// putting them together) differ from `base`: per section that differs, a
// range of `base` and its replacement for its size and one for its bytes,
// in order; nullopt when `base` is not that magic and as many sections.
// apply_splices(base, them) gives the bytes of `sections`.
std::optional<std::vector<BlobPatch>> section_splices(std::string_view base, std::string_view magic,
                                                      std::span<const std::string_view> sections);
// The same, `base` read a window at a time (a file: util/windowed.h says why).
std::optional<std::vector<BlobPatch>> section_splices(const TextPieces& base,
                                                      std::string_view magic,
                                                      std::span<const std::string_view> sections);
std::string apply_splices(std::string_view base, const std::vector<BlobPatch>& splices);
// The name of a blob holding `before` (the bytes of blob `was`) with its
// bytes [begin, begin + cut) replaced by `bytes`: a patch of a few bytes
// when the change is small (the one-rule apply's 10 MB files), else the
// whole text's blob.
Result<std::string> put_blob_change(const std::string& instance, const std::string& was,
                                    const SplicedText& before, size_t begin, size_t cut,
                                    std::string_view bytes);

// A file's bytes; nullopt when it does not exist.
Result<std::optional<std::string>> read_whole(const std::string& path);
// The bytes of the file open as `fd`, from its start; `path` names it in
// errors.
Result<std::string> read_open_file(int fd, const std::string& path);

// `inputs` as a record keeps them (inputs_json() with every file's "text"
// put into a blob, named by "blob"), but files shorter than `inline_below`
// bytes, whose "text" stays: write_record() and write_intent() take inputs
// in either form. An apply stages them while it compiles.
Result<nlohmann::json> stage_inputs(const std::string& instance, const Inputs& inputs,
                                    size_t inline_below = 0);
// An intent keeps input files shorter than this in itself, not in blobs:
// a blob is a file more to create on the way to the kernel (a Docker
// agent's input is a few KiB), and the record puts them into blobs after.
inline constexpr size_t kInlineInputBytes = 64 * 1024;
// After an apply that failed before the kernel changed (its intent, if it
// wrote one while compiling, removed): the blobs no record or intent names
// are removed, and the state directory too when that leaves it empty (a
// first apply leaves nothing behind).
void drop_unrecorded_blobs(const std::string& instance);

// {"format", "inputs", "options", "interfaces", "netns_inode", "netns_path"};
// nullopt when no apply was interrupted.
Result<std::optional<nlohmann::json>> read_intent(const std::string& instance);
Result<void> write_intent(const std::string& instance, const nlohmann::json& intent);
Result<void> clear_intent(const std::string& instance);

// The rule table (rule id -> rule) as a record keeps it: a state's
// policy.rules_text, put by write_record() into a blob of its own
// (policy.rules_blob) that read_state() turns back into policy.rules rows
// ({policy, namespace, direction, index, action, text}).
std::string encode_rule_rows(const std::vector<RuleInfo>& rows);
Result<nlohmann::json> decode_rule_rows(std::string_view text);

// What the messages about a damaged record tell the user to do.
std::string repair_hint(const std::string& instance);

// `text` into `path` through `path`.tmp and rename(2): readers see the old
// or the new content, never a truncated file. Not fsynced: see state.cpp.
Result<void> write_file_atomic(const std::string& path, std::string_view text);
// The same of `parts` one after the other, without joining them first.
Result<void> write_file_atomic(const std::string& path,
                               std::initializer_list<std::string_view> parts);
// The same, for a file written again and again and cleared by moving it
// back to `path`.tmp (clear_intent() in keep mode): that file, when there,
// is written over in place (no inode made or freed), then renamed. A reader
// sees the old content or the new, as above, but one that keeps the file
// open across a clear and the next write may see the new bytes: only for
// files read under the instance's lock.
Result<void> rewrite_file_atomic(const std::string& path, std::string_view text);

// The ids a previous apply gave, so a changed file rewrites only what changed.
IdTable ids_from_state(const nlohmann::json& st);

}  // namespace moat
