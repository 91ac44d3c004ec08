// plugin.h - moat as a CNI plugin, chained after `bridge`: one call of the
// runtime (CNI_* environment, network configuration on stdin) becomes one
// read-modify-write of the instance's attachment table (table.h) through
// reconcile_update(), under the instance's lock, so concurrent calls never
// lose one another's attachments.
//
//   ADD     the attachment joins the table; prevResult is passed on unchanged
//           (in the request's version) once the kernel enforces it
//   DEL     it leaves the table; the last one removes the instance (no pins,
//           no record); succeeds when there is nothing to delete
//   CHECK   it is in the table and our programs run on its host-side veth
//   STATUS  moat can serve ADD (bpffs, the instance's record)
//   GC      attachments of this network the runtime no longer lists go
//   VERSION 0.4.0, 1.0.0, 1.1.0
#pragma once

#include <map>
#include <string>

namespace moat::cni {

struct Outcome {
  int exit_code = 0;
  std::string out;  // for stdout: a result, an error object, or nothing
};

// One call. `env`: the process environment (only CNI_* is read).
Outcome run_plugin(const std::map<std::string, std::string>& env, const std::string& stdin_text);

// The process: environ and stdin in, stdout and the exit code out.
int plugin_main();

}  // namespace moat::cni
