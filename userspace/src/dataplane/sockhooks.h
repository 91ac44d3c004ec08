// sockhooks.h - published ports as the host itself sees them: cgroup socket
// hooks (bpf/sock.bpf.c) that send a host process's connect()/sendto() to
// 127.0.0.1:PORT or <host address>:PORT straight to the container, and keep
// host processes from binding a published port.
//
// The programs are attached at the cgroup2 root, so they run for every
// process of the machine; they act only in the network namespace whose
// cookie is stored in the `host_cfg` map. Each attachment is a bpf_link
// pinned at <pin_dir>/link_<program>: removing the pin (`moat down` removes
// the whole pin directory) releases the link, which detaches the program.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plan/plan.h"
#include "util/net.h"
#include "util/result.h"

namespace moat {

// What an apply leaves attached is kept in its record (SockLinks): the next
// one finds every link still running the program recorded, loaded from this
// binary's object, over the maps pinned now, and loads nothing. Loading
// verifies all ten programs, some milliseconds of every `moat apply` and
// CNI call.
struct SockLinks {
  struct Link {
    uint32_t prog_id = 0;
    uint32_t attach_type = 0;
  };
  std::string objects;                // the sock object's fingerprint
  std::map<std::string, Link> links;  // by program name
  nlohmann::json to_json() const;
  // nullopt for anything else (an older record has none).
  static std::optional<SockLinks> from_json(const nlohmann::json& j);
};

// Loads sock.bpf.c's programs with every map reused from the pins under
// pin_dir (the endpoint object pinned them already), stores the current
// network namespace's cookie in host_cfg, and attaches each program at the
// cgroup2 root through a bpf_link pinned at pin_dir + "/link_<program>".
// Idempotent: a pinned link that runs a program with the same tag and maps is
// left alone; another program is swapped in with bpf_link_update. Returns
// whether anything changed (or, with dry_run, would change; then nothing is).
// runtime_binds: the runtime binds published ports itself, so the bind hook
// reserves none (MOAT_HOST_F_RUNTIME_BINDS).
// `prev`: what the previous apply recorded (nullptr: nothing; then, or when
// the links are not as it says, the object is loaded); `now`, unless a dry
// run: what is attached afterwards.
Result<bool> ensure_sock_hooks(const std::string& pin_dir, bool dry_run, bool runtime_binds,
                               const SockLinks* prev = nullptr, SockLinks* now = nullptr);

// With `on`, the programs ensure_sock_hooks() loaded are kept for its next
// call in this process (the agent), while their maps are the pinned ones.
void keep_sock_programs(bool on);
void drop_kept_sock_programs();

// What is attached, one row per link pin:
// [{"hook": "connect4", "link_id", "prog_id", "pin", "attach_type",
//   "cgroup_id", "attached"}, ...]. Empty when pin_dir holds no link.
Result<nlohmann::json> sock_hooks_status(const std::string& pin_dir);

// One published host port, for check_ports_free.
struct PublishedPort {
  uint32_t host_ip_be;    // IPv4: 0 is every host address
  uint16_t port;          // host byte order
  uint8_t proto;          // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP
  std::string text;       // the publish as written, e.g. "5000:5000/tcp"
  std::string container;  // who publishes it
  // Set for a port of `publish6` (host_ip_be unused): :: is every host
  // IPv6 address.
  std::optional<Ipv6> host_ip6{};
};

// One per published port of the plan (ranges are already expanded there).
std::vector<PublishedPort> published_ports(const std::vector<PublishEntry>& publish);
std::vector<PublishedPort> published_ports(const std::vector<Publish6Entry>& publish6);

// Fails, naming port, protocol, address and container of every collision,
// when a socket in the calling thread's network namespace listens (TCP) or
// is bound (UDP) on a port that `ports` publishes, by the bind hook's rule.
// Reads /proc/thread-self/net/{tcp,udp,tcp6,udp6}.
Result<void> check_ports_free(const std::vector<PublishedPort>& ports);

// ---- pure parts, exposed for tests ------------------------------------------------

// A socket's local address from one line of /proc/net/{tcp,udp}[6].
struct ProcNetSocket {
  // Whether the socket holds an IPv4 port: every socket of an IPv4 file, and
  // IPv6 sockets on [::] (ip_be 0) or on ::ffff:a.b.c.d (ip_be a.b.c.d).
  bool holds_ipv4 = false;
  uint32_t ip_be = 0;           // the IPv4 address, 0 for the wildcard
  // The IPv6 address of a *6 socket that is not IPv4-mapped ([::] too):
  // it holds that IPv6 port.
  std::optional<Ipv6> ip6;
  uint16_t port = 0;            // host byte order
  uint8_t state = 0;            // TCP state number (0x0A = LISTEN)
  bool v6 = false;              // from a *6 file
  std::string address() const;  // "0.0.0.0:5000", "[::]:5000", ...
};

// Parses one data line (not the header). nullopt for anything else.
std::optional<ProcNetSocket> parse_proc_net_line(std::string_view line, bool v6);

// Whether a socket bound to bound_ip_be:port (0 = every address) takes the
// published port p: same protocol and port, and either address is a
// wildcard or both are equal. The bind hook applies the same rule.
bool bind_collides(const PublishedPort& p, uint32_t bound_ip_be, uint16_t port, uint8_t proto);
// The same for an IPv6 port (p.host_ip6 set) and a socket on `bound` (:: = every address).
bool bind_collides(const PublishedPort& p, const Ipv6& bound, uint16_t port, uint8_t proto);

}  // namespace moat
