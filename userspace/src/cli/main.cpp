// main.cpp - `moat`: builds the command line from the command families'
// tables and runs the one subcommand parsed. The commands live in cmd_*.cpp;
// this file only turns their exceptions into messages and exit codes.
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "cli/common.h"
#include "cni/plugin.h"
#include "dataplane/apply.h"
#include "util/discard.h"

namespace {

using moat::cli::CommandTable;

// The order they register in is the order `moat --help` lists them; with
// the top-level commands each adds.
struct Family {
  void (*add)(CLI::App&, CommandTable&);
  std::array<std::string_view, 5> commands;
};
constexpr Family kFamilies[] = {
    {moat::cli::add_file_commands, {"validate", "apply", "status", "down", "fastpath"}},
    {moat::cli::add_ct_commands, {"ct"}},
    {moat::cli::add_lab_commands, {"lab"}},
    {moat::cli::add_policy_commands, {"explain", "policy"}},
    {moat::cli::add_observe_commands, {"flows", "top", "serve", "stats"}},
    {moat::cli::add_docker_commands, {"docker"}}};

// The family that adds the command argv[1] names, if one does: a command
// needs only its own family's tree. All of them took 0.5-0.75 ms of every
// command, some 4% of a one-rule change (README, stop 59).
const Family* family_of(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '\0') return nullptr;  // "" pads the lists
  for (const Family& f : kFamilies)
    if (std::find(f.commands.begin(), f.commands.end(), argv[1]) != f.commands.end()) return &f;
  return nullptr;
}

// The command line, without its commands.
std::unique_ptr<CLI::App> new_command_line() {
  auto app = std::make_unique<CLI::App>(
      "moat - container isolation, published ports, masquerade and segmentation policies\n"
      "enforced by eBPF programs instead of iptables, with counters and flow events.\n"
      "Describe networks, containers and policies in a JSON file; moat compiles it into pinned\n"
      "BPF maps read by TC programs on container veths and uplinks and by socket hooks.\n\n"
      "  moat lab up policies/invoice-app.json    # try it: a lab of namespaces, enforced\n"
      "  moat lab probe                            # who reaches whom, expected vs observed\n"
      "  moat explain rechnung datenbank 7000/tcp  # why (add --lab NAME for a lab)\n"
      "  moat apply FILE [POLICY_FILE...]          # enforce on existing interfaces\n"
      "  moat stats | moat flows | moat top        # what passed, what was dropped and why\n"
      "  moat status | moat down                   # inspect | remove everything",
      "moat");
  app->require_subcommand(1);
  app->set_version_flag("--version", "moat 0.1.0");
  app->get_formatter()->column_width(36);
  return app;
}

// The command line with the families `argv` needs: argv[1]'s, or every one
// (help, the version, a name no family adds: all of them judge it).
std::unique_ptr<CLI::App> command_line(int argc, char** argv, CommandTable& table) {
  if (const Family* only = family_of(argc, argv)) {
    auto app = new_command_line();
    only->add(*app, table);
    if (!app->get_subcommands([&](CLI::App* c) { return c->get_name() == argv[1]; }).empty())
      return app;
    table.clear();  // listed with a command it does not add
  }
  auto app = new_command_line();
  for (const Family& f : kFamilies) f.add(*app, table);
  return app;
}

// The commands whose work grows with their input. They run once and exit:
// what they parse is left to the exit to free (util/discard.h).
bool heavy_command(int argc, char** argv) {
  static constexpr const char* kHeavy[] = {"apply", "validate", "lab", "explain"};
  return argc >= 2 && std::any_of(std::begin(kHeavy), std::end(kHeavy),
                                  [&](const char* c) { return std::strcmp(argv[1], c) == 0; });
}

// A heavy command's input, when the files it names hold 512 KiB or more
// (some 5,000 rules): a huge page's first touch clears 2 MiB, more than a
// small command uses. Not the Docker agent: its syncs are small, and with
// huge pages its start-to-enforced p50 was 21 ms against 18 (one run each).
// Returns the size of those files, 0 for the others.
size_t input_bytes_worth_huge_pages(int argc, char** argv) {
  if (!heavy_command(argc, argv)) return 0;
  size_t bytes = 0;
  struct stat st {};
  for (int i = 2; i < argc; i++)
    if (argv[i][0] != '-' && stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
      bytes += static_cast<size_t>(st.st_size);
  return bytes >= (size_t{512} << 10) ? bytes : 0;
}

// The first touch of fresh memory is most of a large apply here: the
// kernel clears each huge page, and on this VM (its balloon reports free
// pages to the host) the host faults it in too. 100,000 rules: a 10 MB file
// whose apply peaks at 156 MB, 29% of its samples in clear_page_erms. So
// the heap's next `bytes` are faulted in by a thread of their own, on the
// other CPU, ahead of the parser that is about to use them (with one CPU
// it would only take turns with the parser: not done).
// MADV_POPULATE_WRITE faults pages in without writing to them, so it never
// races with what malloc has already handed out; in slices, to stay just
// ahead rather than hold the first fault of the parser behind one long call.
void prefault(uintptr_t from, size_t bytes) {
  if (std::thread::hardware_concurrency() < 2 || bytes == 0) return;
  std::thread([from, bytes] {
    constexpr size_t kSlice = size_t{8} << 20;
    for (size_t at = 0; at < bytes; at += kSlice)
      if (madvise(reinterpret_cast<void*>(from + at), std::min(kSlice, bytes - at),
                  MADV_POPULATE_WRITE) != 0)
        return;  // an older kernel (before 5.14): the parser faults them in itself
  }).detach();
}

// `bytes` of the heap held to the exit and never touched past their header
// (a leak by intent), so that the blocks after them begin on a huge page.
// Volatile: a block nothing reads was dropped by the compiler, malloc()
// and all, and the policy image's first megabyte landed on small pages.
void* volatile g_below_huge_pages = nullptr;
void skip_small_pages(size_t bytes) {
  if (!g_below_huge_pages) g_below_huge_pages = malloc(bytes);
}

// The heap on transparent huge pages (THP in "madvise" mode, Debian's
// default). A policy of 100,000 rules allocates some 10^6 small objects:
// on this VM validating one took 0.75 s with 34,000 page faults, 0.30 s
// with 1,200. glibc does it itself only when GLIBC_TUNABLES asks at
// start-up (a restart cost ~7 ms), so the heap is grown here by 256 MiB of
// address space (nothing is touched yet), the growth advised and kept:
// malloc carves from it. Large blocks come from it too, not from mmap.
// `input` is the size of the input files: an apply uses some 16 times as
// much (156 MB for 10 MB); that much of the reserve is prefaulted. An
// apply may change one rule instead: then nothing is prefaulted until it
// must compile the whole (expect_whole_compile()). A one-rule change of
// 100,000 spent 60% of its CPU clearing the 160 MB it never used (stop
// 55). It then read the saved 8 MB image into the heap, and 14 MiB were
// prefaulted for it; now it reads the image where it lies (PolicyImage::
// from_mapping()) and takes some 8 MB of new memory (2,150 pages against
// 3,700), faulted in as it goes: prefaulting 4 MiB or 2 MiB of it was no
// faster, and the 14 MiB prefault cost 5 ms of CPU a change (README,
// stop 58).
struct Prefault {
  uintptr_t from = 0;
  size_t done = 0, want = 0;
};
Prefault g_prefault;

void heap_on_huge_pages(size_t input, bool maybe_one_rule) {
  constexpr size_t kReserve = size_t{256} << 20, kHuge = size_t{2} << 20;
  if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 || mallopt(M_TRIM_THRESHOLD, 1 << 30) != 1 ||
      mallopt(M_TOP_PAD, kReserve) != 1)
    return;
  void* grow = malloc(kHuge);  // more than the top holds: the heap grows by it and the pad
  if (!grow) return;
  // From the first huge page past `grow`: malloc() wrote the heap's top
  // just after it before the advice below, and a huge page touched before
  // it is made of small pages. From the heap's first whole huge page, that
  // one held the first 2 MiB of the policy image: zeroing them took 2.2 ms
  // without a page fault, the TLB missing page after page (0.1 ms on huge
  // pages). Blocks carved before it (the skip below keeps them out) were
  // small pages too: the input file's text began on up to 2 MiB of them,
  // 6-10 ms of its 10 MB read.
  const auto at = reinterpret_cast<uintptr_t>(grow);
  auto from = (at + kHuge + 64 + kHuge - 1) & ~(kHuge - 1);
  auto to = reinterpret_cast<uintptr_t>(sbrk(0)) & ~(kHuge - 1);
  if (to <= from) return free(grow);
  madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
  free(grow);
  skip_small_pages(from - at - 64);
  g_prefault.from = from;
  g_prefault.want = std::min<size_t>((input * 16 + kHuge - 1) & ~(kHuge - 1), to - from);
  g_prefault.done = maybe_one_rule ? 0 : g_prefault.want;
  prefault(from, g_prefault.done);
}

// `apply` and `lab apply`: the commands that try the one-rule change first.
bool may_change_one_rule(int argc, char** argv) {
  return (argc >= 2 && std::strcmp(argv[1], "apply") == 0) ||
         (argc >= 3 && std::strcmp(argv[1], "lab") == 0 && std::strcmp(argv[2], "apply") == 0);
}

int run_parsed(const CommandTable& table) {
  for (const auto& cmd : table)
    if (cmd.app->parsed()) return cmd.run();
  return 0;
}

}  // namespace

void moat::cli::expect_whole_compile() {
  prefault(g_prefault.from + g_prefault.done, g_prefault.want - g_prefault.done);
  g_prefault.done = g_prefault.want;
}

int main(int argc, char** argv) {
  const auto started = std::chrono::steady_clock::now();
  // Runtimes run CNI plugins by their "type": a `moat-cni` link to this
  // binary in the plugin directory speaks CNI and nothing else.
  const char* base = std::strrchr(argv[0], '/');
  if (std::strcmp(base ? base + 1 : argv[0], "moat-cni") == 0) return moat::cni::plugin_main();
  if (heavy_command(argc, argv)) {
    moat::one_shot_process() = true;
    moat::set_command_start(started);
  }
  if (size_t input = input_bytes_worth_huge_pages(argc, argv))
    heap_on_huge_pages(input, may_change_one_rule(argc, argv));

  CommandTable table;
  std::unique_ptr<CLI::App> cli = command_line(argc, argv, table);
  CLI::App& app = *cli;

  try {
    app.parse(argc, argv);
    return run_parsed(table);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const moat::cli::CliError& e) {
    std::cerr << "moat: " << e.message << "\n";
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "moat: " << e.what() << "\n";
    return 1;
  }
}
