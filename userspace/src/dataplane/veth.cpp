#include "dataplane/veth.h"

#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "util/fd.h"

namespace moat {

namespace {

struct Link {
  int ifindex = 0;
  std::string name;
  std::optional<Mac> address;
  std::optional<int> peer;          // IFLA_LINK
  std::optional<int> peer_netnsid;  // IFLA_LINK_NETNSID: the peer is in another namespace
  std::string kind;                 // IFLA_INFO_KIND: "veth", "bridge", "" for none
  std::optional<int> master;        // IFLA_MASTER: the bridge a port is enslaved to
};

Result<Fd> open_rtnl() {
  Fd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd.ok()) return fail_errno("open an rtnetlink socket", -1);
  // A kernel that never answers must not hang the agent.
  timeval tv{2, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// RTM_GETLINK: a dump of every link (ifindex 0) or the one link `ifindex`,
// in the namespace with id `netnsid` as the caller's namespace numbers it
// (IFLA_TARGET_NETNSID), or in the caller's own.
Result<void> send_getlink(int fd, uint32_t seq, int ifindex, std::optional<int> netnsid = {}) {
  struct {
    nlmsghdr h;
    ifinfomsg i;
    rtattr a;
    int32_t nsid;
  } req{};
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  if (netnsid) {
    req.a.rta_type = IFLA_TARGET_NETNSID;
    req.a.rta_len = RTA_LENGTH(sizeof(int32_t));
    req.nsid = *netnsid;
    req.h.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg)) + RTA_LENGTH(sizeof(int32_t));
  }
  req.h.nlmsg_type = RTM_GETLINK;
  req.h.nlmsg_flags = NLM_F_REQUEST | (ifindex == 0 ? NLM_F_DUMP : 0);
  req.h.nlmsg_seq = seq;
  req.i.ifi_family = AF_UNSPEC;
  req.i.ifi_index = ifindex;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, &req, req.h.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) <
      0)
    return fail_errno("rtnetlink: send RTM_GETLINK", -1);
  return {};
}

Link parse_link(const nlmsghdr* h) {
  Link l;
  auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
  l.ifindex = ifi->ifi_index;
  int len = static_cast<int>(IFLA_PAYLOAD(h));
  for (auto* a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    auto* data = static_cast<const char*>(RTA_DATA(a));
    size_t n = RTA_PAYLOAD(a);
    if (a->rta_type == IFLA_IFNAME) {
      l.name.assign(data, strnlen(data, n));
    } else if (a->rta_type == IFLA_ADDRESS && n == 6) {
      Mac m;
      std::memcpy(m.data(), data, 6);
      l.address = m;
    } else if (a->rta_type == IFLA_LINK && n >= 4) {
      int32_t v;
      std::memcpy(&v, data, 4);
      l.peer = v;
    } else if (a->rta_type == IFLA_MASTER && n >= 4) {
      int32_t v;
      std::memcpy(&v, data, 4);
      l.master = v;
    } else if (a->rta_type == IFLA_LINK_NETNSID && n >= 4) {
      int32_t v;
      std::memcpy(&v, data, 4);
      l.peer_netnsid = v;
    } else if (a->rta_type == IFLA_LINKINFO) {
      int inner = static_cast<int>(n);
      for (auto* b = static_cast<const rtattr*>(RTA_DATA(a)); RTA_OK(b, inner);
           b = RTA_NEXT(b, inner)) {
        if (b->rta_type != IFLA_INFO_KIND) continue;
        auto* k = static_cast<const char*>(RTA_DATA(b));
        l.kind.assign(k, strnlen(k, RTA_PAYLOAD(b)));
      }
    }
  }
  return l;
}

// The links of one RTM_GETLINK answer (a dump ends with NLMSG_DONE, a single
// get with its one RTM_NEWLINK).
Result<std::vector<Link>> recv_links(int fd, uint32_t seq, bool dump) {
  std::vector<Link> links;
  // Not zeroed (make_unique_for_overwrite): recv() says how much it wrote,
  // and zeroing 64 KiB was a fifth of finding a container's veth.
  constexpr size_t kBuf = 64 * 1024;
  auto buf = std::make_unique_for_overwrite<char[]>(kBuf);
  for (;;) {
    ssize_t n = ::recv(fd, buf.get(), kBuf, MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno("rtnetlink: receive links", -1);
    }
    if (static_cast<size_t>(n) > kBuf) return fail("rtnetlink: a link message was truncated");
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.get()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_DONE) return links;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) return links;
        return std::unexpected(Error{-e->error, "rtnetlink: RTM_GETLINK"});
      }
      if (h->nlmsg_type != RTM_NEWLINK) continue;
      links.push_back(parse_link(h));
      if (!dump) return links;
    }
  }
}

Result<std::vector<Link>> get_links(int ifindex, std::optional<int> netnsid = {}) {
  auto fd = open_rtnl();
  if (!fd) return std::unexpected(fd.error());
  constexpr uint32_t kSeq = 1;
  if (auto ok = send_getlink(fd->get(), kSeq, ifindex, netnsid); !ok)
    return std::unexpected(ok.error());
  return recv_links(fd->get(), kSeq, ifindex == 0);
}

// Which link inside the container: the one with a MAC (Docker names it), or
// the one with a name (CNI_IFNAME).
struct Wanted {
  std::optional<Mac> mac;
  std::string name;
  std::string text() const { return mac ? "MAC " + mac_str(*mac) : "name " + name; }
  bool matches(const Link& l) const {
    return mac ? l.address && *l.address == *mac : l.name == name;
  }
};

// The container-side link, as seen inside the container.
Result<Link> container_link(const std::vector<Link>& links, const Wanted& want,
                            const std::string& where) {
  for (const auto& l : links) {
    if (!want.matches(l)) continue;
    if (l.kind != "veth" || !l.peer || *l.peer <= 0)
      return fail(where + ": " + l.name + " (" + want.text() + ") is not a veth" +
                  (l.kind.empty() ? "" : " but a " + l.kind));
    return l;
  }
  return fail(where + ": no interface has " + want.text());
}

// Runs in a thread of its own: setns changes only the calling thread, and
// this one ends right after, so no thread of the caller ever changes netns.
Result<Link> lookup_in_netns(int nsfd, const Wanted& want, const std::string& where) {
  std::optional<Result<Link>> out;
  try {
    std::thread t([&] {
      if (::setns(nsfd, CLONE_NEWNET) != 0) {
        out = fail_errno("enter the network namespace of " + where, -1);
        return;
      }
      auto links = get_links(0);
      if (!links)
        out = std::unexpected(Error{links.error().err, where + ": " + links.error().context});
      else
        out = container_link(*links, want, where);
    });
    t.join();
  } catch (const std::system_error& e) {
    return fail("start a thread to enter " + where, e.code().value());
  }
  return std::move(*out);
}

Result<Fd> open_netns(const std::string& path, const std::string& where) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return fail_errno("open " + where, -1);
  // A SandboxKey seen outside dockerd's mount namespace is an empty file.
  int type = ::ioctl(fd.get(), NS_GET_NSTYPE);
  if (type != CLONE_NEWNET)
    return fail(where + " is not a network namespace" +
                (type < 0 ? " (a SandboxKey is one only in dockerd's mount namespace)" : ""));
  return fd;
}

// The peer in the caller's namespace: a veth whose own IFLA_LINK points back
// at the container's link. An ifindex alone could name anything here when the
// caller is not in dockerd's namespace.
Result<std::string> peer_here(const Link& inside, const std::string& where) {
  auto links = get_links(*inside.peer);
  if (!links && links.error().err == ENODEV)
    return fail(where + ": " + inside.name + "'s peer (ifindex " + std::to_string(*inside.peer) +
                ") is not in this network namespace (run in dockerd's)");
  if (!links) return std::unexpected(links.error());
  if (links->empty())
    return fail("rtnetlink: no answer for ifindex " + std::to_string(*inside.peer));
  const auto& l = links->front();
  if (l.kind != "veth" || l.peer != inside.ifindex)
    return fail(where + ": ifindex " + std::to_string(*inside.peer) + " here is " + l.name +
                ", not the peer of " + inside.name + " (run in dockerd's network namespace)");
  return l.name;
}

Result<std::string> resolve(const std::string& path, const std::string& mac_text_in,
                            const std::string& where) {
  auto mac = parse_mac(mac_text_in);
  if (!mac) return fail(where + ": not a MAC address: \"" + mac_text_in + "\"");
  auto ns = open_netns(path, where);
  if (!ns) return std::unexpected(ns.error());
  auto inside = lookup_in_netns(ns->get(), Wanted{*mac, {}}, where);
  if (!inside) return std::unexpected(inside.error());
  return peer_here(*inside, where);
}

}  // namespace

Result<std::string> host_veth(pid_t container_pid, const std::string& mac) {
  std::string where = "container process " + std::to_string(container_pid);
  if (container_pid <= 0) return fail(where + ": not a process id (is the container running?)");
  std::string path = "/proc/" + std::to_string(container_pid) + "/ns/net";
  if (::access(("/proc/" + std::to_string(container_pid)).c_str(), F_OK) != 0 && errno == ENOENT)
    return fail(where + " is gone (the container stopped)");
  return resolve(path, mac, where);
}

Result<std::string> host_veth_in(const std::string& netns_path, const std::string& mac) {
  return resolve(netns_path, mac, "network namespace " + netns_path);
}

Result<HostSide> host_side_of(const std::string& netns_path, const std::string& ifname) {
  std::string where = "network namespace " + netns_path;
  auto ns = open_netns(netns_path, where);
  if (!ns) return std::unexpected(ns.error());
  auto inside = lookup_in_netns(ns->get(), Wanted{std::nullopt, ifname}, where);
  if (!inside) return std::unexpected(inside.error());
  if (!inside->address) return fail(where + ": " + ifname + " has no MAC address");
  auto veth = peer_here(*inside, where);
  if (!veth) return std::unexpected(veth.error());
  HostSide out{*veth, "", *inside->address};
  auto here = get_links(*inside->peer);
  if (!here) return std::unexpected(here.error());
  if (!here->empty() && here->front().master && *here->front().master > 0) {
    auto master = get_links(*here->front().master);
    if (!master) return std::unexpected(master.error());
    if (!master->empty() && master->front().kind == "bridge") out.bridge = master->front().name;
  }
  return out;
}

Result<Mac> veth_peer_mac(const std::string& host_ifname) {
  std::string where = "interface " + host_ifname;
  unsigned idx = if_nametoindex(host_ifname.c_str());
  if (idx == 0) return fail_errno(where + " does not exist in this network namespace", -1);
  auto here = get_links(static_cast<int>(idx));
  if (!here) return std::unexpected(here.error());
  if (here->empty()) return fail("rtnetlink: no answer for " + where);
  const Link& host = here->front();
  if (host.kind != "veth" || !host.peer || *host.peer <= 0)
    return fail(where + " is not a veth" + (host.kind.empty() ? "" : " but a " + host.kind) +
                ": moat cannot learn the container's MAC; give the attachment's \"mac\"");
  auto peer = get_links(*host.peer, host.peer_netnsid);
  if (!peer) return fail(where + ": its peer: " + peer.error().message(), peer.error().err);
  if (peer->empty() || !peer->front().address) return fail(where + ": its peer has no MAC address");
  return *peer->front().address;
}

Result<std::map<std::string, int>> veth_ports(const std::set<std::string>& bridges) {
  auto links = get_links(0);
  if (!links) return std::unexpected(links.error());
  std::set<int> masters;
  for (const Link& l : *links)
    if (l.kind == "bridge" && bridges.contains(l.name)) masters.insert(l.ifindex);
  std::map<std::string, int> out;
  for (const Link& l : *links)
    if (l.kind == "veth" && l.master && masters.contains(*l.master)) out[l.name] = l.ifindex;
  return out;
}

}  // namespace moat
