// flows.cpp - matching, rewrite rules and frame rewrites of flows.h.
#include "flows.h"

#include <netinet/in.h>
#include <time.h>

#include <algorithm>

namespace fuzz {

namespace {

// The model's clock against the kernel's: the model judges a frame just
// before or after the kernel did, a margin either way covers it.
constexpr int64_t kClockMarginNs = 200'000'000;

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // the data path's clock
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

bool TcpClose::past_hold() const {
  return closed_ns >= 0 && monotonic_ns() + kClockMarginNs >=
                               closed_ns + int64_t(MOAT_CT_TIMEOUT_TCP_CLOSE) * 1'000'000'000;
}

void TcpClose::see(uint8_t tcp_flags, bool reply, uint32_t seq) {
  if (seq + (1u << 30) > (1u << 31)) return;
  if (tcp_flags & kTcpFin) fins |= reply ? 2 : 1;
  if (closed_ns < 0 && ((tcp_flags & kTcpRst) || fins == 3))
    closed_ns = monotonic_ns() - kClockMarginNs;
}

std::optional<FlowMatch> FlowTable::find(const Tuple& t) const {
  for (size_t i = 0; i < flows_.size(); i++) {
    const Flow& f = flows_[i];
    if (t == f.t0 || t == f.t1 || t == f.t2) return FlowMatch{i, false};
  }
  for (size_t i = 0; i < flows_.size(); i++) {
    const Flow& f = flows_[i];
    if (t == f.t0.reversed() || t == f.t1.reversed() || t == f.t2.reversed())
      return FlowMatch{i, true};
  }
  return std::nullopt;
}

bool arrives(const Flow& f, const Tuple& t, Hook h) {
  if (f.dnat == Dnat::None && !f.snat) return true;
  const Tuple r0 = f.t0.reversed(), r1 = f.t1.reversed(), r2 = f.t2.reversed();
  const bool world = f.dnat == Dnat::World, container = f.dnat == Dnat::Container,
             hairpin = f.dnat == Dnat::Hairpin;
  switch (h) {
    case Hook::FromWorld:
      return (world && t == f.t0) || (f.snat && t == r2);
    case Hook::ToWorld:
      return (world && t == r1) || (f.snat && t == f.t0);
    case Hook::FromContainer:
      return (world && t == r1) || (container && (t == f.t0 || t == r1)) ||
             (hairpin && (t == f.t0 || t == r2)) || (f.snat && t == f.t0);
    case Hook::ToContainer:
      return (world && t == f.t1) || (container && (t == f.t1 || t == r1)) ||
             (hairpin && (t == f.t2 || t == r0)) || (f.snat && t == r0);
  }
  return false;
}

std::optional<FlowMatch> FlowTable::find_at(const Tuple& t, Hook h) const {
  for (bool reply : {false, true})
    for (size_t i = 0; i < flows_.size(); i++) {
      const Flow& f = flows_[i];
      const Tuple u = reply ? t.reversed() : t;
      if ((u == f.t0 || u == f.t1 || u == f.t2) && arrives(f, t, h)) return FlowMatch{i, reply};
    }
  return std::nullopt;
}

bool FlowTable::taken(const Tuple& t) const { return find(t).has_value(); }

size_t FlowTable::add(const Flow& f) {
  flows_.push_back(f);
  return flows_.size() - 1;
}

namespace {

std::optional<Rewrite> dnat_rewrite(const Flow& f, bool reply, const Tuple& t, Hook h,
                                    uint32_t ifindex) {
  switch (f.dnat) {
    case Dnat::None:
      return std::nullopt;
    case Dnat::World:
      if (h == Hook::FromWorld && !reply && t == f.t0) return Rewrite{f.t1, false};
      if (h == Hook::ToWorld && reply && t == f.t1.reversed())
        return Rewrite{f.t0.reversed(), false};
      return std::nullopt;
    case Dnat::Container:
      if (ifindex != f.client_ifindex) return std::nullopt;
      if (h == Hook::FromContainer && !reply && t == f.t0) return Rewrite{f.t1, false};
      if (h == Hook::ToContainer && reply && t == f.t1.reversed())
        return Rewrite{f.t0.reversed(), false};
      return std::nullopt;
    case Dnat::Hairpin:
      if (ifindex != f.client_ifindex || h != Hook::FromContainer) return std::nullopt;
      if (!reply && t == f.t0) return Rewrite{f.t2, true};
      if (reply && t == f.t2.reversed()) return Rewrite{f.t0.reversed(), true};
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace

std::optional<Rewrite> FlowTable::rewrite(const FlowMatch& m, const Tuple& t, Hook h,
                                          uint32_t ifindex) const {
  const Flow& f = flows_[m.index];
  std::optional<Rewrite> r = dnat_rewrite(f, m.reply, t, h, ifindex);
  if (r && r->to == t) return std::nullopt;
  if (r || !f.snat) return r;
  if (h == Hook::ToWorld && !m.reply && t == f.t1) return Rewrite{f.t2, false};
  if (h == Hook::FromWorld && m.reply && t == f.t2.reversed())
    return Rewrite{f.t1.reversed(), false};
  return std::nullopt;
}

namespace {

// Addresses, then ports or the echo id of the L4 header at ip.l4_off().
void set_tuple(Bytes& b, const Ip4& ip, const Tuple& to, bool with_l4) {
  put32(b, ip.off + 12, to.saddr);
  put32(b, ip.off + 16, to.daddr);
  if (!with_l4) return;
  const size_t o = ip.l4_off(), n = ip.l4_avail();
  if (has_ports(ip.proto) && n >= 4) {
    put16(b, o, to.sport);
    put16(b, o + 2, to.dport);
  } else if (ip.proto == IPPROTO_ICMP && n >= 6) {
    if (b[o] == 8) put16(b, o + 4, to.sport);
    if (b[o] == 0) put16(b, o + 4, to.dport);
  }
}

}  // namespace

Bytes rewrite_frame(const Bytes& frame, const Tuple& to) {
  Bytes out = frame;
  const Ip4 ip = parse_ip4(out, 14);
  set_tuple(out, ip, to, !ip.later_fragment());
  return out;
}

Bytes rewrite_icmp_error(const Bytes& frame, const Tuple& q_from, const Tuple& q_to) {
  Bytes out = frame;
  const Ip4 ip = parse_ip4(out, 14);
  if (ip.dst == q_from.saddr) put32(out, ip.off + 16, q_to.saddr);
  if (ip.src == q_from.daddr) put32(out, ip.off + 12, q_to.daddr);
  // A quoted later fragment's bytes were read as ports to find the flow: rewritten alike.
  Ip4 q = parse_ip4(out, ip.l4_off() + 8);
  set_tuple(out, q, q_to, true);
  return out;
}

void swap_macs(Bytes& frame) {
  if (frame.size() < 12) return;
  std::swap_ranges(frame.begin(), frame.begin() + 6, frame.begin() + 6);
}

}  // namespace fuzz
