// `moat ct list|gc`: the connection-tracking entries of an instance.
#include <iomanip>
#include <iostream>
#include <memory>

#include "cli/common.h"
#include "dataplane/dataplane.h"

using nlohmann::json;

namespace moat::cli {

namespace {

struct CtArgs {
  std::string instance = "default", lab;
  bool as_json = false;
};

void print_ct_entries(const json& rows) {
  std::cout << std::left << std::setw(17) << "KIND" << std::setw(6) << "PROTO" << std::setw(44)
            << "TUPLE" << std::setw(44) << "BECOMES" << std::setw(13) << "STATE" << std::setw(9)
            << "EXPIRES"
            << "PACKETS/BYTES\n";
  for (const auto& r : rows) {
    std::string tuple = r["from"].get<std::string>() + " > " + r["to"].get<std::string>();
    std::string becomes =
        r["becomes_from"].get<std::string>() + " > " + r["becomes_to"].get<std::string>();
    std::cout << std::setw(17) << r["kind"].get<std::string>() << std::setw(6)
              << r["protocol"].get<std::string>() << std::setw(44) << tuple << std::setw(44)
              << becomes << std::setw(13) << r.value("tcp_state", std::string("-")) << std::setw(9)
              << (std::to_string(r["expires_in_s"].get<uint64_t>()) + "s")
              << r["packets"].get<uint64_t>() << "/" << r["bytes"].get<uint64_t>() << "\n";
  }
  std::cout << rows.size() << " entries\n";
}

// Root first, then the instance; --lab is taken as given (check_instance()
// judges lab-NAME) where the other commands pick_lab().
std::string ct_instance(const CtArgs& a) {
  need_root();
  std::string instance = a.lab.empty() ? a.instance : lab_instance(a.lab);
  check_instance(instance);
  return instance;
}

int run_ct_list(const CtArgs& a) {
  std::string instance = ct_instance(a);
  auto rows = check(moat::ct_entries(instance));
  if (a.as_json)
    std::cout << rows.dump(2) << "\n";
  else
    print_ct_entries(rows);
  return 0;
}

int run_ct_gc(const CtArgs& a) {
  std::string instance = ct_instance(a);
  moat::CtSwept n = check(moat::ct_gc(instance));
  if (a.as_json)
    std::cout << json{{"instance", instance},
                      {"flows_ended", n.total()},
                      {"by_family", {{"ipv4", n.ipv4}, {"ipv6", n.ipv6}}}}
                     .dump()
              << "\n";
  else
    std::cout << "ended " << n.total() << " expired flows (IPv4 " << n.ipv4 << ", IPv6 " << n.ipv6
              << "; instance " << instance << "; their flow-end events are in the ring buffer)\n";
  return 0;
}

}  // namespace

void add_ct_commands(CLI::App& app, CommandTable& table) {
  auto a = std::make_shared<CtArgs>();
  auto* ct = app.add_subcommand(
      "ct",
      "Connection tracking: the flows moat translates (published ports, masquerade).\n"
      "Each translated flow has two entries, one per direction.");
  ct->require_subcommand(1);
  auto* list = ct->add_subcommand("list", "Live entries: tuple, what it becomes, state, counters");
  auto* gc = ct->add_subcommand(
      "gc",
      "End expired flows now, IPv4 and IPv6: delete their entries and emit their flow-end\n"
      "events (the programs end the ones a packet meets; `moat flows --follow` and\n"
      "`moat serve` sweep every 2 s)");
  for (auto* sub : {list, gc}) {
    add_instance_options(sub, a->instance, a->lab);
    sub->add_flag("--json", a->as_json, "machine-readable output");
  }
  table.push_back({list, [a] { return run_ct_list(*a); }});
  table.push_back({gc, [a] { return run_ct_gc(*a); }});
}

}  // namespace moat::cli
