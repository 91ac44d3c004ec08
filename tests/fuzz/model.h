// model.h - the reference model: what moat must do with one frame at one
// hook, given the configuration, the policy variant in force and the
// model's own connection tracking. Written from README (Architecture,
// Published ports and masquerade, Policies), the Kubernetes NetworkPolicy
// spec and the rules of issue 13 landing concurrently, never from the BPF
// sources; the rules themselves are spelt out at the top of model.cpp and
// model_ip.cpp.
//
// A verdict may be Either where the semantics leave the choice open (a
// malformed frame at an uplink, a translation nobody specified): those are
// counted, never compared. `moot` marks a frame the receiving IP stack
// drops anyway (bad header checksum, lengths that lie, martian addresses),
// so a disagreement about it cannot let anything through.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "flows.h"
#include "frame.h"
#include "hook.h"
#include "policy_judge.h"
#include "topology.h"

namespace fuzz {

struct Verdict {
  enum class Kind { Pass, Redirect, Drop, Either };
  Kind kind = Kind::Pass;
  std::string reason;     // Drop: the drop reason (abi.h's names; new rules name their own)
  std::string rule;       // the rule that decided, in words
  bool new_rule = false;  // decided by a rule of issue 13 that README does not state yet
  Bytes out;              // Pass, Redirect: the frame as it must leave the hook
  bool rewritten = false;
  bool moot = false;

  bool passes() const { return kind == Kind::Pass || kind == Kind::Redirect; }
};

// An IPv6 flow as connection tracking keys it (ICMPv6 echo: the id on the
// requester's side); never translated (no NAT66 in the model).
struct Tuple6 {
  Ip6Addr saddr{}, daddr{};
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
  bool operator==(const Tuple6&) const = default;
  Tuple6 reversed() const { return {daddr, saddr, dport, sport, proto}; }
};
struct Flow6 {
  Tuple6 t;           // as its first packet had it
  uint32_t rev = 0;   // policy revision that admitted it
  bool left = false;  // routed out by an uplink: the world may answer it
  TcpClose close;     // TCP (flows.h)
};

// What the model keeps between frames.
struct ModelState {
  FlowTable flows;
  std::vector<Flow6> flows6;
  // First fragments' ports by (source, destination, IP id, protocol), and
  // whether that fragment passed.
  std::map<std::tuple<uint32_t, uint32_t, uint16_t, uint8_t>, std::pair<Tuple, bool>> frags;
  uint32_t rev = 0;  // the policy revision in force (0: policy off)
  size_t variant = 0;
};

class Model {
 public:
  // `variants`: the configuration parsed once per policy variant (same
  // topology, other policies).
  Model(const Topology& topo, const std::vector<moat::Config>& variants);

  // Back to a fresh case: no flows, variant 0 in force under a revision of its own.
  void reset();
  // A policy revision change to `variant` (a new revision even for the same policies).
  void switch_policy(size_t variant);

  // The verdict of one frame. `ingress_ifindex` is the device the frame
  // entered the host by (skb->ingress_ifindex: 0 when the host sent it).
  // `kernel_out`, when the kernel passed the frame, only settles what the
  // semantics leave to the implementation: the masquerade port it picked.
  Verdict step(Hook h, uint32_t ifindex, uint32_t ingress_ifindex, const Bytes& frame,
               const Bytes* kernel_out);

 private:
  struct Ctx;
  struct Pkt;
  Verdict ethernet(const Ctx& c);
  Verdict arp(const Ctx& c);
  Verdict ipv6(const Ctx& c);
  Verdict ipv6_uplink(const Ctx& c);
  Verdict link_message(const Ctx& c, uint8_t type, size_t l4, size_t end, bool fragmented);
  Verdict nd_claims(const Ctx& c, uint8_t type, size_t l4, size_t end);
  Verdict data6(const Ctx& c, uint8_t proto, size_t l4, size_t end, bool later);
  std::optional<size_t> find6(const Tuple6& t) const;
  std::optional<Verdict> closed6(size_t i, const Tuple6& t, uint8_t tcp_flags, uint32_t tcp_seq);
  bool pair_has_flow6(const Ip6Addr& a, const Ip6Addr& b) const;
  Side side6(const Ip6Addr& a) const;
  std::optional<Verdict> policy6(const Side& from, const Side& to, uint8_t proto, uint16_t port,
                                 bool ports_known) const;
  std::optional<Verdict> rejudge6(size_t i);
  bool published6(uint16_t port, uint8_t proto) const;
  std::optional<Verdict> link_peer(const Ctx& c) const;
  Verdict ipv4(const Ctx& c);
  Verdict ipv4_checked(const Ctx& c, Pkt& p);
  std::optional<Verdict> icmp_error(const Ctx& c, const Pkt& p);
  Verdict known(const Ctx& c, const Pkt& p, const FlowMatch& m);
  std::optional<Verdict> rejudge(const Ctx& c, const FlowMatch& m, bool related);
  Verdict fresh(const Ctx& c, const Pkt& p);
  Verdict fresh_from_container(const Ctx& c, const Pkt& p);
  Verdict fresh_to_container(const Ctx& c, const Pkt& p);
  Verdict fresh_from_world(const Ctx& c, const Pkt& p);
  Verdict fresh_to_world(const Ctx& c, const Pkt& p);
  Verdict admit(const Ctx& c, const Pkt& p, const Side& client, const Side& server);
  Verdict published(const Ctx& c, const Pkt& p, const PublishInfo& pub);
  Verdict masquerade(const Ctx& c, const Pkt& p, std::optional<size_t> track);
  std::optional<Verdict> isolation(const AttInfo& att, uint32_t peer) const;
  std::optional<Verdict> policy(const Pkt& p, const Side& from, const Side& to) const;
  Side side_of(uint32_t ip) const;
  PolicyJudge judge() const { return PolicyJudge(topo_, variants_[st_.variant]); }
  uint32_t next_rev();

  const Topology& topo_;
  const std::vector<moat::Config>& variants_;
  ModelState st_;
  uint32_t rev_counter_ = 0;
};

// Verdict constructors.
Verdict drop(std::string reason, std::string rule, bool new_rule = false);
Verdict either(std::string rule);
Verdict pass_as_is(const Bytes& frame, std::string rule);

}  // namespace fuzz
