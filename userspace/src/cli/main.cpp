// main.cpp - `moat`: builds the command line from the command families'
// tables and runs the one subcommand parsed. The commands live in cmd_*.cpp;
// this file only turns their exceptions into messages and exit codes.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <string>

#include "cli/common.h"
#include "cni/plugin.h"

namespace {

using moat::cli::CommandTable;

// The order they register in is the order `moat --help` lists them.
constexpr void (*kFamilies[])(CLI::App&, CommandTable&) = {
    moat::cli::add_file_commands,    moat::cli::add_ct_commands,
    moat::cli::add_lab_commands,     moat::cli::add_policy_commands,
    moat::cli::add_observe_commands, moat::cli::add_docker_commands};

// glibc backs its heap with transparent huge pages only when asked through
// GLIBC_TUNABLES, which it reads once at start-up, so moat restarts itself
// once with glibc.malloc.hugetlb=1 added (THP in "madvise" mode, Debian's
// default). A policy of 100,000 rules allocates some 10^6 small objects: on
// this VM their page faults were a quarter of an apply, and changing one
// rule of 100,000 went from 1.43 s to 1.0 s. The caller's GLIBC_TUNABLES is
// given back before anything runs, so the processes moat starts see the
// environment they were given.
constexpr const char* kTunables = "GLIBC_TUNABLES";
constexpr const char* kCallersTunables = "MOAT_CALLERS_GLIBC_TUNABLES";
// A heap grown 64 MiB at a time: fewer, larger huge-page-backed extensions
// (validate of 100,000 rules: about 0.45 -> 0.40 s).
constexpr const char* kHugePages = "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864";

// The commands whose work grows with their input, when the files they name
// hold 512 KiB or more (some 5,000 rules). A restart costs about 7 ms here
// (the binary's pages are faulted in twice): apply of 1,000 rules 42 -> 50
// ms, of 10,000 rules 189 -> 114 ms. Not the Docker agent: its syncs are
// small, and with huge pages its start-to-enforced p50 was 21 ms against 18.
bool worth_huge_pages(int argc, char** argv) {
  static constexpr const char* kHeavy[] = {"apply", "validate", "lab", "explain"};
  if (argc < 2 || std::none_of(std::begin(kHeavy), std::end(kHeavy),
                               [&](const char* c) { return std::strcmp(argv[1], c) == 0; }))
    return false;
  off_t bytes = 0;
  struct stat st {};
  for (int i = 2; i < argc; i++)
    if (argv[i][0] != '-' && stat(argv[i], &st) == 0 && S_ISREG(st.st_mode)) bytes += st.st_size;
  return bytes >= (off_t{512} << 10);
}

void restart_with_huge_pages(int argc, char** argv) {
  if (const char* callers = std::getenv(kCallersTunables)) {
    // The restarted process: the tunables are in force, the caller's value returns.
    if (*callers)
      setenv(kTunables, callers + 1, 1);  // "=" + value: set; "" : was unset
    else
      unsetenv(kTunables);
    unsetenv(kCallersTunables);
    return;
  }
  if (!worth_huge_pages(argc, argv)) return;
  const char* have = std::getenv(kTunables);
  std::string mine = have && *have ? std::string(have) + ":" + kHugePages : kHugePages;
  if (have && std::strstr(have, "glibc.malloc.hugetlb")) return;  // the caller chose
  setenv(kCallersTunables, have ? (std::string("=") + have).c_str() : "", 1);
  setenv(kTunables, mine.c_str(), 1);
  execv("/proc/self/exe", argv);
  // Not restarted (no /proc): go on without huge pages, as the caller ran us.
  if (have)
    setenv(kTunables, have, 1);
  else
    unsetenv(kTunables);
  unsetenv(kCallersTunables);
}

int run_parsed(const CommandTable& table) {
  for (const auto& cmd : table)
    if (cmd.app->parsed()) return cmd.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Runtimes run CNI plugins by their "type": a `moat-cni` link to this
  // binary in the plugin directory speaks CNI and nothing else.
  const char* base = std::strrchr(argv[0], '/');
  if (std::strcmp(base ? base + 1 : argv[0], "moat-cni") == 0) return moat::cni::plugin_main();
  restart_with_huge_pages(argc, argv);

  CLI::App app{
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
      "moat"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moat 0.1.0");
  app.get_formatter()->column_width(36);

  CommandTable table;
  for (auto add : kFamilies) add(app, table);

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
