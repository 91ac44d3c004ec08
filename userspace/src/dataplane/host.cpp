#include "dataplane/host.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "util/fd.h"
#include "util/paths.h"

namespace fs = std::filesystem;

namespace moat {

Result<void> ensure_bpffs() {
  struct statfs st {};
  if (statfs(paths::kBpffs, &st) == 0 && st.f_type == BPF_FS_MAGIC) return {};
  // Pins made in a private mount namespace vanish with it: `ip netns exec`
  // remounts /sys, hiding the machine's bpffs. Refuse rather than lose state.
  struct stat self {}, init {};
  if (stat("/proc/self/ns/mnt", &self) == 0 && stat("/proc/1/ns/mnt", &init) == 0 &&
      self.st_ino != init.st_ino)
    return fail(std::string(paths::kBpffs) +
                " is not a bpffs in this mount namespace (`ip netns exec` remounts /sys); "
                "run moat with `nsenter --net=/run/netns/NAME moat ...` instead");
  // Like Cilium: mount it where every BPF tool expects it.
  if (mount("bpffs", paths::kBpffs, "bpf", 0, "mode=0700") != 0)
    return fail_errno(std::string("mount bpffs at ") + paths::kBpffs, errno);
  return {};
}

Result<void> mkdirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail("create " + dir, ec.value());
  return {};
}

uint64_t current_netns_inode() {
  struct stat st {};
  if (stat("/proc/self/ns/net", &st) != 0) return 0;
  return st.st_ino;
}

std::string current_netns_path() {
  uint64_t ino = current_netns_inode();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(paths::kNetnsDir, ec)) {
    struct stat st {};
    if (stat(e.path().c_str(), &st) == 0 && st.st_ino == ino) return e.path();
  }
  return "";
}

Result<void> enter_netns(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return fail_errno("open network namespace " + path, errno);
  if (setns(fd.get(), CLONE_NEWNET) != 0) return fail_errno("enter network namespace " + path, errno);
  return {};
}

Result<uint32_t> interface_ipv4(const std::string& ifname) {
  Fd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.ok()) return fail_errno("socket", errno);
  ifreq req{};
  snprintf(req.ifr_name, sizeof(req.ifr_name), "%s", ifname.c_str());
  if (ioctl(sock.get(), SIOCGIFADDR, &req) != 0) return fail_errno("IPv4 address of " + ifname, errno);
  return reinterpret_cast<sockaddr_in*>(&req.ifr_addr)->sin_addr.s_addr;
}

std::array<uint8_t, 16> interface_ipv6(const std::string& ifname) {
  std::array<uint8_t, 16> out{};
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return out;
  for (const ifaddrs* a = all; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET6 || ifname != a->ifa_name) continue;
    const in6_addr& v6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr;
    if (IN6_IS_ADDR_LINKLOCAL(&v6) || IN6_IS_ADDR_MULTICAST(&v6) || IN6_IS_ADDR_LOOPBACK(&v6) ||
        IN6_IS_ADDR_V4MAPPED(&v6))
      continue;
    std::copy(v6.s6_addr, v6.s6_addr + 16, out.begin());
    break;
  }
  freeifaddrs(all);
  return out;
}

}  // namespace moat
