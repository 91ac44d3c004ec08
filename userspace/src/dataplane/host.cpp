#include "dataplane/host.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

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

// The name found last is tried first: listing /run/netns costs more than the
// rest of an agent's apply, twice per apply, and the answer rarely changes.
std::string current_netns_path() {
  thread_local std::string last;
  uint64_t ino = current_netns_inode();
  struct stat st {};
  if (!last.empty() && stat(last.c_str(), &st) == 0 && st.st_ino == ino) return last;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(paths::kNetnsDir, ec)) {
    if (stat(e.path().c_str(), &st) == 0 && st.st_ino == ino) return last = e.path();
  }
  return "";
}

Result<void> enter_netns(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return fail_errno("open network namespace " + path, errno);
  if (setns(fd.get(), CLONE_NEWNET) != 0) return fail_errno("enter network namespace " + path, errno);
  return {};
}

namespace {

bool usable_ipv6(const in6_addr& v6) {
  return !IN6_IS_ADDR_LINKLOCAL(&v6) && !IN6_IS_ADDR_MULTICAST(&v6) && !IN6_IS_ADDR_LOOPBACK(&v6) &&
         !IN6_IS_ADDR_V4MAPPED(&v6) && !IN6_IS_ADDR_UNSPECIFIED(&v6);
}

// The first usable address of one RTM_NEWADDR message, if it has one.
std::optional<in6_addr> addr_of(const nlmsghdr* h, unsigned ifindex) {
  auto* ifa = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  if (ifa->ifa_family != AF_INET6 || ifa->ifa_index != ifindex) return std::nullopt;
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (auto* rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    if (rta->rta_type != IFA_ADDRESS || RTA_PAYLOAD(rta) != sizeof(in6_addr)) continue;
    in6_addr v6;
    std::memcpy(&v6, RTA_DATA(rta), sizeof v6);
    if (usable_ipv6(v6)) return v6;
  }
  return std::nullopt;
}

// The address of one RTM_NEWADDR message as SIOCGIFADDR gives it (IFA_LOCAL),
// when it is labelled `ifname` (an alias, "eth0:1", is not eth0's).
std::optional<uint32_t> local_of(const nlmsghdr* h, unsigned ifindex, const std::string& ifname) {
  auto* ifa = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  if (ifa->ifa_family != AF_INET || ifa->ifa_index != ifindex) return std::nullopt;
  std::optional<uint32_t> local;
  bool labelled = false;
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (auto* rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
    const auto* data = static_cast<const char*>(RTA_DATA(rta));
    if (rta->rta_type == IFA_LOCAL && RTA_PAYLOAD(rta) == 4) {
      uint32_t v;
      std::memcpy(&v, data, 4);
      local = v;
    } else if (rta->rta_type == IFA_LABEL) {
      labelled = std::string_view(data, strnlen(data, RTA_PAYLOAD(rta))) == ifname;
    }
  }
  return labelled ? local : std::nullopt;
}

// One interface's addresses of one family, asked of the kernel by its index
// (a strict dump), until `take` says done. False when the dump did not
// answer whole (a kernel without strict dumps, before 4.20, or the
// interface gone meanwhile): what `take` saw may then be incomplete.
template <typename Take>
bool dump_addresses(unsigned char family, unsigned ifindex, Take take) {
  Fd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  int one = 1;
  if (!fd.ok() || setsockopt(fd.get(), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one) != 0)
    return false;
  timeval limit{2, 0};  // a kernel that stops answering must not hang an apply
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  struct {
    nlmsghdr h;
    ifaddrmsg ifa;
  } req{};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
  req.h.nlmsg_type = RTM_GETADDR;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = 1;
  req.ifa.ifa_family = family;
  req.ifa.ifa_index = ifindex;
  if (send(fd.get(), &req, req.h.nlmsg_len, 0) < 0) return false;
  // Not zeroed: recv() says how much it wrote, and zeroing 32 KiB was a
  // tenth of this call.
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_ERROR)
        return reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(h))->error == 0;
      if (h->nlmsg_flags & NLM_F_DUMP_INTR) return false;  // changed while dumped
      if (h->nlmsg_type == NLMSG_DONE) {
        // An error met during the dump comes as DONE's payload.
        int err = 0;
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof err)) std::memcpy(&err, NLMSG_DATA(h), sizeof err);
        return err == 0;
      }
      if (h->nlmsg_type == RTM_NEWADDR && take(h)) return true;
    }
  }
}

}  // namespace

// One interface's addresses, asked of the kernel by its index (a strict
// dump): getifaddrs() dumps every address of every interface, a cost that
// grows with the containers on the host and that the agent paid per apply.
std::array<uint8_t, 16> interface_ipv6(unsigned ifindex) {
  std::array<uint8_t, 16> out{};
  dump_addresses(AF_INET6, ifindex, [&](const nlmsghdr* h) {
    auto v6 = addr_of(h, ifindex);
    if (v6) std::copy(v6->s6_addr, v6->s6_addr + 16, out.begin());
    return v6.has_value();
  });
  return out;
}

bool InterfaceIndexes::ask(unsigned long request, const std::string& ifname, ifreq& r) const {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
    errno = ENODEV;
    return false;
  }
  if (!sock_.ok()) sock_ = Fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock_.ok()) return false;
  std::memcpy(r.ifr_name, ifname.data(), ifname.size());
  return ioctl(sock_.get(), request, &r) == 0;
}

unsigned InterfaceIndexes::operator()(const std::string& ifname) const {
  if (known_)
    if (auto it = known_->find(ifname); it != known_->end() && it->second) return it->second;
  ifreq r{};
  return ask(SIOCGIFINDEX, ifname, r) ? static_cast<unsigned>(r.ifr_ifindex) : 0;
}

// Asked by a dump, not SIOCGIFADDR: since Linux 6.9 the dump of IPv4
// addresses takes no RTNL, and the ioctl does. dockerd holds RTNL while it
// sets up a container; in a Docker agent's sync the ioctl waited 0.6-1.8 ms
// for it in 5 of 41 (the kernel's lock-contention tracepoints). The ioctl
// answers whenever the dump did not (a kernel that cannot filter a dump by
// interface, an error or a timeout, the interface gone).
Result<uint32_t> InterfaceIndexes::ipv4(const std::string& ifname) const {
  if (unsigned idx = (*this)(ifname)) {
    std::optional<uint32_t> found;
    if (dump_addresses(AF_INET, idx, [&](const nlmsghdr* h) {
          found = local_of(h, idx, ifname);
          return found.has_value();
        })) {
      if (found) return *found;
      return fail_errno("IPv4 address of " + ifname, EADDRNOTAVAIL);
    }
  }
  ifreq r{};
  if (!ask(SIOCGIFADDR, ifname, r)) return fail_errno("IPv4 address of " + ifname, errno);
  return reinterpret_cast<sockaddr_in*>(&r.ifr_addr)->sin_addr.s_addr;
}

}  // namespace moat
