// cli/ - the `moat` command line: argument parsing, exit codes and printing,
// one file per command family (cmd_*.cpp), registered in main.cpp's table.
// It may use every other folder; nothing depends on it, so that the library
// stays usable (and unit-testable) without a terminal. Errors become
// exceptions and exit codes only here:
//   0 ok, 1 runtime failure (or probes not as expected), 2 invalid input.
//
// common.h: what several command families share.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "lab/lab.h"
#include "util/result.h"

namespace moat::cli {

// ---- the command table -------------------------------------------------------------

// A leaf subcommand and what runs when it was the one parsed; returns the exit code.
struct Command {
  CLI::App* app;
  std::function<int()> run;
};
using CommandTable = std::vector<Command>;

// Each family adds its subcommands to `app` (in the order `moat --help` lists
// them) and their handlers to `table`.
void add_file_commands(CLI::App& app, CommandTable& table);     // validate apply status down
void add_ct_commands(CLI::App& app, CommandTable& table);       // ct list|gc
void add_lab_commands(CLI::App& app, CommandTable& table);      // lab ...
void add_policy_commands(CLI::App& app, CommandTable& table);   // explain, policy list
void add_observe_commands(CLI::App& app, CommandTable& table);  // stats flows top serve
void add_docker_commands(CLI::App& app, CommandTable& table);   // docker

// ---- errors ------------------------------------------------------------------------

struct CliError {
  int code;
  std::string message;
};

[[noreturn]] void die(const std::string& msg, int code = 1);

template <class T>
T check(Result<T> r) {
  if (!r) die(r.error().message());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

void need_root();

// An apply that compiles the whole of its inputs (not one changed rule):
// the rest of its memory is faulted in ahead of it (main.cpp). Until then
// an apply's heap holds only what reading its inputs needs.
void expect_whole_compile();

// SIGINT/SIGTERM are blocked and taken with sigtimedwait(): no handler runs
// in the middle of a write, and every loop of a long-running command ends
// cleanly. Block before starting threads, so they inherit the mask.
void block_stop_signals();
// Sleeps up to `ms`; true when SIGINT or SIGTERM arrived.
bool stop_requested(int ms);
std::string read_file(const std::string& path);
void check_instance(const std::string& name);

// ---- labs --------------------------------------------------------------------------

std::string lab_instance(const std::string& lab);
std::string lab_config_copy(const std::string& lab);
std::string default_lab_name(const std::string& file);
// The lab named, or the only one running.
std::string pick_lab(const std::string& given);

// --instance and --lab, for the commands that read an existing instance.
void add_instance_options(CLI::App* sub, std::string& instance, std::string& lab);
// The instance they name: a lab's is picked as pick_lab() does.
std::string scoped_instance(const std::string& instance, const std::string& lab);

// Runs `fn` inside the lab host namespace and comes back, so the dataplane
// sees the lab's interfaces while the CLI itself stays where it was started.
template <class Fn>
auto in_lab_host(const std::string& lab, Fn fn) {
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) die("open own network namespace: " + std::string(strerror(errno)));
  std::string path = "/run/netns/" + lab_host_ns(lab);
  int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
    close(home);
    if (ns >= 0) close(ns);
    die("lab " + lab + " has no host namespace (" + path + ")");
  }
  close(ns);
  struct Back {
    int fd;
    ~Back() {
      setns(fd, CLONE_NEWNET);
      close(fd);
    }
  } back{home};
  return fn();
}

// ---- printing shared by several families --------------------------------------------

nlohmann::json config_json(const Config& c);
void print_config(const Config& c);
// Exit code: 1 when the instance's record cannot be trusted (what the kernel
// holds is shown instead, with the way to repair).
int print_status(const nlohmann::json& s);
// 0, or 1 when `s` is the status of an instance whose record is damaged.
inline int status_code(const nlohmann::json& s) { return s["record"].value("ok", true) ? 0 : 1; }

}  // namespace moat::cli
