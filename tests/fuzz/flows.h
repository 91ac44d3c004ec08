// flows.h - the model's connection tracking: one Flow per connection, known
// by the tuples it has on the wire (as its initiator sent it, after the
// published-port rewrite, after masquerade), where each rewrite happens, and
// the policy revision that admitted it; plus the frame rewrites a flow asks
// for (addresses, ports, echo identifiers, an ICMP error's quoted packet).
//
// The model's own representation: one record per flow whatever the number
// of kernel entries, matched by equality with any of its tuples or their
// reverses.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "frame.h"
#include "hook.h"

namespace fuzz {

enum class Dnat : uint8_t {
  None,
  World,      // a published port dialled from the world: from_world / to_world
  Container,  // dialled by a container: at the client's veth, both ways
  Hairpin,    // a container dialling its own published port: both rewrites, redirected back
};

// A TCP flow's close, as README states it: a FIN each way or a RST closes
// it, and the kernel forgets it MOAT_CT_TIMEOUT_TCP_CLOSE after the close
// (a half-close keeps it). The model meets a flow's packets at more hooks
// than the kernel follows TCP at, so it knows the earliest moment the
// kernel may have closed it; past that and the hold, a packet of the flow
// may be the flow's or judged as new (either), and before it the flow is
// known as ever.
struct TcpClose {
  uint8_t fins = 0;        // 1: a FIN the original way, 2: the reply way
  int64_t closed_ns = -1;  // CLOCK_MONOTONIC_COARSE, the earliest the kernel may have closed it
  bool past_hold() const;
  // A segment with sequence number `seq`. The generator's own segments
  // start at 0 (a SYN) or 1 (abi.h's window follows them); one more than
  // 2^30 away from both is a blind sender's, and README says it ends
  // nothing: no FIN or RST of it counts.
  void see(uint8_t tcp_flags, bool reply, uint32_t seq);
};

struct Flow {
  Tuple t0;  // as the initiator sent it
  Tuple t1;  // after the published-port rewrite (t0 without one)
  Tuple t2;  // after masquerade or the hairpin's source rewrite (t1 without one)
  Dnat dnat = Dnat::None;
  bool snat = false;
  uint32_t client_ifindex = 0;  // Dnat::Container, Dnat::Hairpin
  uint32_t rev = 0;             // policy revision that admitted it (0: none in force)
  bool via_uplink = false;      // it left by an uplink: the world may answer it
  TcpClose close;               // TCP
};

struct FlowMatch {
  size_t index = 0;
  bool reply = false;  // the tuple is a reverse of the flow's
};

// What a tuple becomes at a hook, and whether the frame is redirected back.
struct Rewrite {
  Tuple to;
  bool redirect = false;
};

// Whether a packet of flow `f` can arrive at hook `h` with tuple `t`: a
// translated flow has each tuple on one side of its rewrite only (a client
// never sees the backend's address, the world never the container's).
bool arrives(const Flow& f, const Tuple& t, Hook h);

class FlowTable {
 public:
  std::optional<FlowMatch> find(const Tuple& t) const;
  // The first flow `t` can belong to at hook `h`.
  std::optional<FlowMatch> find_at(const Tuple& t, Hook h) const;
  bool taken(const Tuple& t) const;  // any flow already has this tuple, either way
  size_t add(const Flow& f);
  Flow& at(size_t i) { return flows_[i]; }
  const Flow& at(size_t i) const { return flows_[i]; }
  void erase(size_t i) { flows_.erase(flows_.begin() + long(i)); }
  void clear() { flows_.clear(); }
  size_t size() const { return flows_.size(); }

  // The rewrite of a packet with tuple `t` of flow `m` at hook `h` on
  // `ifindex`, or none when this hook lets it pass as it is.
  std::optional<Rewrite> rewrite(const FlowMatch& m, const Tuple& t, Hook h,
                                 uint32_t ifindex) const;

 private:
  std::vector<Flow> flows_;
};

// The frame with its IPv4 tuple changed to `to`: addresses always, ports or
// the echo identifier when this is a first fragment. Checksums are left as
// they were (the comparison judges them by validity).
Bytes rewrite_frame(const Bytes& frame, const Tuple& to);
// An ICMP error whose quoted packet had tuple `q_from` and becomes `q_to`:
// the quoted addresses and ports, the outer destination (the quoted source)
// and the outer source when it was the quoted destination.
Bytes rewrite_icmp_error(const Bytes& frame, const Tuple& q_from, const Tuple& q_to);
void swap_macs(Bytes& frame);

}  // namespace fuzz
