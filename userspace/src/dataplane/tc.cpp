#include "dataplane/tc.h"

#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
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
