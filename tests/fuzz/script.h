// script.h - a case as the generator plans it and the runner plays it: a
// list of steps, most of which refer to what an earlier step produced (the
// packet a hook passed travels on to the next hook; a reply answers what
// its responder received; an ICMP error quotes it), so a case follows real
// paths through the host whatever the programs rewrote. Everything random
// is drawn when the case is planned; resolving a step at run time only
// reads the history, so a case replays from its seed and index.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "frame.h"
#include "hook.h"
#include "topology.h"

namespace fuzz {

struct ErrorSpec {
  uint8_t type = 3, code = 3;
  uint32_t outer_src = 0;    // 0: the responder's own address
  uint32_t outer_dst = 0;    // 0: the quoted packet's source (a genuine error)
  bool quote_input = false;  // quote what the step received before its hook rewrote it
  bool full_quote = false;   // the whole packet instead of header + 8 bytes
  uint32_t forge_quoted_src = 0, forge_quoted_dst = 0;  // non-zero: replaced in the quote
  int forge_quoted_sport = -1;
};

struct Step {
  enum class Kind {
    Send,     // a frame at a hook
    Forward,  // what step `ref` passed, at the next hook on its way
    Reply,    // the answer of whoever received step `ref`'s packet
    Again,    // the sender of step `ref` sends on the same flow
    Error,    // an ICMP error about step `ref`'s packet, from its receiver's side
    Rev,      // a policy revision change to `variant`
  };
  Kind kind = Kind::Send;
  Hook hook = Hook::FromContainer;  // Send
  uint32_t ifindex = 0;             // Send
  uint32_t ingress_ifindex = 0;     // Send to_container: the sending container's veth, 0: the host
  Bytes frame;                      // Send
  int ref = -1;
  uint8_t tcp_flags = 0;  // Reply, Again
  // Reply, Again: a blind sender's copy, which knows the tuple but not the
  // sequence space: its TCP seq and ack half of it away (abi.h's window).
  bool forge = false;
  uint32_t pick = 0;  // a choice among equals made at plan time (which uplink, which peer)
  ErrorSpec error;
  uint64_t mutate = 0;  // non-zero: mutate the resolved frame with this seed
  size_t variant = 0;
};

// How far Step::forge moves a segment's seq and ack.
inline constexpr uint32_t kForgeShift = 0x80000000u;

struct Case {
  std::string scenario;
  std::vector<Step> steps;
};

// What running a step gave.
struct Played {
  bool ran = false;  // a frame was fed (to the kernel and the model)
  Hook hook = Hook::FromContainer;
  uint32_t ifindex = 0;
  uint32_t ingress_ifindex = 0;
  Bytes in;
  bool passed = false;  // by the kernel (TC_ACT_OK or TC_ACT_REDIRECT)
  bool redirected = false;
  Bytes out;
  // from_container's fast path (bpf/lib/redirect.h): the frame went straight
  // into this container's namespace (its veth's ifindex); 0 otherwise.
  uint32_t peer = 0;
};

struct Resolved {
  Hook hook;
  uint32_t ifindex;
  Bytes frame;
  // skb->ingress_ifindex at a to_container hook: the veth of the container
  // whose packet a bridge (or the host's routing) delivers, 0 for what the
  // host itself (or the world through it) sends. The ingress hooks see
  // their own device (the runner sets it), to_world 0.
  uint32_t ingress_ifindex = 0;
};

// skb->ingress_ifindex as the kernel would give it at hook `h` on `ifindex`.
uint32_t ingress_at(Hook h, uint32_t ifindex, uint32_t resolved);

// A step as one JSON object (replay files), devices by name.
nlohmann::json step_to_json(const Step& s, const std::string& dev, const std::string& ingress_dev);
// Throws on an unknown kind or device.
Step step_from_json(const nlohmann::json& j, const std::map<std::string, uint32_t>& ifindex);

// The frame step `i` feeds, or nothing (the packet it depends on died).
std::optional<Resolved> resolve(const Topology& topo, const Case& c, size_t i,
                                const std::vector<Played>& history);

}  // namespace fuzz
