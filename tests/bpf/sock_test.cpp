// sock_test.cpp - the cgroup socket hooks (sock.bpf.c) over IPv6, with real
// sockets. BPF_PROG_TEST_RUN cannot run cgroup sock_addr programs (the
// kernel has no test_run for that program type), so, like the kernel's own
// selftests, the programs are attached through a cgroup2 mount of the test's
// own and judged by what connect(), sendto(), recvfrom(), getpeername() and
// bind() do. They act only in the namespace whose cookie is in host_cfg:
// the tests' private one (main() unshares it), so no other process of the
// machine is touched. The "container" is an address on that namespace's lo.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"
#include "util/fd.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace moat_test {
namespace {

using moat::Fd;

constexpr const char* kBackend = "fd00:3::7";  // the container's IPv6 address
constexpr const char* kGateway = "fd00:3::1";  // the host's address on its network
constexpr uint16_t kBackendPort = 80;

sockaddr_in6 sa6(const char* ip, uint16_t port) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  if (inet_pton(AF_INET6, ip, &a.sin6_addr) != 1)
    throw std::runtime_error(std::string("bad ip ") + ip);
  return a;
}

std::string str(const sockaddr_in6& a) {
  char buf[INET6_ADDRSTRLEN] = "";
  inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a.sin6_port));
}

moat_ip ip_of(const char* text) {
  moat_ip ip{};
  const in6_addr a = pkt::ip6(text);
  std::memcpy(ip.b, &a, sizeof a);
  return ip;
}

Fd socket6(int type, bool v6only = true) {
  Fd fd(socket(AF_INET6, type | SOCK_CLOEXEC, 0));
  if (!fd.ok()) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int only = v6only;
  setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
  timeval tv{2, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// 0, or the errno of bind(ip:port) on a new socket of `type`.
int bind_errno(int type, const char* ip, uint16_t port) {
  Fd s = socket6(type);
  sockaddr_in6 a = sa6(ip, port);
  return bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

Fd bound(int type, const char* ip, uint16_t port) {
  Fd s = socket6(type);
  sockaddr_in6 a = sa6(ip, port);
  int one = 1;
  setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("bind " + str(a) + ": " + std::strerror(errno));
  if (type == SOCK_STREAM && listen(s.get(), 8) != 0)
    throw std::runtime_error(std::string("listen: ") + std::strerror(errno));
  return s;
}

// 0, or the errno of connect(ip:port) from `s`.
int connect_errno(const Fd& s, const char* ip, uint16_t port) {
  sockaddr_in6 a = sa6(ip, port);
  return connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

std::string peer_of(const Fd& s) {
  sockaddr_in6 a{};
  socklen_t len = sizeof a;
  if (getpeername(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return std::string("getpeername: ") + std::strerror(errno);
  return str(a);
}

std::string local_of(const Fd& s) {
  sockaddr_in6 a{};
  socklen_t len = sizeof a;
  getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return str(a);
}

uint64_t u64_opt(int fd, int opt) {
  uint64_t v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0)
    throw std::runtime_error(std::string("getsockopt: ") + std::strerror(errno));
  return v;
}

class SockHooks6 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ep_ = new Skeleton<endpoint_bpf>(load_skeleton());
    sock_ = new Skeleton<sock_bpf>(load_sock_skeleton(*ep_));
    ip({"link", "set", "lo", "up"});
    for (const char* a : {kBackend, kGateway})
      ip({"-6", "addr", "replace", std::string(a) + "/128", "dev", "lo", "nodad"});
    add_network6(*ep_, Network{7, 0, 0, 0, 0}, "fd00:3::", 64, kGateway);
    Fd probe = socket6(SOCK_DGRAM);
    cookie_ = u64_opt(probe.get(), SO_NETNS_COOKIE);
    set_host_cfg(cookie_, 0);
    attach_all();
  }

  static void TearDownTestSuite() {
    for (bpf_link* l : links_) bpf_link__destroy(l);  // detaches
    links_.clear();
    delete sock_;
    delete ep_;
  }

  void TearDown() override {
    set_host_cfg(cookie_, 0);
    for (bpf_map* m : {(*ep_)->maps.publish, (*ep_)->maps.publish6, (*ep_)->maps.sock_rnat6})
      clear(m);
  }

  // Every sock program at the root of a cgroup2 hierarchy mounted for just
  // long enough to open it (as dataplane/sockhooks.cpp does): the links
  // keep the attachment, and host_cfg keeps it to this namespace.
  static void attach_all() {
    char dir[] = "/tmp/moat-bpf-cgroup2.XXXXXX";
    if (!mkdtemp(dir)) throw std::runtime_error("mkdtemp");
    int rc = mount("cgroup2", dir, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    int err = errno;
    Fd cg(rc == 0 ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1);
    if (rc == 0) umount2(dir, MNT_DETACH);
    rmdir(dir);
    if (rc != 0) throw std::runtime_error(std::string("mount cgroup2: ") + std::strerror(err));
    bpf_program* prog;
    bpf_object__for_each_program(prog, (*sock_)->obj) {
      bpf_link* l = bpf_program__attach_cgroup(prog, cg.get());
      if (!l) throw std::runtime_error(std::string("attach ") + bpf_program__name(prog));
      links_.push_back(l);
    }
  }

  static void set_host_cfg(uint64_t cookie, uint32_t flags) {
    const uint32_t zero = 0;
    const moat_host_cfg cfg = {.netns_cookie = cookie, .flags = flags, .pad = 0};
    if (bpf_map__update_elem((*ep_)->maps.host_cfg, &zero, sizeof zero, &cfg, sizeof cfg, 0))
      throw std::runtime_error("host_cfg update");
  }

  static void clear(bpf_map* m) {
    std::vector<uint8_t> key(bpf_map__key_size(m)), next(key.size());
    while (bpf_map__get_next_key(m, nullptr, next.data(), next.size()) == 0)
      bpf_map__delete_elem(m, next.data(), next.size(), 0);
  }

  // host_ip:port/proto published (publish6) to the backend's port `to`.
  static void publish6(const char* host_ip, uint16_t port, uint8_t proto, uint16_t to) {
    const moat_publish6_key key = {
        .host_ip = ip_of(host_ip), .port = htons(port), .proto = proto, .pad = 0};
    const moat_publish6_val val = {.backend_ip = ip_of(kBackend),
                                   .backend_port = htons(to),
                                   .pad = 0,
                                   .container_id = 1,
                                   .net_id = 7};
    if (bpf_map__update_elem((*ep_)->maps.publish6, &key, sizeof key, &val, sizeof val, 0))
      throw std::runtime_error("publish6 update");
  }

  // A TCP connection from a new socket (bound to `from` first, if given) to
  // ip:port, and what the backend's listener accepted of it.
  struct Dial {
    Fd client, accepted;
    int err = 0;  // of connect()
  };
  static Dial dial(const char* ip, uint16_t port, const char* from = nullptr, bool v6only = true) {
    Fd server = bound(SOCK_STREAM, kBackend, kBackendPort);
    Dial d{socket6(SOCK_STREAM, v6only), Fd(), 0};
    sockaddr_in6 src = sa6(from ? from : "::", 0);
    if (from && bind(d.client.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0)
      throw std::runtime_error(std::string("bind: ") + std::strerror(errno));
    d.err = connect_errno(d.client, ip, port);
    if (d.err == 0) d.accepted = Fd(accept(server.get(), nullptr, nullptr));  // SO_RCVTIMEO
    return d;
  }

  static std::optional<moat_sock_rnat6_val> rnat6(const Fd& s, const char* ip, uint16_t port) {
    moat_sock_rnat6_key key{};
    key.cookie = u64_opt(s.get(), SO_COOKIE);
    key.backend_ip = ip_of(ip);
    key.backend_port = htons(port);
    moat_sock_rnat6_val v{};
    if (bpf_map__lookup_elem((*ep_)->maps.sock_rnat6, &key, sizeof key, &v, sizeof v, 0))
      return std::nullopt;
    return v;
  }

  static inline Skeleton<endpoint_bpf>* ep_ = nullptr;
  static inline Skeleton<sock_bpf>* sock_ = nullptr;
  static inline std::vector<bpf_link*> links_;
  static inline uint64_t cookie_ = 0;
};

TEST_F(SockHooks6, ConnectToLoopbackReachesTheIpv6Backend) {
  publish6("::", 8080, IPPROTO_TCP, kBackendPort);
  Dial d = dial("::1", 8080);
  ASSERT_EQ(d.err, 0) << std::strerror(d.err);
  ASSERT_TRUE(d.accepted.ok()) << "the backend saw no connection";
  EXPECT_EQ(local_of(d.accepted), "[fd00:3::7]:80");
  EXPECT_EQ(peer_of(d.client), "[::1]:8080") << "getpeername6 shows what the application asked for";
  auto orig = rnat6(d.client, kBackend, kBackendPort);
  ASSERT_TRUE(orig) << "sock_rnat6 remembers the socket";
  EXPECT_EQ(std::memcmp(orig->orig_ip.b, ip_of("::1").b, 16), 0);
  EXPECT_EQ(ntohs(orig->orig_port), 8080);
}

TEST_F(SockHooks6, ConnectToAnyIsTheHostAtLoopback) {
  publish6("::", 8080, IPPROTO_TCP, kBackendPort);
  Dial d = dial("::", 8080);
  ASSERT_EQ(d.err, 0) << std::strerror(d.err);
  EXPECT_TRUE(d.accepted.ok());
  EXPECT_EQ(peer_of(d.client), "[::1]:8080");
}

TEST_F(SockHooks6, GatewayAddressAndAPublishOfItsOwn) {
  publish6(kGateway, 8083, IPPROTO_TCP, kBackendPort);
  Dial d = dial(kGateway, 8083);
  ASSERT_EQ(d.err, 0) << std::strerror(d.err);
  EXPECT_TRUE(d.accepted.ok());
  EXPECT_EQ(peer_of(d.client), "[fd00:3::1]:8083");
  EXPECT_EQ(dial("::1", 8083).err, ECONNREFUSED) << "published on the gateway only";
}

TEST_F(SockHooks6, OnlyHostAddressesAreRedirected) {
  publish6("::", 8080, IPPROTO_TCP, kBackendPort);
  ASSERT_EQ(dial("::1", 8080).err, 0) << "published on every host address";
  // The container's own subnet is no host address: left as it is (and
  // unroutable here), never sent to the backend.
  EXPECT_EQ(dial("fd00:3::9", 8080).err, ENETUNREACH);
}

TEST_F(SockHooks6, Ipv4PublishesAreNotReachedOverIpv6) {
  add_publish(*ep_, Publish{0, 7070, IPPROTO_TCP, htonl(0x0a090007), 80, 1, 7});
  publish6("::1", 8081, IPPROTO_TCP, kBackendPort);
  ASSERT_EQ(dial("::1", 8081).err, 0) << "the IPv6 publish works";
  EXPECT_EQ(dial("::1", 7070).err, ECONNREFUSED) << "no IPv4 backend for [::1]";
  // An IPv4-mapped peer is IPv4's business: the IPv6-only port is not there.
  EXPECT_EQ(dial("::ffff:127.0.0.1", 8081, nullptr, false).err, ECONNREFUSED);
}

TEST_F(SockHooks6, SocketBoundToLoopbackIsLeftAlone) {
  publish6("::", 8080, IPPROTO_TCP, kBackendPort);
  ASSERT_EQ(dial("::1", 8080).err, 0) << "an unbound socket is redirected";
  // ::1 as a source cannot leave lo towards a container: refused, not EINVAL.
  EXPECT_EQ(dial("::1", 8080, "::1").err, ECONNREFUSED);
}

TEST_F(SockHooks6, UdpSendtoAndRecvfromShowTheAddressAskedFor) {
  publish6("::", 5353, IPPROTO_UDP, 53);
  Fd server = bound(SOCK_DGRAM, kBackend, 53);
  Fd client = socket6(SOCK_DGRAM);
  sockaddr_in6 to = sa6("::1", 5353);
  ASSERT_EQ(sendto(client.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1);
  char buf[8];
  sockaddr_in6 from{};
  socklen_t len = sizeof from;
  ASSERT_EQ(recvfrom(server.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len), 1)
      << "the backend got no datagram";
  ASSERT_EQ(sendto(server.get(), "y", 1, 0, reinterpret_cast<sockaddr*>(&from), len), 1);
  sockaddr_in6 reply_from{};
  len = sizeof reply_from;
  ASSERT_EQ(
      recvfrom(client.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&reply_from), &len),
      1);
  EXPECT_EQ(str(reply_from), "[::1]:5353") << "recvmsg6 shows the address sent to";
}

TEST_F(SockHooks6, BindOfAPublishedIpv6PortFails) {
  publish6("::1", 8081, IPPROTO_TCP, kBackendPort);
  publish6("::", 8084, IPPROTO_UDP, 53);
  EXPECT_EQ(bind_errno(SOCK_STREAM, "::1", 8081), EPERM);
  EXPECT_EQ(bind_errno(SOCK_STREAM, "::", 8081), EPERM) << "[::] takes every address";
  EXPECT_EQ(bind_errno(SOCK_STREAM, kGateway, 8081), 0) << "published on ::1 only";
  EXPECT_EQ(bind_errno(SOCK_DGRAM, "::1", 8081), 0) << "TCP's port, not UDP's";
  EXPECT_EQ(bind_errno(SOCK_STREAM, "::1", 8090), 0);
  EXPECT_EQ(bind_errno(SOCK_DGRAM, kGateway, 8084), EPERM) << ":: is every host address";
  EXPECT_EQ(bind_errno(SOCK_DGRAM, "::1", 0), 0) << "an ephemeral port";
  set_host_cfg(cookie_, MOAT_HOST_F_RUNTIME_BINDS);
  EXPECT_EQ(bind_errno(SOCK_STREAM, "::1", 8081), 0) << "the runtime binds its ports itself";
}

TEST_F(SockHooks6, OtherNamespacesAreLeftAlone) {
  publish6("::", 8080, IPPROTO_TCP, kBackendPort);
  publish6("::1", 8081, IPPROTO_TCP, kBackendPort);
  ASSERT_EQ(dial("::1", 8080).err, 0) << "the namespace the hooks serve";
  ASSERT_EQ(bind_errno(SOCK_STREAM, "::1", 8081), EPERM);
  set_host_cfg(cookie_ + 1, 0);  // the hooks serve some other namespace
  EXPECT_EQ(dial("::1", 8080).err, ECONNREFUSED);
  EXPECT_EQ(bind_errno(SOCK_STREAM, "::1", 8081), 0);
}

}  // namespace
}  // namespace moat_test
