#include "dataplane/tc.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

#include "util/fd.h"

namespace moat {
namespace {

constexpr uint32_t kTcHandle = 0x6d6f;
constexpr uint32_t kTcPriority = 0x6d6f;

bpf_tc_hook make_hook(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook h{};
  h.sz = sizeof(h);
  h.ifindex = ifindex;
  h.attach_point = point;
  return h;
}

bpf_tc_opts make_opts(int prog_fd = 0) {
  bpf_tc_opts o{};
  o.sz = sizeof(o);
  o.handle = kTcHandle;
  o.priority = kTcPriority;
  o.prog_fd = prog_fd;
  return o;
}

}  // namespace

uint32_t attached_prog_id(int ifindex, bpf_tc_attach_point point) {
  auto hook = make_hook(ifindex, point);
  auto opts = make_opts();
  if (bpf_tc_query(&hook, &opts) != 0) return 0;
  return opts.prog_id;
}

namespace {

// Netlink messages built into one buffer, attributes appended to the last.
class Requests {
 public:
  // Requests are numbered from `first_seq`.
  explicit Requests(uint32_t first_seq = 1) : seq_(first_seq - 1), first_(first_seq) {}
  void begin(uint16_t type, uint16_t flags, const tcmsg& tc) {
    start_ = buf_.size();
    nlmsghdr nh{};
    nh.nlmsg_type = type;
    nh.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    nh.nlmsg_seq = ++seq_;
    append(&nh, sizeof nh);
    append(&tc, sizeof tc);
  }
  void attr(uint16_t type, const void* data, size_t len) {
    nlattr a{static_cast<uint16_t>(NLA_HDRLEN + len), type};
    append(&a, sizeof a);
    append(data, len);
  }
  size_t begin_options() {  // TCA_OPTIONS, nested
    size_t at = buf_.size();
    attr(TCA_OPTIONS | NLA_F_NESTED, nullptr, 0);
    return at;
  }
  void end_options(size_t at) { set_u16(at, buf_.size() - at); }
  // Every begin() needs its end(): a message of length 0 ends the batch.
  void end() { set_u32(start_, buf_.size() - start_); }
  const std::string& bytes() const { return buf_; }
  uint32_t seq() const { return seq_; }  // the last request's
  uint32_t first() const { return first_; }

 private:
  void append(const void* data, size_t len) {
    if (len) buf_.append(static_cast<const char*>(data), len);
    buf_.resize(NLMSG_ALIGN(buf_.size()), '\0');
  }
  // nlmsg_len (u32) and nla_len (u16) both come first in their headers.
  void set_u32(size_t at, size_t len) {
    auto l = static_cast<uint32_t>(len);
    std::memcpy(&buf_[at], &l, sizeof l);
  }
  void set_u16(size_t at, size_t len) {
    auto l = static_cast<uint16_t>(len);
    std::memcpy(&buf_[at], &l, sizeof l);
  }
  std::string buf_;
  size_t start_ = 0;
  uint32_t seq_, first_;
};

tcmsg tc_of(int ifindex, uint32_t handle, uint32_t parent, uint32_t info) {
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = ifindex;
  tc.tcm_handle = handle;
  tc.tcm_parent = parent;
  tc.tcm_info = info;
  return tc;
}

// Our slot's tcmsg: handle and priority 0x6d6f, any protocol, clsact
// ingress or egress.
tcmsg slot_tc(int ifindex, bool ingress) {
  return tc_of(ifindex, kTcHandle,
               TC_H_MAKE(TC_H_CLSACT, ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS),
               TC_H_MAKE(kTcPriority << 16, htons(ETH_P_ALL)));
}

// Sends every request of `r` at once and reads until each has its ack
// (NLMSG_ERROR: 0 or -errno), handing `on_reply` every message that
// answers one, acks included, with the request's index (its sequence
// number less r.first()). Returns 0, or the positive errno of an exchange
// that broke off (EIO: a short send, or the end of the stream).
template <class OnReply>
int exchange_all(int sock, const Requests& r, OnReply on_reply) {
  const std::string& out = r.bytes();
  ssize_t sent = send(sock, out.data(), out.size(), 0);
  if (sent < 0) return errno;
  if (sent != static_cast<ssize_t>(out.size())) return EIO;
  const size_t count = r.seq() - r.first() + 1;
  std::vector<char> acked(count, 0);
  size_t pending = count;
  alignas(nlmsghdr) char rx[32768];
  while (pending > 0) {
    ssize_t n = recv(sock, rx, sizeof rx, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    auto len = static_cast<unsigned>(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(rx); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_seq < r.first() || nh->nlmsg_seq > r.seq()) continue;  // not ours
      size_t i = nh->nlmsg_seq - r.first();
      if (nh->nlmsg_type == NLMSG_ERROR) {
        if (acked[i]) continue;
        acked[i] = 1;
        --pending;
      }
      on_reply(i, nh);
    }
  }
  return 0;
}

// TCA_OPTIONS -> TCA_BPF_ID of an RTM_NEWTFILTER message; 0 without one.
uint32_t bpf_filter_id(const nlmsghdr* nh) {
  if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg))) return 0;
  auto* a = reinterpret_cast<const nlattr*>(static_cast<const char*>(NLMSG_DATA(nh)) +
                                            NLMSG_ALIGN(sizeof(tcmsg)));
  int left = static_cast<int>(nh->nlmsg_len - NLMSG_LENGTH(sizeof(tcmsg)));
  auto next = [](const nlattr* x, int& n) {
    n -= NLA_ALIGN(x->nla_len);
    return reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(x) +
                                           NLA_ALIGN(x->nla_len));
  };
  auto ok = [](const nlattr* x, int n) {
    return n >= static_cast<int>(NLA_HDRLEN) && x->nla_len >= NLA_HDRLEN && x->nla_len <= n;
  };
  for (; ok(a, left); a = next(a, left)) {
    if ((a->nla_type & NLA_TYPE_MASK) != TCA_OPTIONS) continue;
    int in = a->nla_len - NLA_HDRLEN;
    auto* b = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + NLA_HDRLEN);
    for (; ok(b, in); b = next(b, in))
      if ((b->nla_type & NLA_TYPE_MASK) == TCA_BPF_ID && b->nla_len >= NLA_HDRLEN + 4) {
        uint32_t id;
        std::memcpy(&id, reinterpret_cast<const char*>(b) + NLA_HDRLEN, 4);
        return id;
      }
  }
  return 0;
}

// One batch: requests [from, to) sent at once (request i asks about
// interface ifindexes[i / 2], ingress when i is even), their answers into
// out[i]. False when the exchange broke off.
bool query_batch(int sock, const std::vector<int>& ifindexes, size_t from, size_t to,
                 std::vector<uint32_t>& out) {
  // One RTM_GETTFILTER for our slot as libbpf's bpf_tc_query() asks, with
  // an ACK so that every request ends in exactly one NLMSG_ERROR (0 after
  // the filter, or the error).
  Requests r(static_cast<uint32_t>(from + 1));
  for (size_t i = from; i < to; ++i) {
    r.begin(RTM_GETTFILTER, 0, slot_tc(ifindexes[i / 2], i % 2 == 0));
    r.attr(TCA_KIND, "bpf", sizeof("bpf"));
    r.end();
  }
  return exchange_all(sock, r, [&](size_t k, const nlmsghdr* nh) {
           size_t i = from + k;
           if (nh->nlmsg_type == RTM_NEWTFILTER) out[i] = bpf_filter_id(nh);
           if (nh->nlmsg_type == NLMSG_ERROR &&
               reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(nh))->error != 0)
             out[i] = 0;
         }) == 0;
}

}  // namespace

std::vector<std::pair<uint32_t, uint32_t>> attached_prog_ids(const std::vector<int>& ifindexes) {
  std::vector<std::pair<uint32_t, uint32_t>> ids(ifindexes.size());
  if (ifindexes.empty()) return ids;
  Fd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.ok()) return ids;
  timeval limit{2, 0};  // a kernel that stops answering costs the fast check, not the apply
  setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  // An answer takes a page or two of the receive buffer: a batch of 16
  // requests stays well inside 256 KiB (asked for; the default is 208 KiB).
  // A buffer that overflows anyway fails the exchange (ENOBUFS), and every
  // interface takes attach()'s way.
  int rcvbuf = 1 << 18;
  setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  constexpr size_t kBatch = 16;
  std::vector<uint32_t> got(ifindexes.size() * 2, 0);
  for (size_t from = 0; from < got.size(); from += kBatch)
    if (!query_batch(sock.get(), ifindexes, from, std::min(got.size(), from + kBatch), got))
      return std::vector<std::pair<uint32_t, uint32_t>>(ifindexes.size());
  for (size_t i = 0; i < ifindexes.size(); ++i) ids[i] = {got[2 * i], got[2 * i + 1]};
  return ids;
}

namespace {

// Our filter in one direction, as bpf_tc_attach() makes it (direct action,
// named "<program>:[<id>]"); created only where there is none (EEXIST).
void add_filter(Requests& r, int ifindex, bool ingress, int fd, const std::string& name,
                uint32_t id) {
  r.begin(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, slot_tc(ifindex, ingress));
  r.attr(TCA_KIND, "bpf", sizeof("bpf"));
  size_t opts = r.begin_options();
  auto ufd = static_cast<uint32_t>(fd);
  r.attr(TCA_BPF_FD, &ufd, sizeof ufd);
  std::string label = name + ":[" + std::to_string(id) + "]";
  r.attr(TCA_BPF_NAME, label.c_str(), label.size() + 1);
  uint32_t flags = TCA_BPF_FLAG_ACT_DIRECT;
  r.attr(TCA_BPF_FLAGS, &flags, sizeof flags);
  r.end_options(opts);
  r.end();
}

// Sends every request at once; by request (0, 1, ...), the error each was
// acknowledged with (0: done, -errno). Returns 0, or exchange_all()'s errno.
int send_all(const Requests& r, std::vector<int>& acks) {
  Fd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.ok()) return errno;
  timeval limit{2, 0};
  setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  acks.assign(r.seq() - r.first() + 1, 0);
  return exchange_all(sock.get(), r, [&](size_t i, const nlmsghdr* nh) {
    if (nh->nlmsg_type == NLMSG_ERROR)
      acks[i] = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(nh))->error;
  });
}

// The request for a clsact qdisc on `ifindex` (EEXIST when it has one).
void add_clsact(Requests& r, int ifindex) {
  r.begin(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL,
          tc_of(ifindex, TC_H_MAKE(TC_H_CLSACT, 0), TC_H_CLSACT, 0));
  r.attr(TCA_KIND, "clsact", sizeof("clsact"));
  r.end();
}

}  // namespace

Result<bool> make_clsact(int ifindex) {
  Requests r;
  add_clsact(r, ifindex);
  std::vector<int> acks;
  if (int err = send_all(r, acks); err) return fail("rtnetlink: clsact qdisc", err);
  if (acks[0] == -EEXIST) return false;
  if (acks[0] != 0)
    return fail("create clsact qdisc on interface " + std::to_string(ifindex), -acks[0]);
  return true;
}

// The clsact qdisc and both filters asked for at once over one socket:
// libbpf's bpf_tc_hook_create() and bpf_tc_attach() open a socket each and
// ask the program's name (five exchanges and three sockets for a new
// container's veth). A filter already there (EEXIST) is ours to check and
// replace the way libbpf does.
Result<bool> attach(const std::string& ifname, int ifindex, const PinnedProgs& progs,
                    bool* qdisc_created) {
  Requests r;
  add_clsact(r, ifindex);
  struct Direction {
    bpf_tc_attach_point point;
    int fd;
    uint32_t id;
    uint32_t seq;
  };
  std::vector<Direction> dirs;
  for (auto [point, fd, id, name] :
       {std::tuple{BPF_TC_INGRESS, progs.ingress.get(), progs.ingress_id, &progs.ingress_name},
        std::tuple{BPF_TC_EGRESS, progs.egress.get(), progs.egress_id, &progs.egress_name}}) {
    if (id == 0) continue;  // no program for this direction
    add_filter(r, ifindex, point == BPF_TC_INGRESS, fd, *name, id);
    dirs.push_back({point, fd, id, r.seq()});
  }
  std::vector<int> acks;
  if (int err = send_all(r, acks); err) return fail("rtnetlink: attach to " + ifname, err);
  // The kernel ran every request, whatever the others' outcome: on a
  // failure, what this call created goes again (the qdisc last), so that
  // nothing is left that no record names. Acks are -errno: fail() with the
  // code itself (fail_errno() would take -EPERM for "see errno").
  auto undo = [&](std::string where, int err) -> Result<bool> {
    for (const auto& d : dirs) {
      if (acks[d.seq - 1] != 0) continue;
      auto h = make_hook(ifindex, d.point);
      auto o = make_opts();
      bpf_tc_detach(&h, &o);
    }
    if (acks[0] == 0) remove_clsact(ifindex);
    return fail(std::move(where), err);
  };
  int rc = acks[0];
  if (rc && rc != -EEXIST) return undo("create clsact qdisc on " + ifname, -rc);
  bool changed = false;
  for (const auto& d : dirs) {
    std::string where =
        std::string("attach to ") + ifname + (d.point == BPF_TC_INGRESS ? " ingress" : " egress");
    int frc = acks[d.seq - 1];
    if (frc == 0) {
      changed = true;
      continue;
    }
    if (frc != -EEXIST) return undo(where, -frc);
    // A filter in our slot already: replaced unless it runs this program.
    if (attached_prog_id(ifindex, d.point) == d.id) continue;
    auto h = make_hook(ifindex, d.point);
    auto o = make_opts(d.fd);
    o.flags = BPF_TC_F_REPLACE;
    if (int arc = bpf_tc_attach(&h, &o); arc) return undo(where, arc < 0 ? -arc : arc);
    changed = true;
  }
  if (rc == 0) *qdisc_created = true;
  return changed;
}

Result<void> detach(const std::string& ifname, bool qdisc_created, const std::set<uint32_t>& ours) {
  int ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (ifindex == 0) return {};
  if (auto r = detach_at(ifindex, ours); !r)
    return fail_errno("detach from " + ifname, r.error().err);
  return qdisc_created ? remove_clsact(ifindex) : Result<void>();
}

namespace {

// How many filters (of anyone) one clsact direction holds, by an rtnetlink
// dump: libbpf can only ask about one handle and priority at a time.
Result<int> filters_at(int ifindex, uint32_t parent) {
  Fd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.ok()) return fail_errno("open rtnetlink", errno);
  struct {
    nlmsghdr nh;
    tcmsg tc;
  } req{};
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg));
  req.nh.nlmsg_type = RTM_GETTFILTER;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.tc.tcm_family = AF_UNSPEC;
  req.tc.tcm_ifindex = ifindex;
  req.tc.tcm_parent = parent;
  if (send(sock.get(), &req, req.nh.nlmsg_len, 0) < 0) return fail_errno("dump tc filters", errno);
  int count = 0;
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = recv(sock.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno("dump tc filters", errno);
    auto len = static_cast<unsigned>(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_type == NLMSG_DONE) return count;
      if (nh->nlmsg_type == NLMSG_ERROR) {
        int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(nh))->error;
        if (err == 0) return count;
        if (err == EINVAL || err == ENOENT) return 0;  // no clsact qdisc
        return fail_errno("dump tc filters", err);
      }
      if (nh->nlmsg_type == RTM_NEWTFILTER) ++count;
    }
  }
}

}  // namespace

Result<int> clsact_filters(int ifindex) {
  int total = 0;
  for (uint32_t min : {TC_H_MIN_INGRESS, TC_H_MIN_EGRESS}) {
    auto n = filters_at(ifindex, TC_H_MAKE(TC_H_CLSACT, min));
    if (!n) return n;
    total += *n;
  }
  return total;
}

Result<void> remove_clsact(int ifindex) {
  auto h = make_hook(ifindex, static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  if (int rc = bpf_tc_hook_destroy(&h); rc && rc != -ENOENT && rc != -EINVAL)
    return fail_errno("remove clsact qdisc from interface " + std::to_string(ifindex), rc);
  return {};
}

Result<bool> detach_at(int ifindex, const std::set<uint32_t>& ours) {
  bool any = false;
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    uint32_t cur = attached_prog_id(ifindex, point);
    if (cur == 0 || !ours.contains(cur)) continue;
    auto h = make_hook(ifindex, point);
    auto o = make_opts();
    if (int rc = bpf_tc_detach(&h, &o); rc && rc != -ENOENT)
      return fail_errno("detach from interface " + std::to_string(ifindex), rc);
    any = true;
  }
  return any;
}

}  // namespace moat
