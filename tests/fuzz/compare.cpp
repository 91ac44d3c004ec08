// compare.cpp - classifying one frame's verdicts (compare.h).
#include "compare.h"

#include <linux/pkt_cls.h>
#include <netinet/in.h>

#include <algorithm>

#include "util/abi_names.h"

namespace fuzz {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Agree:
      return "agree";
    case Outcome::Either:
      return "unspecified";
    case Outcome::Refused:
      return "refused";
    case Outcome::KernelPass:
      return "kernel-pass-model-drop";
    case Outcome::KernelDrop:
      return "kernel-drop-model-pass";
    case Outcome::RewriteMismatch:
      return "rewrite-mismatch";
    case Outcome::ForgedClose:
      return "forged-close";
    case Outcome::Moot:
      return "moot";
  }
  return "?";
}

bool is_disagreement(Outcome o) {
  return o == Outcome::KernelPass || o == Outcome::KernelDrop || o == Outcome::RewriteMismatch ||
         o == Outcome::Moot || o == Outcome::ForgedClose;
}

KernelVerdict kernel_verdict(const KernelResult& k) {
  if (k.retval == TC_ACT_SHOT) return KernelVerdict::Drop;
  if (k.retval == TC_ACT_REDIRECT) return KernelVerdict::Redirect;
  return KernelVerdict::Pass;
}

std::string kernel_text(const KernelResult& k) {
  if (k.err) return "refused (errno " + std::to_string(k.err) + ")";
  switch (kernel_verdict(k)) {
    case KernelVerdict::Drop: {
      const auto& names = moat::drop_reason_names();
      const std::string name = k.reason < names.size() && !names[k.reason].empty()
                                   ? names[k.reason]
                                   : "slot " + std::to_string(k.reason);
      return "drop (" + name + ")";
    }
    case KernelVerdict::Redirect:
      return "redirect";
    case KernelVerdict::Pass:
      return k.retval == TC_ACT_OK ? "pass" : "pass (TC action " + std::to_string(k.retval) + ")";
  }
  return "?";
}

std::string model_text(const Verdict& v) {
  std::string s;
  switch (v.kind) {
    case Verdict::Kind::Pass:
      s = v.rewritten ? "pass, rewritten" : "pass";
      break;
    case Verdict::Kind::Redirect:
      s = "redirect";
      break;
    case Verdict::Kind::Drop:
      s = "drop (" + v.reason + ")";
      break;
    case Verdict::Kind::Either:
      s = "either";
      break;
  }
  s += ": " + v.rule;
  if (v.new_rule) s += " [issue 13 rule]";
  if (v.moot) s += " [moot: the receiving stack drops it]";
  return s;
}

namespace {

bool checksums_ok(const Bytes& f) {
  const std::string bad = checksum_errors(f);
  return bad.empty() || bad == "quoted IPv4 header checksum bad; ";
}

bool udp_without_checksum(const Bytes& f) {
  const Ip4 ip = parse_ip4(f, 14);
  return f.size() >= 14 && get16(f, 12) == kEthIp && ip.header_ok && ip.proto == IPPROTO_UDP &&
         !ip.later_fragment() && ip.l4_avail() >= 8 && get16(f, ip.l4_off() + 6) == 0;
}

std::string first_difference(const Bytes& got, const Bytes& want, const std::vector<size_t>& skip) {
  if (got.size() != want.size())
    return "kernel output " + std::to_string(got.size()) + " bytes, model " +
           std::to_string(want.size());
  for (size_t i = 0; i < got.size(); i++) {
    const bool skipped =
        std::any_of(skip.begin(), skip.end(), [&](size_t o) { return i == o || i == o + 1; });
    if (!skipped && got[i] != want[i])
      return "first difference at byte " + std::to_string(i) + ": kernel " +
             std::to_string(got[i]) + ", model " + std::to_string(want[i]);
  }
  return "";
}

Comparison both_pass(const Bytes& in, const Verdict& model, const KernelResult& k) {
  const bool redirected = kernel_verdict(k) == KernelVerdict::Redirect;
  if (redirected != (model.kind == Verdict::Kind::Redirect))
    return {Outcome::RewriteMismatch, false,
            redirected ? "the kernel redirected it" : "the model redirects it"};
  std::vector<size_t> skip;
  if (model.rewritten) skip = checksum_offsets(model.out);
  if (udp_without_checksum(in))  // a UDP datagram without checksum keeps none
    std::erase_if(skip, [&](size_t o) { return o == 14 + parse_ip4(in, 14).hlen + 6; });
  std::string diff = first_difference(k.out, model.out, skip);
  if (diff.empty() && model.rewritten && checksums_ok(in) && !checksums_ok(k.out))
    diff = "the kernel's rewrite broke a checksum: " + checksum_errors(k.out);
  if (diff.empty()) return {};
  return {Outcome::RewriteMismatch, false, diff + "; kernel out " + hex(k.out)};
}

}  // namespace

Comparison compare(const Bytes& in, const Verdict& model, const KernelResult& k) {
  if (k.err) return {Outcome::Refused, false, ""};
  if (model.kind == Verdict::Kind::Either) return {Outcome::Either, false, ""};
  const bool kernel_drops = kernel_verdict(k) == KernelVerdict::Drop;
  const bool model_drops = model.kind == Verdict::Kind::Drop;
  if (kernel_drops && model_drops) {
    const auto& names = moat::drop_reason_names();
    const bool same = k.reason < names.size() && names[k.reason] == model.reason;
    return {Outcome::Agree, !same, ""};
  }
  if (kernel_drops != model_drops && model.moot) return {Outcome::Moot, false, ""};
  if (model_drops) return {Outcome::KernelPass, false, ""};
  if (kernel_drops) return {Outcome::KernelDrop, false, ""};
  return both_pass(in, model, k);
}

}  // namespace fuzz
