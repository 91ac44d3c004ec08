// proc.cpp - running other programs without a shell: posix_spawnp, pipes
// drained with poll() so a chatty stderr can never block a chatty stdout, and
// waitpid for the exit code.
#include "lab/proc.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "util/fd.h"

extern char** environ;

namespace moat {
namespace {

// The command line as a person would type it, for error messages.
std::string command_line(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$*?;&|<>()") == std::string::npos;
    s += plain ? a : "'" + a + "'";
  }
  return s;
}

// argv as the char* array exec wants; the strings must outlive the result.
std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> v;
  v.reserve(argv.size() + 1);
  for (const auto& a : argv) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

// Owns posix_spawn's attribute objects so every path destroys them.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  SpawnSetup() { posix_spawn_file_actions_init(&actions); }
  ~SpawnSetup() { posix_spawn_file_actions_destroy(&actions); }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

Result<pid_t> spawn(const std::vector<std::string>& argv, const posix_spawn_file_actions_t* fa) {
  if (argv.empty()) return fail("run: empty command");
  auto args = c_argv(argv);
  pid_t pid = -1;
  // glibc reports exec failures (e.g. ENOENT) as posix_spawnp's return value.
  int rc = ::posix_spawnp(&pid, args[0], fa, nullptr, args.data(), environ);
  if (rc != 0) return fail("could not start `" + command_line(argv) + "`", rc);
  return pid;
}

// The exit code of a finished child; a signal death becomes 128+signal like a shell.
Result<int> wait_exit(pid_t pid, const std::vector<std::string>& argv) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail("wait for `" + command_line(argv) + "`", errno);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// Drops the trailing newline(s) so stderr reads as the end of one error line.
std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

Result<ProcOutput> run_capture(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  // O_CLOEXEC keeps our ends out of the child; dup2 in the child clears it on 1 and 2.
  if (::pipe2(out_pipe, O_CLOEXEC) < 0) return fail("pipe", errno);
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) < 0) return fail("pipe", errno);
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  SpawnSetup setup;
  // Nobody answers questions: stdin is /dev/null.
  posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&setup.actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&setup.actions, err_w.get(), 2);
  auto pid = spawn(argv, &setup.actions);
  if (!pid) return std::unexpected(pid.error());
  // Our copies of the write ends must go, or the reads below never see EOF.
  out_w.reset();
  err_w.reset();

  ProcOutput result;
  std::array<pollfd, 2> fds{pollfd{out_r.get(), POLLIN, 0}, pollfd{err_r.get(), POLLIN, 0}};
  std::array<std::string*, 2> sinks{&result.out, &result.err};
  int open_fds = 2;
  Error read_error;
  while (open_fds > 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      read_error = Error{errno, "poll output of `" + command_line(argv) + "`"};
      break;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // EOF (or a broken pipe): poll ignores negative fds
        --open_fds;
      }
    }
  }
  // Always reap the child, even when reading failed, so no zombie is left.
  auto code = wait_exit(*pid, argv);
  if (!read_error.context.empty()) return std::unexpected(read_error);
  if (!code) return std::unexpected(code.error());
  result.status = *code;
  return result;
}

Result<std::string> run_checked(const std::vector<std::string>& argv) {
  auto r = run_capture(argv);
  if (!r) return std::unexpected(r.error());
  if (r->status != 0) {
    std::string msg =
        "`" + command_line(argv) + "` failed (exit " + std::to_string(r->status) + ")";
    std::string err = trim(r->err);
    if (!err.empty()) msg += ": " + err;
    return fail(msg);
  }
  return std::move(r->out);
}

Result<int> run_inherit(const std::vector<std::string>& argv) {
  auto pid = spawn(argv, nullptr);
  if (!pid) return std::unexpected(pid.error());
  return wait_exit(*pid, argv);
}

}  // namespace moat
