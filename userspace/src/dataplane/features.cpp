#include "dataplane/features.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <optional>

#include "dataplane/failpoint.h"
#include "dataplane/skeleton.h"

namespace moat {
namespace {

// Ethernet, IPv6 fd00::1 -> fd00::2, UDP 1 -> 2 with a checksum to adjust:
// what csum_ipv6 expects (its checksum offset is 14 + 40 + 6).
std::array<uint8_t, 14 + 40 + 8> probe_frame() {
  std::array<uint8_t, 14 + 40 + 8> f{};
  f[12] = 0x86, f[13] = 0xdd;         // ETH_P_IPV6
  f[14] = 0x60;                       // version 6
  f[19] = 8, f[20] = 17, f[21] = 64;  // payload length, UDP, hop limit
  f[22] = 0xfd, f[37] = 1;            // source fd00::1
  f[38] = 0xfd, f[53] = 2;            // destination fd00::2
  f[55] = 1, f[57] = 2, f[59] = 8;    // ports, UDP length
  f[60] = 0x12, f[61] = 0x34;         // checksum
  return f;
}

Result<bool> probe_csum_ipv6() {
  auto skel = Skeleton<probe_bpf>::open();
  if (!skel) return std::unexpected(skel.error());
  if (auto r = skel->load(); !r) return std::unexpected(r.error());
  auto frame = probe_frame();
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()), .repeat = 1);
  if (bpf_prog_test_run_opts(bpf_program__fd((*skel)->progs.csum_ipv6), &opts))
    return fail_errno("run the kernel probe csum_ipv6", errno);
  int rc = static_cast<int>(opts.retval);
  if (rc == 0) return true;
  if (rc == -EINVAL) return false;  // the flag is unknown: before Linux 6.16
  return fail("the kernel probe csum_ipv6 returned " + std::to_string(rc));
}

}  // namespace

Result<bool> kernel_nat66() {
  static std::mutex mu;
  static std::optional<bool> known;
  std::lock_guard lock(mu);
  if (known) return *known;
  if (pretend_kernel_lacks("nat66")) return *(known = false);
  auto r = probe_csum_ipv6();
  if (!r) return fail("probe the kernel for IPv6 NAT: " + r.error().message());
  known = *r;
  return r;
}

std::string kernel_release() {
  utsname u{};
  if (uname(&u)) return "unknown";
  return u.release;
}

std::string kernel_name() { return "Linux " + kernel_release(); }

nlohmann::json kernel_features_json() {
  nlohmann::json j{{"release", kernel_release()}};
  auto nat66 = kernel_nat66();
  j["nat66"] = nat66 ? nlohmann::json(*nat66) : nlohmann::json(nullptr);
  if (!nat66) j["nat66_error"] = nat66.error().message();
  return j;
}

HostCapacity host_capacity() {
  HostCapacity h;
  if (const char* mib = getenv("MOAT_HOST_RAM_MIB"))
    h.ram_bytes = std::strtoull(mib, nullptr, 10) << 20;
  else
    h.ram_bytes = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
  int cpus = libbpf_num_possible_cpus();
  h.cpus = cpus > 0 ? static_cast<uint32_t>(cpus) : 1;
  return h;
}

}  // namespace moat
