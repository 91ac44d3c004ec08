// coverage.cpp - GCC's -fsanitize-coverage=trace-pc calls
// __sanitizer_cov_trace_pc() at every basic block; libFuzzer 14 counts
// coverage in 8-bit counters instead. Each block's return address, hashed,
// picks a counter, registered with libFuzzer before main.
#include <cstddef>
#include <cstdint>

extern "C" void __sanitizer_cov_8bit_counters_init(uint8_t* start, uint8_t* stop);

namespace {

constexpr size_t kCounters = size_t{1} << 18;  // the readers have far fewer blocks
alignas(64) uint8_t counters[kCounters];

struct Register {
  Register() { __sanitizer_cov_8bit_counters_init(counters, counters + kCounters); }
} register_counters;

}  // namespace

extern "C" __attribute__((no_sanitize_coverage, no_sanitize("address", "undefined"))) void
__sanitizer_cov_trace_pc() {
  const auto pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  counters[(pc ^ (pc >> 18)) % kCounters]++;
}

// GCC's trace-cmp also reports floating-point comparisons, which libFuzzer
// has no use for.
extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_cmpd(double, double) {}
