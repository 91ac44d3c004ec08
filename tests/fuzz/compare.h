// compare.h - one frame's two verdicts side by side: the model's and the
// kernel's (TC action, drop reason, output bytes), classified. Only a
// kernel pass of what the model drops is a failure; a kernel drop of what
// the model passes is reported apart; a frame the receiving stack drops
// anyway (moot) and a frame the semantics leave open (Either) are counted.
// When both pass, the output must match byte for byte, except that a
// rewrite may change checksums, which must then stay right if they were.
#pragma once

#include <string>

#include "dataplane.h"
#include "model.h"

namespace fuzz {

enum class Outcome {
  Agree,
  Either,           // the model leaves it open
  Refused,          // BPF_PROG_TEST_RUN would not run the frame
  KernelPass,       // the kernel passed what the model drops: a failure
  KernelDrop,       // the kernel dropped what the model passes
  RewriteMismatch,  // both pass, but the frames differ
  Moot,             // pass/drop differ on a frame the receiving stack drops anyway
  ForgedClose,  // a blind sender's segment changed a TCP flow in the kernel's conntrack: a failure
};
const char* outcome_name(Outcome o);
bool is_disagreement(Outcome o);

struct Comparison {
  Outcome outcome = Outcome::Agree;
  bool reason_differs = false;  // both dropped, for different reasons
  std::string detail;
};

enum class KernelVerdict { Pass, Drop, Redirect };
KernelVerdict kernel_verdict(const KernelResult& k);
std::string kernel_text(const KernelResult& k);  // "drop (network-isolation)"
std::string model_text(const Verdict& v);

Comparison compare(const Bytes& in, const Verdict& model, const KernelResult& kernel);

}  // namespace fuzz
