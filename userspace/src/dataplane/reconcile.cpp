#include "dataplane/reconcile.h"

#include <fstream>

#include "dataplane/apply.h"
#include "dataplane/lock.h"
#include "dataplane/state.h"

namespace moat {

std::string inputs_path(const std::string& instance) { return state_dir(instance) + "/inputs.json"; }

Result<ApplyReport> reconcile(const std::string& instance, const DesiredState& want,
                              const ReconcileOptions& opt) {
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  auto rep = apply(instance, want.config, opt.dry_run, opt.ports_held_by_runtime);
  if (!rep || opt.dry_run) return rep;
  if (auto r = write_file_atomic(inputs_path(instance), inputs_json(want.inputs).dump() + "\n"); !r)
    return std::unexpected(r.error());
  return rep;
}

Result<Inputs> saved_inputs(const std::string& instance) {
  std::ifstream in(inputs_path(instance));
  if (!in) return fail("no moat instance \"" + instance + "\" (nothing applied; see `moat apply --help`)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    return fail(inputs_path(instance) + " is corrupt: " + e.what());
  }
  std::string why;
  auto inputs = inputs_from_json(j, &why);
  if (!inputs) return fail(inputs_path(instance) + " is corrupt: " + why);
  return *inputs;
}

Result<void> remove_instance(const std::string& instance) {
  auto lock = InstanceLock::acquire(instance);
  if (!lock) return std::unexpected(lock.error());
  return down(instance);
}

}  // namespace moat
