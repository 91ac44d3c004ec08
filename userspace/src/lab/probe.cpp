#include "lab/probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>

namespace moat {
namespace {

struct Flight {
  size_t index = 0;  // into probes
  int fd = -1;
  bool connected = false;
  std::string reply;
  ProbeOutcome outcome;
  bool done = false;
  uint16_t echo_id = 0;
};

uint16_t inet_checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (p[i] << 8) | p[i + 1];
  if (n & 1) sum += p[n - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Sockets belong to the namespace they were created in, so each is opened
// after a setns() into the source's namespace; the caller's is restored.
Result<int> socket_in(const std::string& ns_path, int family, int type, int proto) {
  static std::map<std::string, int> ns_fds;
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) return fail_errno("open own network namespace", errno);
  int nsfd = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    close(home);
    return fail_errno("open " + ns_path, errno);
  }
  int fd = -1, err = 0;
  if (setns(nsfd, CLONE_NEWNET) == 0) {
    fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    err = errno;
    setns(home, CLONE_NEWNET);
  } else {
    err = errno;
  }
  close(nsfd);
  close(home);
  if (fd < 0) return fail_errno("socket in " + ns_path, err);
  return fd;
}

void finish(Flight& f, bool reached, std::string detail) {
  f.outcome = {reached, std::move(detail)};
  f.done = true;
  if (f.fd >= 0) close(f.fd);
  f.fd = -1;
}

// The probe's destination as a socket address of its family.
socklen_t dst_sockaddr(const Probe& p, sockaddr_storage& ss) {
  ss = {};
  if (p.ipv6()) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    sa->sin6_family = AF_INET6;
    std::memcpy(&sa->sin6_addr, p.dst_ip6->bytes.data(), 16);
    sa->sin6_port = htons(p.port);
    return sizeof(*sa);
  }
  auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
  sa->sin_family = AF_INET;
  sa->sin_addr.s_addr = p.dst_ip.to_be();
  sa->sin_port = htons(p.port);
  return sizeof(*sa);
}

Result<void> start(const Probe& p, Flight& f) {
  int type = p.proto == Protocol::tcp ? SOCK_STREAM : p.proto == Protocol::udp ? SOCK_DGRAM : SOCK_RAW;
  int proto = 0;
  if (p.proto == Protocol::icmp) proto = p.ipv6() ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP};
  auto fd = socket_in(p.src_ns, p.ipv6() ? AF_INET6 : AF_INET, type, proto);
  if (!fd) return std::unexpected(fd.error());
  f.fd = *fd;
  sockaddr_storage ss;
  socklen_t sa_len = dst_sockaddr(p, ss);
  auto* sa = reinterpret_cast<sockaddr*>(&ss);
  if (p.proto == Protocol::tcp) {
    if (connect(f.fd, sa, sa_len) != 0 && errno != EINPROGRESS)
      finish(f, false, std::string("connect: ") + strerror(errno));
  } else if (p.proto == Protocol::udp) {
    // connect() so ICMP port-unreachable surfaces as ECONNREFUSED.
    connect(f.fd, sa, sa_len);
    if (send(f.fd, "probe\n", 6, 0) < 0) finish(f, false, std::string("send: ") + strerror(errno));
  } else {
    // The kernel fills in an ICMPv6 checksum itself (it covers a pseudo
    // header only it knows the source address of).
    uint8_t pkt[16] = {ICMP_ECHO, 0, 0, 0, static_cast<uint8_t>(f.echo_id >> 8),
                       static_cast<uint8_t>(f.echo_id), 0, 1, 'm', 'o', 'a', 't'};
    if (p.ipv6()) {
      pkt[0] = ICMP6_ECHO_REQUEST;
    } else {
      uint16_t c = inet_checksum(pkt, sizeof(pkt));
      pkt[2] = static_cast<uint8_t>(c >> 8);
      pkt[3] = static_cast<uint8_t>(c);
    }
    if (sendto(f.fd, pkt, sizeof(pkt), 0, sa, sa_len) < 0)
      finish(f, false, std::string("send: ") + strerror(errno));
  }
  return {};
}

// An echo reply to this flight from the probed address: IPv4 raw sockets
// read the IP header too, ICMPv6 ones only the message (the sender is in
// `from`). Every ICMP message of the namespace arrives, other flights' and
// neighbour discovery's included.
bool is_echo_reply(const Probe& p, const Flight& f, const char* buf, size_t n,
                   const sockaddr_storage& from) {
  const uint8_t* ic = reinterpret_cast<const uint8_t*>(buf);
  if (p.ipv6()) {
    const auto* sa = reinterpret_cast<const sockaddr_in6*>(&from);
    if (n < 8 || from.ss_family != AF_INET6 ||
        std::memcmp(&sa->sin6_addr, p.dst_ip6->bytes.data(), 16) != 0 || ic[0] != ICMP6_ECHO_REPLY)
      return false;
  } else {
    auto* ip = reinterpret_cast<const iphdr*>(buf);
    size_t hl = ip->ihl * 4u;
    if (n < hl + 8 || ip->saddr != p.dst_ip.to_be()) return false;
    ic += hl;
    if (ic[0] != ICMP_ECHOREPLY) return false;
  }
  return static_cast<uint16_t>((ic[4] << 8) | ic[5]) == f.echo_id;
}

void on_ready(const Probe& p, Flight& f, short revents) {
  char buf[512];
  if (p.proto == Protocol::icmp) {
    ssize_t n;
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    while ((n = recvfrom(f.fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from),
                         &from_len)) > 0) {
      if (is_echo_reply(p, f, buf, static_cast<size_t>(n), from)) return finish(f, true, "ok");
      from_len = sizeof(from);
    }
    return;
  }
  if (p.proto == Protocol::tcp && !f.connected) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(f.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return finish(f, false, err == ECONNREFUSED ? "refused" : strerror(err));
    if (!(revents & (POLLOUT | POLLIN))) return;
    f.connected = true;
    // The lab's responders answer a request line, so send one, then half-close.
    if (send(f.fd, "probe\n", 6, MSG_NOSIGNAL) < 0) {
      return finish(f, false, std::string("send: ") + strerror(errno));
    }
    shutdown(f.fd, SHUT_WR);
  }
  ssize_t n = recv(f.fd, buf, sizeof(buf), 0);
  if (n > 0) {
    f.reply.append(buf, static_cast<size_t>(n));
    if (p.proto == Protocol::tcp) return;  // read on until EOF
  } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return;
  } else if (n < 0) {
    return finish(f, false, errno == ECONNREFUSED ? "refused" : strerror(errno));
  }
  // EOF on TCP, or one UDP datagram: judge the answer.
  while (!f.reply.empty() && (f.reply.back() == '\n' || f.reply.back() == '\r')) f.reply.pop_back();
  if (!p.expect_reply.empty() && f.reply != p.expect_reply)
    return finish(f, false, "wrong reply: \"" + f.reply + "\"");
  finish(f, true, "ok");
}

Result<void> run_round(const std::vector<Probe>& probes, std::vector<Flight>& flights,
                       std::chrono::milliseconds timeout) {
  for (auto& f : flights)
    if (auto r = start(probes[f.index], f); !r) return r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<Flight*> owners;
    for (auto& f : flights) {
      if (f.done) continue;
      short ev = POLLIN;
      if (probes[f.index].proto == Protocol::tcp && !f.connected) ev |= POLLOUT;
      pfds.push_back({f.fd, ev, 0});
      owners.push_back(&f);
    }
    if (pfds.empty()) return {};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    int n = poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return fail_errno("poll", errno);
    for (size_t i = 0; i < pfds.size(); ++i)
      if (pfds[i].revents) on_ready(probes[owners[i]->index], *owners[i], pfds[i].revents);
  }
  for (auto& f : flights)
    if (!f.done) finish(f, false, f.connected ? "no reply" : "timeout");
  return {};
}

}  // namespace

Result<std::vector<ProbeOutcome>> run_probes(const std::vector<Probe>& probes,
                                             std::chrono::milliseconds timeout, int rounds) {
  std::vector<ProbeOutcome> out(probes.size());
  std::vector<size_t> pending(probes.size());
  for (size_t i = 0; i < probes.size(); ++i) pending[i] = i;
  static uint16_t next_id = static_cast<uint16_t>(getpid() << 4);
  for (int r = 0; r < rounds && !pending.empty(); ++r) {
    std::vector<Flight> flights;
    for (size_t i : pending) {
      Flight f;
      f.index = i;
      f.echo_id = next_id++;
      flights.push_back(std::move(f));
    }
    if (auto res = run_round(probes, flights, timeout); !res) {
      for (auto& f : flights)
        if (f.fd >= 0) close(f.fd);
      return std::unexpected(res.error());
    }
    pending.clear();
    for (auto& f : flights) {
      out[f.index] = f.outcome;
      if (!f.outcome.reached) pending.push_back(f.index);
    }
  }
  return out;
}

}  // namespace moat
