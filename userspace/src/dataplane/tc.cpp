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

// One RTM_GETTFILTER for our slot (handle, priority, any protocol, "bpf"),
// as libbpf's bpf_tc_query() asks, with an ACK so that every request ends
// in exactly one NLMSG_ERROR (0 after the filter, or the error).
struct FilterQuery {
  nlmsghdr nh;
  tcmsg tc;
  char attrs[16];
};

void make_query(FilterQuery& q, uint32_t seq, int ifindex, bool ingress) {
  std::memset(&q, 0, sizeof q);
  q.nh.nlmsg_type = RTM_GETTFILTER;
  q.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  q.nh.nlmsg_seq = seq;
  q.tc.tcm_family = AF_UNSPEC;
  q.tc.tcm_ifindex = ifindex;
  q.tc.tcm_handle = kTcHandle;
  q.tc.tcm_parent = TC_H_MAKE(TC_H_CLSACT, ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
  q.tc.tcm_info = TC_H_MAKE(kTcPriority << 16, htons(ETH_P_ALL));
  auto* kind = reinterpret_cast<nlattr*>(q.attrs);
  kind->nla_type = TCA_KIND;
  kind->nla_len = NLA_HDRLEN + sizeof("bpf");
  std::memcpy(q.attrs + NLA_HDRLEN, "bpf", sizeof("bpf"));
  q.nh.nlmsg_len = NLMSG_LENGTH(sizeof(tcmsg)) + NLA_ALIGN(kind->nla_len);
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
  std::string buf;
  for (size_t i = from; i < to; ++i) {
    FilterQuery q;
    make_query(q, static_cast<uint32_t>(i + 1), ifindexes[i / 2], i % 2 == 0);
    buf.append(reinterpret_cast<const char*>(&q), NLMSG_ALIGN(q.nh.nlmsg_len));
  }
  if (send(sock, buf.data(), buf.size(), 0) != static_cast<ssize_t>(buf.size())) return false;
  size_t pending = to - from;
  alignas(nlmsghdr) char rx[32768];
  while (pending > 0) {
    ssize_t n = recv(sock, rx, sizeof rx, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    auto len = static_cast<unsigned>(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(rx); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_seq < from + 1 || nh->nlmsg_seq > to) continue;  // not ours
      size_t i = nh->nlmsg_seq - 1;
      if (nh->nlmsg_type == RTM_NEWTFILTER) out[i] = bpf_filter_id(nh);
      if (nh->nlmsg_type == NLMSG_ERROR) {
        if (reinterpret_cast<nlmsgerr*>(NLMSG_DATA(nh))->error != 0) out[i] = 0;
        --pending;
      }
    }
  }
  return true;
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

Result<bool> attach(const std::string& ifname, int ifindex, const PinnedProgs& progs,
                    bool* qdisc_created) {
  auto hook = make_hook(ifindex, BPF_TC_INGRESS);
  int rc = bpf_tc_hook_create(&hook);
  if (rc && rc != -EEXIST) return fail_errno("create clsact qdisc on " + ifname, rc);
  if (rc == 0) *qdisc_created = true;
  bool changed = false;
  for (auto [point, fd, id] : {std::tuple{BPF_TC_INGRESS, progs.ingress.get(), progs.ingress_id},
                               std::tuple{BPF_TC_EGRESS, progs.egress.get(), progs.egress_id}}) {
    if (id == 0) continue;  // no program for this direction
    // A qdisc made just now holds no filter: no need to ask (a netlink
    // round trip each, on a container's start).
    uint32_t cur = rc == 0 ? 0 : attached_prog_id(ifindex, point);
    if (cur == id) continue;
    auto h = make_hook(ifindex, point);
    auto o = make_opts(fd);
    o.flags = cur ? BPF_TC_F_REPLACE : 0;
    if (int arc = bpf_tc_attach(&h, &o); arc)
      return fail_errno(
          std::string("attach to ") + ifname + (point == BPF_TC_INGRESS ? " ingress" : " egress"),
          arc);
    changed = true;
  }
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
