// model_internal.h - what model.cpp (Ethernet, ARP), model_ip6.cpp (IPv6)
// and model_ip.cpp (IPv4) share: the frame being judged with its hook, and the IPv4 packet
// as the model reads it.
#pragma once

#include "model.h"

namespace fuzz {

struct Model::Ctx {
  Hook hook;
  uint32_t ifindex;
  uint32_t ingress_ifindex;  // skb->ingress_ifindex: 0 when the host sent it
  const Bytes& frame;
  const AttInfo* att;        // container hooks
  const UplinkInfo* uplink;  // uplink hooks
  const Bytes* kernel_out;
};

struct Model::Pkt {
  Ip4 ip;
  L4 l4;
  Tuple t;
  bool ports_known = true;  // false: a later fragment whose first was not seen
  bool opening = false;     // TCP: SYN without ACK, RST, FIN
  bool moot = false;
};

}  // namespace fuzz
