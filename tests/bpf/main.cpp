// moat_bpf_tests: runs the real BPF programs with BPF_PROG_TEST_RUN.
//
// Before anything else the process moves into a network namespace of its
// own: the devices the tests need are created there, and the namespace (with
// everything in it) disappears when the process exits. Nothing is ever added
// to the namespace the tests were started in.
#include <gtest/gtest.h>
#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "harness.h"

int main(int argc, char** argv) {
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "moat_bpf_tests: unshare(CLONE_NEWNET): %s (needs root)\n",
                 std::strerror(errno));
    return 1;
  }
  try {
    moat_test::create_devices();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moat_bpf_tests: setting up devices: %s\n", e.what());
    return 1;
  }

  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
