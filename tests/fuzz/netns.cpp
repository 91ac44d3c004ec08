// netns.cpp - the private namespace and its devices (netns.h).
#include "netns.h"

#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "configs.h"

extern char** environ;

namespace fuzz {
namespace {

// One `ip -batch -` for all devices: a child in our (private) namespace.
void ip_batch(const std::string& commands) {
  int pipefd[2];
  if (pipe(pipefd)) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[0], 0);
  posix_spawn_file_actions_addclose(&fa, pipefd[1]);
  char arg0[] = "ip", arg1[] = "-batch", arg2[] = "-";
  char* argv[] = {arg0, arg1, arg2, nullptr};
  pid_t pid;
  const int err = posix_spawnp(&pid, "ip", &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[0]);
  if (err) {
    close(pipefd[1]);
    throw std::runtime_error(std::string("spawning ip: ") + std::strerror(err));
  }
  const ssize_t n = write(pipefd[1], commands.data(), commands.size());
  close(pipefd[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (n != ssize_t(commands.size()) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("ip -batch failed creating the fuzzer's devices");
}

}  // namespace

bool enter_private_netns() { return unshare(CLONE_NEWNET) == 0; }

std::map<std::string, uint32_t> create_devices() {
  std::vector<std::string> names;
  for (size_t i = 0; i < kMaxAttachments; i++) names.push_back(attachment_device(i));
  for (const char* u : kUplinkDevices) names.push_back(u);
  names.push_back(kUnknownDevice);
  std::string batch;
  for (const auto& n : names) batch += "link add " + n + " type veth peer name " + n + "p\n";
  ip_batch(batch);
  std::map<std::string, uint32_t> out;
  for (const auto& n : names) {
    const uint32_t idx = if_nametoindex(n.c_str());
    if (!idx) throw std::runtime_error("no ifindex for " + n);
    out[n] = idx;
  }
  return out;
}

}  // namespace fuzz
