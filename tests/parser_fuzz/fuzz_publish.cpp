// fuzz_publish.cpp - libFuzzer target: the publish spec (`-p
// [ip:]host[-end]:container[-end][/proto]`, parse_publish).
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/values.h"
#include "invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto p = moat::parse_publish(text);
  if (!p) {
    if (p.error().empty()) moat_fuzz::broken("refused without a reason");
    if (p.error().size() > 4096) moat_fuzz::broken("a reason longer than 4 KiB");
    return 0;
  }
  if (p->count == 0) moat_fuzz::broken("a range of no ports");
  if (uint32_t(p->host_port) + p->count - 1 > 65535 ||
      uint32_t(p->container_port) + p->count - 1 > 65535)
    moat_fuzz::broken("a range past port 65535");
  if (p->host_port == 0 || p->container_port == 0) moat_fuzz::broken("port 0 accepted");
  return 0;
}
