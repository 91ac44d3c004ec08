#include "dataplane/reconcile.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <mutex>
#include <set>

#include "dataplane/apply.h"
#include "dataplane/failpoint.h"
#include "dataplane/host.h"
#include "dataplane/lock.h"
#include "dataplane/policy_gen.h"
#include "dataplane/programs.h"
#include "dataplane/skeleton.h"
#include "dataplane/state.h"
#include "dataplane/sweep.h"
#include "dataplane/tc.h"
#include "policy/edit.h"
#include "policy/read.h"
#include "util/windowed.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace moat {
namespace {

json options_json(const ReconcileOptions& opt) {
  return {{"ports_held_by_runtime", opt.ports_held_by_runtime}};
}

ReconcileOptions options_from_json(const json& j) {
  ReconcileOptions opt;
  opt.ports_held_by_runtime = j.value("ports_held_by_runtime", false);
  return opt;
}

// Every host-side interface a config names: what an interrupted apply of it
// may have attached to.
json interfaces_of(const Config& cfg) {
  std::set<std::string> names(cfg.uplinks.begin(), cfg.uplinks.end());
  for (const auto& n : cfg.networks)
    if (!n.bridge.empty()) names.insert(n.bridge);
  for (const auto& c : cfg.containers)
    for (const auto& a : c.networks)
      if (!a.host_interface.empty()) names.insert(a.host_interface);
  return names;
}

uint32_t kernel_rev(const std::string& instance) {
  if (!fs::exists(pin_dir(instance))) return 0;
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance), kPolicyMaps);
  if (!skel) return 0;
  return read_policy_rev(*skel->get()).value_or(0);
}

// A thread that runs jobs one after the other, kept by a process that
// reconciles again and again (keep_kernel_handles()) for the intent each
// apply writes beside its compile: starting a thread per apply cost both
// CPUs on the Docker agent's way to the kernel.
class JobThread {
 public:
  JobThread() : thread_([this] { loop(); }) {}
  ~JobThread() {
    {
      std::lock_guard<std::mutex> hold(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  std::future<Result<void>> run(std::function<Result<void>()> job) {
    std::packaged_task<Result<void>()> task(std::move(job));
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> hold(mu_);
      jobs_.push_back(std::move(task));
    }
    cv_.notify_one();
    return done;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> hold(mu_);
    for (;;) {
      cv_.wait(hold, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and nothing left to run
      auto task = std::move(jobs_.front());
      jobs_.pop_front();
      hold.unlock();
      task();
      hold.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<Result<void>()>> jobs_;
  bool stop_ = false;
  std::thread thread_;  // last: started once the rest is made
};
std::optional<JobThread> g_job_thread;

// `job` on another CPU: the kept thread, else one of its own.
std::future<Result<void>> beside(std::function<Result<void>()> job) {
  if (g_job_thread) return g_job_thread->run(std::move(job));
  return std::async(std::launch::async, std::move(job));
}

// The inputs as the record saves them (inputs_json() or stage_inputs()),
// asked for once the kernel holds what they made.
using RecordInputs = std::function<Result<json>()>;

// The policy image (PolicyImage) saved with a record, for reconcile_one_rule().
std::string image_file(const std::string& instance) {
  return state_dir(instance) + "/policy.image";
}

// Where each compiled policy came from: its file, its place there, and
// whether it is a NetworkPolicy (a rule's span names all three).
json policy_places(const Config& cfg) {
  json places = json::array();
  for (const Policy& p : cfg.policies) places.push_back({p.source, p.path, p.kubernetes});
  return places;
}

// The image beside the record just written, tagged with what vouches for
// it: the record's policy revision and inputs. A record written by anything
// else (an agent, a settle, an apply that made no image) does not match the
// tag, and the image is not used.
Result<std::string> image_tag(const std::string& instance, const json& places) {
  auto rec = read_record(instance, false);
  if (!rec) return std::unexpected(rec.error());
  const json tag = {{"policy_rev", rec->value("state", json::object()).value("policy_rev", 0u)},
                    {"inputs", rec->value("inputs", json::object())},
                    {"policies", places}};
  return tag.dump();
}

// A one-rule apply's image as the ranges where it differs from the saved
// one (section_splices()), beside it: writing the whole 8 MB image again
// was 4-7 ms of a 100,000-rule change. It holds its own tag and the saved
// image's, so that it applies to that image only.
std::string image_patch_file(const std::string& instance) {
  return state_dir(instance) + "/policy.image.patch";
}
constexpr char kImagePatchMagic[8] = {'m', 'o', 'a', 't', 'i', 'p', 't', '1'};

Result<void> save_policy_image(const std::string& instance, const json& places,
                               std::string_view image) {
  auto t = image_tag(instance, places);
  if (!t) return std::unexpected(t.error());
  // A patch of the image written over would be of another image.
  if (unlink(image_patch_file(instance).c_str()) != 0 && errno != ENOENT)
    return fail_errno("remove " + image_patch_file(instance), errno);
  // The file: the tag's size, the tag, the image's size, the image, and
  // zeros after a large one. It is read through its mapping
  // (PolicyImage::from_mapping()): blanks after the tag (JSON allows them)
  // put the image at a multiple of 8, so that every section but the last
  // two is aligned for its elements where it lies. Where the page cache
  // keeps a file in folios as large as its writes (ext4 here; tmpfs only
  // with huge pages), the zeros to a multiple of 2 MiB keep the image in
  // 2 MiB folios to its end, each mapped at once. In 4 KiB pages each page
  // costs a fault and, on this VM, more on its first touch: the last 1.8 MB
  // of a 100,000-rule image, most of its entries, took as long to read as
  // the rest. A small image is not padded: up to 2 MiB for nothing.
  constexpr size_t kFolio = size_t{2} << 20;
  t->append((8 - t->size() % 8) % 8, ' ');
  const uint64_t n = t->size(), size = image.size();
  const size_t end = 2 * sizeof(uint64_t) + n + size;
  const std::string zeros(size < kFolio ? 0 : (kFolio - end % kFolio) % kFolio, '\0');
  if (auto r =
          write_file_atomic(image_file(instance), {u64_view(n), *t, u64_view(size), image, zeros});
      !r)
    return r;
  // Read once now, a byte of each 4 KiB: on this VM the first read of a
  // page just written costs about 1 us, whoever reads it, once. Paid here
  // (2 ms at 100,000 rules), it is not the next one-rule change's: its
  // read of the image took 2.5-4.0 ms instead of 0.8-1.2 (README, stop 59).
  // Small images are read in a moment either way.
  if (size >= kFolio)
    if (auto m = MappedFile::open(image_file(instance)); m && *m) (*m)->touch();
  return {};
}

// apply(), then the record of what the kernel holds and of what it came from.
// `prev_state`: the record's state part if already read (taken), `state`:
// where the new one goes (both optional).
Result<ApplyReport> apply_and_record(const std::string& instance, const Config& cfg,
                                     const RecordInputs& inputs, const ReconcileOptions& opt,
                                     std::function<Result<void>()> before_kernel = {},
                                     json* prev_state = nullptr, json* state_out = nullptr) {
  json own;
  json& state = state_out ? *state_out : own;
  std::string image;
  // Joined on the way out, whatever happens: it writes the idle slot while
  // the record and the image are written, and nothing may write a
  // generation meanwhile (an undo after a failure would).
  std::jthread mirror;
  auto rep =
      apply(instance, cfg, opt.dry_run, opt.ports_held_by_runtime,
            {&state, std::move(before_kernel), prev_state, opt.known_ifindex, opt.clsact_made,
             opt.keep_policy_image ? &image : nullptr, opt.keep_policy_image ? &mirror : nullptr});
  if (!rep || opt.dry_run) return rep;
  PhaseClock clock(&*rep);
  auto in = inputs();
  if (!in) return std::unexpected(in.error());
  if (auto r = write_record(instance, state, *in, options_json(opt)); !r)
    return std::unexpected(r.error());
  clock.lap("record");
  if (auto r = failpoint("record"); !r) return std::unexpected(r.error());
  // Not saved, the image left from before does not match the record's tag.
  if (opt.keep_policy_image && !image.empty()) {
    (void)save_policy_image(instance, policy_places(cfg), image);
    clock.lap("policy-image");
  }
  return rep;
}

// The same from saved inputs, which are read again as on the day they were
// applied.
Result<ApplyReport> reapply(const std::string& instance, const json& inputs_j, const json& opt_j) {
  std::string why;
  auto inputs = inputs_from_json(inputs_j, &why);
  if (!inputs) return fail("saved inputs are unreadable: " + why);
  auto loaded = load_inputs(*inputs);
  if (!loaded.config) return fail(problems_message(loaded.problems, loaded.file));
  return apply_and_record(
      instance, *loaded.config, [&]() -> Result<json> { return inputs_json(*inputs); },
      options_from_json(opt_j));
}

// Our filters on interfaces that an apply may have attached to (`touched`)
// and the record does not name: left by an apply that was then undone.
// `saved`: the state part just saved, if at hand (else it is read).
Result<void> detach_unnamed(const std::string& instance, const json& touched,
                            const json* saved = nullptr) {
  json read;
  if (!saved) {
    auto st = read_state(instance);
    if (!st) return std::unexpected(st.error());
    read = std::move(*st);
    saved = &read;
  }
  std::set<std::string> named;
  for (const char* list : {"interfaces", "uplinks", "bridges"})
    for (const auto& r : saved->value(list, json::array())) named.insert(r.value("name", ""));
  std::vector<std::string> unnamed;
  for (const auto& name : touched)
    if (name.is_string() && !named.contains(name.get<std::string>())) unnamed.push_back(name);
  if (unnamed.empty()) return {};  // the usual case: no need to look for our programs
  std::set<uint32_t> ours = instance_prog_ids(instance);
  for (const auto& name : unnamed)
    if (auto r = detach(name, false, ours); !r) return r;
  return {};
}

// Enters the namespace an intent was written in, when that is not this one.
class NetnsVisit {
 public:
  static Result<NetnsVisit> to(const json& intent) {
    NetnsVisit v;
    if (intent.value("netns_inode", uint64_t{0}) == current_netns_inode()) return v;
    std::string path = intent.value("netns_path", std::string());
    if (path.empty() || !fs::exists(path))
      return fail("the interrupted apply ran in an unnamed network namespace; run moat there");
    v.home_ = Fd(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!v.home_.ok()) return fail_errno("open the current network namespace", errno);
    if (auto r = enter_netns(path); !r) return std::unexpected(r.error());
    return v;
  }
  NetnsVisit(NetnsVisit&&) noexcept = default;
  ~NetnsVisit() {
    if (home_.ok()) setns(home_.get(), CLONE_NEWNET);
  }

 private:
  NetnsVisit() = default;
  Fd home_;
};

// An apply that did not finish left its intent. The kernel decides which
// side wins: if its policy revision moved past the record's, the new policy
// is already enforced and the apply is finished from the intent (forward);
// otherwise, or when finishing fails, the recorded inputs are applied again
// (back), which also undoes the interrupted apply's other writes. Filters
// it attached to interfaces that neither side names are removed. Without a
// record to go back to, the instance is removed.
Result<void> settle_locked(const std::string& instance, bool prefer_back) {
  auto intent = read_intent(instance);
  if (!intent) return std::unexpected(intent.error());
  if (!*intent) return {};
  const json& in = **intent;
  auto rec = read_record(instance);
  if (!rec) return std::unexpected(rec.error());
  auto visit = NetnsVisit::to(in);
  if (!visit) return std::unexpected(visit.error());

  uint32_t rec_rev = rec->value("state", json::object()).value("policy_rev", 0u);
  bool forward = !prefer_back && kernel_rev(instance) != rec_rev;
  Result<ApplyReport> done = fail("");
  if (forward) {
    done = reapply(instance, in.at("inputs"), in.value("options", json::object()));
    if (!done)
      std::fprintf(stderr,
                   "moat: instance %s: finishing the interrupted apply failed (%s); "
                   "going back to the recorded inputs\n",
                   instance.c_str(), done.error().message().c_str());
  }
  if (!done && !rec->empty()) {
    done = reapply(instance, (*rec)["inputs"], (*rec)["options"]);
    if (!done)
      return fail("instance " + instance + ": an apply was interrupted, and neither finishing it " +
                  "nor going back to the recorded inputs works (" + done.error().message() + "); " +
                  repair_hint(instance));
  }
  if (!done) {
    drop_kept_maps();
    if (auto r = down(instance); !r) return r;
    return {};
  }
  if (auto r = detach_unnamed(instance, in.value("interfaces", json::array())); !r) return r;
  return clear_intent(instance);
}

// The settling every apply starts with. One that cannot settle must not block
// the next apply, which overwrites what it wrote: the interfaces of the
// interrupted apply are returned, to be detached if the new one does not
// name them.
json settle_before_apply(const std::string& instance) {
  json touched = json::array();
  if (auto r = settle_locked(instance, false); !r) {
    std::fprintf(stderr, "moat: %s\n", r.error().message().c_str());
    if (auto old = read_intent(instance); old && *old)
      for (const auto& n : (**old).value("interfaces", json::array())) touched.push_back(n);
  }
  return touched;
}

Result<ApplyReport> reconcile_locked(const std::string& instance, const DesiredState& want,
                                     const ReconcileOptions& opt, const json& interrupted) {
  ApplyReport before;  // the phases before apply()'s own
  PhaseClock clock(&before);
  json touched = interfaces_of(want.config);
  for (const auto& n : interrupted) touched.push_back(n);
  auto rec = read_record(instance, false);
  if (!rec) return std::unexpected(rec.error());
  clock.lap("read-record");
  json prev = rec->contains("state") ? std::move((*rec)["state"]) : json::object();
  if (opt.dry_run)
    return apply_and_record(
        instance, want.config, [] { return Result<json>(json()); }, opt, {}, &prev);
  // The intent goes to disk on the other CPU while apply() resolves: it
  // must be there before the kernel changes, not before the compile, and
  // everything in it (the inputs, large files staged into blobs, the
  // interfaces this apply may touch) is known now. For 100,000 rules the
  // staging alone (a 10 MB file hashed, compared and written) was 55 ms of
  // the apply; for a Docker agent's sync, staging and intent in its own
  // thread were 0.2-0.6 ms of its way to the kernel (a fifth of it). The
  // future's destructor waits for the worker on every path.
  // Not early, but right before the kernel as it always was, when an
  // interrupted apply's intent is still there (settling it failed: this
  // one would overwrite it and, failing to compile, remove it, and with it
  // the only account of a kernel ahead of its record), or when the record
  // serves another network namespace (resolve refuses this apply, and an
  // intent naming this namespace must never be left by a kill meanwhile).
  const uint64_t netns = current_netns_inode();
  const auto rec_netns = prev.find("netns_inode");
  const bool early = !fs::exists(intent_file(instance)) &&
                     (rec_netns == prev.end() ||
                      (rec_netns->is_number_unsigned() && rec_netns->get<uint64_t>() == netns));
  json intent = {{"options", options_json(opt)},
                 {"interfaces", touched},
                 {"netns_inode", netns},
                 {"netns_path", current_netns_path()}};
  std::optional<Result<json>> staged;  // the worker's, read once it is done
  bool written = false;                // the worker wrote the intent
  auto stage_and_write = [&]() -> Result<void> {
    staged = stage_inputs(instance, want.inputs, kInlineInputBytes);
    if (!*staged) return std::unexpected(staged->error());
    intent["inputs"] = **staged;
    if (auto r = write_intent(instance, intent); !r) return r;
    written = true;
    return {};
  };
  auto journal =
      early ? beside(stage_and_write) : std::async(std::launch::deferred, stage_and_write);
  // The job uses what is above: every path out waits for it (a deferred
  // one has not run, and waiting would run it).
  struct WaitForJob {
    std::future<Result<void>>& job;
    bool early;
    ~WaitForJob() {
      if (early && job.valid()) job.wait();
    }
  } wait_for_job{journal, early};
  auto journaled = [&]() -> Result<void> {
    if (journal.valid()) return journal.get();
    return {};  // got before: it succeeded, or nothing after it ran
  };
  auto staged_inputs = [&]() -> Result<json> {
    if (auto r = journaled(); !r) return std::unexpected(r.error());
    return **staged;
  };
  bool intended = false;  // the kernel may have changed from here on
  auto before_kernel = [&]() -> Result<void> {
    if (auto r = journaled(); !r) return r;
    intended = true;
    return failpoint("intent");
  };
  json saved;
  auto rep =
      apply_and_record(instance, want.config, staged_inputs, opt, before_kernel, &prev, &saved);
  if (!rep) {
    if (!intended) {  // nothing in the kernel changed
      // A deferred one has not run: waiting would run it.
      if (early && journal.valid()) journal.wait();
      // Neither an intent nor blobs stay that nothing in the kernel stands
      // for (an intent this apply did not write stays, with its blobs).
      if (written)
        if (auto r = clear_intent(instance); !r)
          return fail(rep.error().message() + "; " + r.error().message());
      drop_unrecorded_blobs(instance);
      return rep;
    }
    // Nothing of a failed apply stays: back to the record (or to nothing).
    if (auto r = settle_locked(instance, true); !r)
      return fail(rep.error().message() + "; undoing it failed too: " + r.error().message());
    return rep;
  }
  clock.into(&*rep);
  clock.restart();  // apply()'s own phases are in the report already
  if (auto r = detach_unnamed(instance, touched, &saved); !r) return std::unexpected(r.error());
  if (auto r = clear_intent(instance); !r) return std::unexpected(r.error());
  clock.lap("finish");
  rep->phases_ms.insert(rep->phases_ms.begin(), before.phases_ms.begin(), before.phases_ms.end());
  return rep;
}

// ---------------------------------------------------------------------------
// One rule changed (reconcile_one_rule())

struct SavedImage {
  json tag;                          // the saved image's, or its patch's when there is one
  std::shared_ptr<MappedFile> file;  // policy.image (save_policy_image())
  size_t tag_size = 0, image_size = 0;
  std::vector<BlobPatch> splices;  // what its patch changes; none: no patch
  size_t image_at() const { return 2 * sizeof(uint64_t) + tag_size; }
  std::string_view base_tag() const { return file->view().substr(sizeof(uint64_t), tag_size); }
  std::string_view base_image() const { return file->view().substr(image_at(), image_size); }
};

// The image `s` holds, read where it lies in the file's mapping
// (PolicyImage::from_mapping()) with its patch's ranges in place of the
// saved image's: only the sections they change, and later the ones the
// change writes, are copied. Reading the 8 MB image of 100,000 rules into
// fresh memory was most of the new memory a one-rule change took, and on
// this VM new memory is what costs, the more so after a pause (README,
// stops 57 and 58). A patch whose ranges do not each fit one section (moat
// writes none) is read as the image is read, its ranges in place of the
// saved image's: never put together whole.
Result<PolicyImage> image_of(const SavedImage& s, bool* in_place) {
  const std::string_view base = s.base_image();
  *in_place = true;
  std::vector<PolicyImage::Splice> splices;
  for (const BlobPatch& p : s.splices) splices.push_back({p.at, p.cut, p.bytes});
  if (auto image = PolicyImage::from_mapping(s.file, base, splices)) return image;
  *in_place = false;
  size_t left = base.size(), at = 0, next = 0, in_splice = 0;
  for (const BlobPatch& p : s.splices) left = left - p.cut + p.bytes.size();
  auto read = [&](void* to, size_t n) {
    char* out = static_cast<char*>(to);
    while (n > 0) {
      if (next < s.splices.size() && at == s.splices[next].at) {
        const BlobPatch& p = s.splices[next];
        const size_t take = std::min(n, p.bytes.size() - in_splice);
        std::memcpy(out, p.bytes.data() + in_splice, take);
        out += take, n -= take, left -= take, in_splice += take;
        if (in_splice == p.bytes.size()) at += p.cut, ++next, in_splice = 0;
        continue;
      }
      const size_t end = next < s.splices.size() ? s.splices[next].at : base.size();
      const size_t take = std::min(n, end - at);
      if (take == 0) return false;
      if (!s.file->read_at(out, take, s.image_at() + at)) return false;
      out += take, n -= take, left -= take, at += take;
    }
    return true;
  };
  return PolicyImage::from_reader(read, [&] { return left; });
}

// Takes a u64 and then that many bytes off the front of `in`.
std::optional<std::string_view> take_sized(std::string_view& in) {
  uint64_t n = 0;
  if (in.size() < sizeof n) return std::nullopt;
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  if (n > in.size()) return std::nullopt;
  std::string_view out = in.substr(0, n);
  in.remove_prefix(n);
  return out;
}

// The patch file's tag and ranges, if it is a patch of `s`'s image.
std::optional<std::pair<json, std::vector<BlobPatch>>> read_image_patch(const std::string& instance,
                                                                        const SavedImage& s) {
  auto f = read_whole(image_patch_file(instance));
  if (!f || !*f) return std::nullopt;
  std::string_view in = **f;
  if (!in.starts_with({kImagePatchMagic, sizeof kImagePatchMagic})) return std::nullopt;
  in.remove_prefix(sizeof kImagePatchMagic);
  auto tag = take_sized(in);
  auto of = take_sized(in);
  uint64_t count = 0;
  if (!tag || !of || *of != s.base_tag() || in.size() < sizeof count) return std::nullopt;
  std::memcpy(&count, in.data(), sizeof count);
  in.remove_prefix(sizeof count);
  std::vector<BlobPatch> splices;
  const size_t size = s.base_image().size();
  for (uint64_t i = 0, end = 0; i < count; ++i) {
    uint64_t at = 0, cut = 0;
    if (in.size() < 2 * sizeof at) return std::nullopt;
    std::memcpy(&at, in.data(), sizeof at);
    std::memcpy(&cut, in.data() + sizeof at, sizeof cut);
    in.remove_prefix(2 * sizeof at);
    auto bytes = take_sized(in);
    if (!bytes || at < end || at > size || cut > size - at) return std::nullopt;
    end = at + cut;
    splices.push_back({size, at, cut, std::string(*bytes)});
  }
  json t = json::parse(*tag, nullptr, false);
  if (!in.empty() || !t.is_object()) return std::nullopt;
  return std::pair{std::move(t), std::move(splices)};
}

std::optional<SavedImage> load_policy_image(const std::string& instance) {
  auto f = MappedFile::open(image_file(instance));
  if (!f || !*f) return std::nullopt;
  SavedImage s;
  s.file = std::make_shared<MappedFile>(std::move(**f));
  const std::string_view bytes = s.file->view();
  uint64_t n = 0, size = 0;
  if (bytes.size() < 2 * sizeof n) return std::nullopt;
  std::memcpy(&n, bytes.data(), sizeof n);
  if (n > bytes.size() - 2 * sizeof n) return std::nullopt;
  std::memcpy(&size, bytes.data() + sizeof n + n, sizeof size);
  if (size > bytes.size() - 2 * sizeof n - n) return std::nullopt;
  s.tag = json::parse(bytes.substr(sizeof n, n), nullptr, false);
  if (!s.tag.is_object()) return std::nullopt;
  s.tag_size = n;
  s.image_size = size;
  // A patch of another image (left by a crash) is not this one's: the
  // image's own tag then decides.
  if (auto p = read_image_patch(instance, s)) {
    s.tag = std::move(p->first);
    s.splices = std::move(p->second);
  }
  return s;
}

// The image `now` saved as a patch of the saved one, or whole when the
// patch would be more than an eighth of it (and 4 KiB).
Result<void> save_image_change(const std::string& instance, const json& places,
                               const SavedImage& saved, const PolicyImage& now) {
  // Compared in its mapping: a section `now` still views where it lies
  // there is the same bytes at the same place and is not read at all.
  const TextPieces base = TextPieces::memory(saved.base_image());
  auto splices = section_splices(base, PolicyImage::magic(), now.sections());
  size_t bytes = 0;
  if (splices)
    for (const BlobPatch& p : *splices) bytes += p.bytes.size() + 24;
  if (!splices || bytes > std::max<size_t>(saved.base_image().size() / 8, 4096))
    return save_policy_image(instance, places, now.bytes());
  auto t = image_tag(instance, places);
  if (!t) return std::unexpected(t.error());
  std::string out(kImagePatchMagic, sizeof kImagePatchMagic);
  out.reserve(out.size() + t->size() + saved.base_tag().size() + bytes + 32);
  for (std::string_view part : {std::string_view(*t), saved.base_tag()}) {
    out += u64_view(part.size());
    out += part;
  }
  out += u64_view(splices->size());
  for (const BlobPatch& p : *splices) {
    out += u64_view(p.at);
    out += u64_view(p.cut);
    out += u64_view(p.bytes.size());
    out += p.bytes;
  }
  return write_file_atomic(image_patch_file(instance), out);
}

// Row `id` of the rule table (encode_rule_rows()) made the row of `rule`,
// rule `index` of direction `d` of the same policy: the row's bytes
// [begin, begin + cut) and what replaces them; nullopt when the row is not
// that one.
struct RowChange {
  size_t begin = 0, cut = 0;
  std::string row;
};
std::optional<RowChange> rule_row_change(const SplicedText& table, uint32_t id, PolicyDirection d,
                                         size_t index, const PolicyRule& rule) {
  size_t begin = 0;
  for (uint32_t n = 0; n < id; ++n) {
    begin = table.find('\n', begin);
    if (begin == std::string_view::npos) return std::nullopt;
    ++begin;
  }
  const size_t end = table.find('\n', begin);
  if (end == std::string_view::npos) return std::nullopt;
  auto rows = decode_rule_rows(table.substr(begin, end + 1 - begin));
  if (!rows || rows->size() != 1) return std::nullopt;
  const json& row = (*rows)[0];
  if (row.value("direction", "") != to_string(d) ||
      row.value("index", -1) != static_cast<int>(index))
    return std::nullopt;
  const RuleInfo r = rule_info(row.value("policy", ""), row.value("namespace", ""), d, index, rule);
  return RowChange{begin, end + 1 - begin, encode_rule_rows({r})};
}

// The text of input file `f` of a record's inputs: its blob mapped, or
// its text when the record holds it (short files).
struct RecordedText {
  BlobText blob;
  std::string inline_text;
  bool is_inline = false;
  SplicedText text() const { return is_inline ? SplicedText(inline_text) : blob.text(); }
  // The same, read through the blob's file rather than its mapping:
  // compared where it lies, a 10 MB blob took 0.3-0.6 ms longer (stop 59).
  TextPieces pieces() const {
    if (is_inline) return TextPieces::memory(inline_text);
    const BlobPatch& p = blob.patch;
    return TextPieces::spliced_file(blob.file.fd(), p.base_size, p.at, p.cut, p.bytes);
  }
};
std::optional<RecordedText> recorded_text(const std::string& instance, const json& f) {
  RecordedText r;
  if (auto t = f.find("text"); t != f.end() && t->is_string()) {
    r.inline_text = t->get<std::string>();
    r.is_inline = true;
    return r;
  }
  if (auto b = f.find("blob"); b != f.end() && b->is_string())
    if (auto blob = map_blob(instance, b->get<std::string>())) {
      r.blob = std::move(*blob);
      return r;
    }
  return std::nullopt;
}

// What reconcile_one_rule() works with, found before anything is written.
struct OneRule {
  json rec;
  SavedImage saved;
  PolicyImage image;
  bool image_in_place = false;  // read from the file's mapping (image_of())
  RuleSpan span;
  PolicyRule after;
  uint32_t id = 0;
  size_t file = 0;      // the changed input file
  RecordedText before;  // its recorded text
  size_t after_size = 0;  // the changed file's new size
  std::string rule_text;  // and its new bytes [span.begin, span.end_after)
  BlobText rules;       // the recorded rule table
  RowChange row;        // and the change of the rule's row
};

// The first `n` bytes of an input file not read yet; nullopt when it gave
// fewer.
std::optional<std::string> head_of(const TextPieces& file, size_t n) {
  std::string head(std::min(n, file.size()), '\0');
  if (!file.read(0, head.size(), head.data())) return std::nullopt;
  return head;
}

// How much of an input file not read yet is read first: its bytes up to
// the first change (the same as the record's), and some beyond, where
// the changed rule most likely ends.
size_t first_head(const SharedEnds& ends) { return ends.prefix + (size_t{64} << 10); }

// The changed rule's span in an input file not read yet, whose ends the
// recorded text shares (`ends`), from its first bytes (*head, first_head()
// of them), read on (twice as many each time) only while the rule goes on
// beyond them. The bytes read are left in *head.
std::optional<RuleSpan> find_changed_rule_unread(size_t before_size, const TextPieces& file,
                                                 const SharedEnds& ends, std::string* head) {
  for (size_t want = first_head(ends);; want *= 2) {
    if (head->size() < std::min(want, file.size())) {
      auto h = head_of(file, want);
      if (!h) return std::nullopt;
      *head = std::move(*h);
    }
    bool more = false;
    auto span =
        find_changed_rule_in(before_size, file.size(), ends.prefix, ends.suffix, *head, &more);
    if (!more || head->size() == file.size()) return span;
  }
}

// What says an input file not read yet is still the one compared: its
// size and times (a write changes both times, and the size unless in
// place). nullopt when it is no regular file.
struct FileState {
  size_t size = 0;
  timespec mtime{}, ctime{};
  bool operator==(const FileState& o) const {
    return size == o.size && mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec &&
           ctime.tv_sec == o.ctime.tv_sec && ctime.tv_nsec == o.ctime.tv_nsec;
  }
};
std::optional<FileState> unread_state(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return FileState{static_cast<size_t>(st.st_size), st.st_mtim, st.st_ctim};
}

// Whether the change from the record's inputs to `inputs` is one rule the
// saved image can change; the change made on the image.
std::optional<OneRule> find_one_rule_in(const std::string& instance, const Inputs& inputs,
                                        std::span<const int> unread, PhaseClock& clock) {
  OneRule o;
  auto rec = read_record(instance, false);
  if (!rec || rec->empty() || !rec->contains("state") || !rec->contains("inputs"))
    return std::nullopt;
  o.rec = std::move(*rec);
  const json& state = o.rec["state"];
  const json& rin = o.rec["inputs"];
  auto saved = load_policy_image(instance);
  if (!saved) return std::nullopt;
  o.saved = std::move(*saved);
  const uint32_t rev = state.value("policy_rev", 0u);
  if (rev == 0 || o.saved.tag.value("policy_rev", 0u) != rev || o.saved.tag["inputs"] != rin)
    return std::nullopt;
  const json files = rin.value("files", json::array());
  if (files.size() != inputs.files.size() || !inputs.producer.is_null() ||
      rin.contains("producer") || rin.value("replace_policies", false) != inputs.replace_policies)
    return std::nullopt;
  // One file changed; the others are the recorded ones, byte for byte,
  // under the same names (a name decides how a file is read, YAML or JSON,
  // and is the source the record and messages show).
  // One file alone is the changed one or nothing changed: it is compared
  // once, by find_changed_rule() (which finds "nothing" too).
  std::optional<size_t> changed;
  std::optional<TextPieces> changed_unread;  // the changed file, when not read
  SharedEnds ends;                           // and what it shares with its record
  std::optional<FileState> unread_was;       // and its state when compared
  for (size_t i = 0; i < files.size(); ++i) {
    if (files[i].value("name", "") != inputs.files[i].name) return std::nullopt;
    auto old = recorded_text(instance, files[i]);
    if (!old) return std::nullopt;
    std::optional<TextPieces> now;
    std::optional<FileState> state_now;
    if (i < unread.size() && unread[i] >= 0) {
      state_now = unread_state(unread[i]);
      if (!state_now) return std::nullopt;
      now = TextPieces::file(unread[i], state_now->size);
      auto e = shared_ends(old->pieces(), *now);
      if (!e) return std::nullopt;
      if (e->prefix == now->size() && e->prefix == old->text().size()) {
        if (files.size() > 1) continue;
        return std::nullopt;  // nothing changed: the whole apply says so
      }
      ends = *e;
    } else {
      const SplicedText text = old->text();
      if (text.size() == inputs.files[i].text.size() && files.size() > 1 &&
          text == inputs.files[i].text)
        continue;
    }
    if (changed) return std::nullopt;
    changed = i;
    changed_unread = std::move(now);
    unread_was = state_now;
    o.before = std::move(*old);
  }
  if (!changed) return std::nullopt;
  o.file = *changed;
  const InputFile& file = inputs.files[*changed];
  const SplicedText before = o.before.text();
  size_t lead = 0;  // what looks_like_yaml() reads of `before`: to its first non-blank
  for (char c; lead < before.size() &&
               ((c = before.at(lead)) == ' ' || c == '\t' || c == '\r' || c == '\n');)
    ++lead;
  // Unread, the file is looked at from its first bytes: enough for
  // looks_like_yaml() unless they are all blanks.
  std::string head;
  if (changed_unread) {
    auto h = head_of(*changed_unread, first_head(ends));
    if (!h || (h->size() < changed_unread->size() &&
               h->find_first_not_of(" \t\r\n") == std::string::npos))
      return std::nullopt;
    head = std::move(*h);
  }
  const std::string& first_bytes = changed_unread ? head : file.text;
  if (policy_read::looks_like_yaml(first_bytes, file.name) ||
      policy_read::looks_like_yaml(before.substr(0, lead + 1), file.name))
    return std::nullopt;
  clock.lap("read-inputs");
  auto span = changed_unread ? find_changed_rule_unread(before.size(), *changed_unread, ends, &head)
                             : find_changed_rule(before, file.text);
  if (!span) return std::nullopt;
  // A file written to meanwhile may now hold bytes neither compared nor
  // scanned: then the whole apply reads what it holds.
  if (changed_unread &&
      (unread_state(unread[*changed]) != unread_was ||
       !o.before.pieces().starts_with(std::string_view(head).substr(0, ends.prefix))))
    return std::nullopt;
  const std::string_view after_text = changed_unread ? std::string_view(head) : file.text;
  o.after_size = changed_unread ? changed_unread->size() : file.text.size();
  // An inline record keeps the whole text: short, it is read whole.
  if (changed_unread && o.after_size < kInlineInputBytes) return std::nullopt;
  o.rule_text = after_text.substr(span->begin, span->end_after - span->begin);
  auto after = read_changed_rule(after_text, *span);
  auto before_rule =
      read_rule_text(before.substr(span->begin, span->end_before - span->begin), *span);
  if (!after || !before_rule) return std::nullopt;
  o.span = std::move(*span);
  o.after = std::move(*after);
  std::optional<size_t> policy;
  const json places = o.saved.tag.value("policies", json::array());
  for (size_t k = 0; k < places.size(); ++k) {
    if (places[k] != json{file.name, o.span.policy_path, o.span.kubernetes}) continue;
    if (policy) return std::nullopt;  // two policies of one place: not ours to pick
    policy = k;
  }
  if (!policy) return std::nullopt;
  clock.lap("find-rule");
  // The host as the record has it, or the whole apply must look again:
  // this namespace, programs of this build (an upgraded moat replaces
  // them), every interface attached to under its index (a veth made again
  // gets a new one and must be attached to), the uplinks' addresses the
  // image's host identities were compiled with.
  if (state.value("netns_inode", uint64_t{0}) != current_netns_inode() ||
      state.value("objects", "") != objects_fingerprint())
    return std::nullopt;
  InterfaceIndexes index_of;
  for (const char* list : {"interfaces", "uplinks", "bridges"})
    for (const json& row : state.value(list, json::array()))
      if (index_of(row.value("name", "")) != row.value("ifindex", 0u)) return std::nullopt;
  for (const json& u : state.value("uplinks", json::array())) {
    auto ip = index_of.ipv4(u.value("name", ""));
    if (!ip || Ipv4::from_be(*ip).str() != u.value("ip", "")) return std::nullopt;
  }
  auto image = image_of(o.saved, &o.image_in_place);
  if (!image) return std::nullopt;
  o.image = std::move(*image);
  auto id = o.image.rule_id(*policy, o.span.dir, o.span.index);
  if (!id) return std::nullopt;
  o.id = *id;
  auto done = o.image.replace_rule(*policy, o.span.dir, o.span.index, *before_rule, o.after);
  if (!done || !*done) return std::nullopt;
  clock.lap("compile-rule");
  const json pol = state.value("policy", json::object());
  if (!pol.contains("rules_blob") || !pol["rules_blob"].is_string()) return std::nullopt;
  auto table = map_blob(instance, pol["rules_blob"].get<std::string>());
  if (!table) return std::nullopt;
  auto row = rule_row_change(table->text(), o.id, o.span.dir, o.span.index, o.after);
  if (!row) return std::nullopt;
  o.rules = std::move(*table);
  o.row = std::move(*row);
  return o;
}

// The record's inputs with the changed file's new text: a patch of its
// recorded blob (put_blob_change()), inline when short (as stage_inputs()
// keeps it); the other files are the recorded ones.
Result<json> stage_changed_file(const std::string& instance, const json& recorded, const OneRule& o,
                                const InputFile& file) {
  json staged = recorded;
  json& f = staged["files"][o.file];
  if (o.after_size < kInlineInputBytes) {
    f.erase("blob");
    f["text"] = file.text;
    return staged;
  }
  const std::string was = f.contains("blob") ? f["blob"].get<std::string>() : "";
  auto name = put_blob_change(instance, was, o.before.text(), o.span.begin,
                              o.span.end_before - o.span.begin, o.rule_text);
  if (!name) return std::unexpected(name.error());
  f.erase("text");
  f["blob"] = *name;
  return staged;
}

// A record or tag of unexpected shape is the whole apply's to judge.
std::optional<OneRule> find_one_rule(const std::string& instance, const Inputs& inputs,
                                     std::span<const int> unread, PhaseClock& clock) {
  try {
    return find_one_rule_in(instance, inputs, unread, clock);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

Result<std::optional<ApplyReport>> one_rule_locked(const std::string& instance,
                                                   const Inputs& inputs,
                                                   const ReconcileOptions& opt,
                                                   std::span<const int> unread) {
  ApplyReport rep;
  PhaseClock clock(&rep);
  const std::optional<ApplyReport> whole;  // the whole apply must make this change
  if (opt.dry_run || !fs::exists(image_file(instance))) return whole;
  // Begun now, it has passed by the time the idle generation is written.
  GracePeriod gp = GracePeriod::begin();
  auto o = find_one_rule(instance, inputs, unread, clock);
  if (!o) return whole;
  json& state = o->rec["state"];
  auto skel = open_pinned_maps<endpoint_bpf>(pin_dir(instance), kPolicyMaps);
  if (!skel) return whole;
  auto held = read_policy_rev(*skel->get());
  if (!held || *held != state.value("policy_rev", 0u)) return whole;
  clock.lap("resolve");
  // As every apply: the inputs and the intent on disk before the kernel
  // changes; the changed file and the rule table as patches of their blobs.
  auto staged = stage_changed_file(instance, o->rec["inputs"], *o, inputs.files[o->file]);
  Result<std::string> rules_blob = fail("not staged");
  if (staged)
    rules_blob = put_blob_change(instance, state["policy"].value("rules_blob", ""), o->rules.text(),
                                 o->row.begin, o->row.cut, o->row.row);
  if (!staged || !rules_blob) {
    drop_unrecorded_blobs(instance);
    return std::unexpected(!staged ? staged.error() : rules_blob.error());
  }
  const json intent = {{"options", options_json(opt)},
                       {"interfaces", json::array()},
                       {"netns_inode", current_netns_inode()},
                       {"netns_path", current_netns_path()},
                       {"inputs", *staged}};
  if (auto r = write_intent(instance, intent); !r) {
    drop_unrecorded_blobs(instance);
    return std::unexpected(r.error());
  }
  clock.lap("intent");
  uint32_t rev = 0;
  auto kernel = [&]() -> Result<void> {
    if (auto r = failpoint("intent"); !r) return r;
    // Compared with the generation in force all the same: a rule edited
    // can compile to the entries it had (reordered ports, spaces inside).
    auto changed = install_policy(*skel->get(), o->image.ipcache(), o->image.ipcache6(),
                                  o->image.entries(), true, state.value("policy_rev_max", 0u),
                                  false, &rev, GenerationStore{state_dir(instance)}, &gp);
    if (!changed) return std::unexpected(changed.error());
    rep.policy_changed = *changed;
    // Every other rule keeps its id and its meaning, so its count goes on;
    // the changed one's starts over (a whole apply numbers them all anew).
    if (*changed && o->id < MOAT_MAX_RULES) reset_rule_hits(*skel->get(), 1, o->id);
    return failpoint("swap-policy");
  };
  if (auto r = kernel(); !r) {
    if (auto back = settle_locked(instance, true); !back)
      return fail(r.error().message() + "; undoing it failed too: " + back.error().message());
    return std::unexpected(r.error());
  }
  clock.lap("swap-policy");
  state["policy_rev"] = rev;
  state["policy_rev_max"] = std::max(state.value("policy_rev_max", 0u), rev);
  json& pol = state["policy"];
  pol["entries"] = o->image.entries().size();
  pol["rules_blob"] = *rules_blob;
  // Failing from here, the kernel is ahead of the record and the intent
  // stays: the next command settles it forward.
  if (auto r = write_record(instance, state, *staged, options_json(opt)); !r)
    return std::unexpected(r.error());
  if (auto r = failpoint("record"); !r) return std::unexpected(r.error());
  clock.lap("record");
  if (opt.keep_policy_image)
    (void)save_image_change(instance, o->saved.tag["policies"], o->saved, o->image);
  if (auto r = clear_intent(instance); !r) return std::unexpected(r.error());
  clock.lap("finish");
  rep.policy_rev = rev;
  rep.policy_entries = static_cast<int>(o->image.entries().size());
  rep.one_rule = o->span.path;
  rep.one_rule_image = o->image_in_place ? "in place" : "read";
  return rep;
}

}  // namespace

std::string inputs_path(const std::string& instance) { return record_file(instance); }

void keep_kernel_handles(bool on) {
  // Under each lock, still kept: another writer's temporary file is its own
  // until it renames it. Held by another, the lock is not waited for (a
  // stopping agent must not hang); what is left then, `moat down` removes.
  if (!on)
    for (const auto& instance : kept_state_file_instances())
      if (auto lock = InstanceLock::acquire_at(lock_path(instance), false))
        drop_kept_state_files(instance);
  if (on && !g_job_thread) g_job_thread.emplace();
  if (!on) g_job_thread.reset();
  keep_grace_periods_after_switches(on);
  keep_maps_between_applies(on);
  keep_written_records(on);
  keep_instance_locks(on);
  watch_pin_dirs(on);
}

Result<ApplyReport> reconcile(const std::string& instance, const DesiredState& want,
                              const ReconcileOptions& opt) {
  const auto asked = std::chrono::steady_clock::now();
  PhaseClock clock(nullptr);
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  // The caller's interface indexes are taken only when it came straight
  // here: after a wait for another writer's lock, or with an intent to
  // settle, time has passed and a veth may have gone (refused before the
  // kernel by a lookup, it would otherwise fail at attach, after the maps
  // changed, and be undone). Within the agent's own sync a veth can still
  // go in the half millisecond before its attach, as it could before.
  ReconcileOptions o = opt;
  std::error_code ec;
  if (o.known_ifindex && (lock->waited() || fs::exists(intent_file(instance), ec) || ec))
    o.known_ifindex = nullptr;
  json interrupted = settle_before_apply(instance);
  ApplyReport settled;
  clock.into(&settled);
  clock.lap("lock-settle");
  auto rep = reconcile_locked(instance, want, o, interrupted);
  if (rep) rep->phases_ms.insert(rep->phases_ms.begin(), settled.phases_ms.front());
  if (rep) add_before_lock(*rep, asked);
  return rep;
}

Result<std::optional<ApplyReport>> reconcile_one_rule(const std::string& instance,
                                                      const Inputs& inputs,
                                                      const ReconcileOptions& opt,
                                                      std::span<const int> unread) {
  const auto asked = std::chrono::steady_clock::now();
  PhaseClock clock(nullptr);
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  // An interrupted apply is the whole apply's to settle (once) and report.
  if (fs::exists(intent_file(instance))) return std::optional<ApplyReport>();
  ApplyReport settled;
  clock.into(&settled);
  clock.lap("lock-settle");
  auto rep = one_rule_locked(instance, inputs, opt, unread);
  if (rep && *rep) (*rep)->phases_ms.insert((*rep)->phases_ms.begin(), settled.phases_ms.front());
  if (rep && *rep) add_before_lock(**rep, asked);
  return rep;
}

Result<std::optional<ApplyReport>> reconcile_update(const std::string& instance,
                                                    const Update& update) {
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  json interrupted = settle_before_apply(instance);
  auto rec = read_record(instance);
  if (!rec) return std::unexpected(rec.error());
  std::optional<Inputs> current;
  if (!rec->empty()) {
    std::string why;
    current = inputs_from_json((*rec)["inputs"], &why);
    if (!current)
      return fail(record_file(instance) + " is damaged: " + why + "; " + repair_hint(instance));
  }
  auto next = update(current);
  if (!next) return std::unexpected(next.error());
  if (next->unchanged) return std::optional<ApplyReport>();
  if (!next->want) {
    if (rec->empty() && !fs::exists(pin_dir(instance))) return std::optional<ApplyReport>();
    drop_kept_maps();
    if (auto r = down(instance); !r) return std::unexpected(r.error());
    return std::optional<ApplyReport>();
  }
  auto rep = reconcile_locked(instance, *next->want, next->options, interrupted);
  if (!rep) return std::unexpected(rep.error());
  return std::optional<ApplyReport>(std::move(*rep));
}

Result<void> settle(const std::string& instance) {
  if (!fs::exists(intent_file(instance))) return {};
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  return settle_locked(instance, false);
}

Result<Inputs> saved_inputs(const std::string& instance) {
  if (auto r = settle(instance); !r) return std::unexpected(r.error());
  auto rec = read_record(instance);
  if (!rec) return std::unexpected(rec.error());
  if (rec->empty())
    return fail("no moat instance \"" + instance + "\" (nothing applied; see `moat apply --help`)");
  std::string why;
  auto inputs = inputs_from_json((*rec)["inputs"], &why);
  if (!inputs)
    return fail(record_file(instance) + " is damaged: " + why + "; " + repair_hint(instance));
  return *inputs;
}

Result<json> instance_state(const std::string& instance) {
  if (auto r = settle(instance); !r) return std::unexpected(r.error());
  return read_state(instance);
}

Result<std::vector<std::string>> policy_dir_files(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".json" || ext == ".yaml" || ext == ".yml"))
      paths.push_back(e.path().string());
  }
  if (ec) return fail("policy directory " + dir + ": " + ec.message(), ec.value());
  std::sort(paths.begin(), paths.end());
  return paths;
}

Result<void> add_policy_dir(const std::string& dir, Inputs& inputs) {
  auto paths = policy_dir_files(dir);
  if (!paths) return std::unexpected(paths.error());
  for (const auto& p : *paths) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return fail("read " + p, errno);
    inputs.files.push_back({p, std::string(std::istreambuf_iterator<char>(in), {})});
  }
  return {};
}

Result<void> remove_instance(const std::string& instance) {
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  drop_kept_maps();
  return down(instance);
}

}  // namespace moat
