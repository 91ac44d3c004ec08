// main.cpp - `moat`: builds the command line from the command families'
// tables and runs the one subcommand parsed. The commands live in cmd_*.cpp;
// this file only turns their exceptions into messages and exit codes.
#include <cstring>
#include <iostream>

#include "cli/common.h"
#include "cni/plugin.h"

namespace {

using moat::cli::CommandTable;

// The order they register in is the order `moat --help` lists them.
constexpr void (*kFamilies[])(CLI::App&, CommandTable&) = {
    moat::cli::add_file_commands,    moat::cli::add_ct_commands,
    moat::cli::add_lab_commands,     moat::cli::add_policy_commands,
    moat::cli::add_observe_commands, moat::cli::add_docker_commands};

int run_parsed(const CommandTable& table) {
  for (const auto& cmd : table)
    if (cmd.app->parsed()) return cmd.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Runtimes run CNI plugins by their "type": a `moat-cni` link to this
  // binary in the plugin directory speaks CNI and nothing else.
  const char* base = std::strrchr(argv[0], '/');
  if (std::strcmp(base ? base + 1 : argv[0], "moat-cni") == 0) return moat::cni::plugin_main();

  CLI::App app{
      "moat - container isolation, published ports, masquerade and segmentation policies\n"
      "enforced by eBPF programs instead of iptables, with counters and flow events.\n"
      "Describe networks, containers and policies in a JSON file; moat compiles it into pinned\n"
      "BPF maps read by TC programs on container veths and uplinks and by socket hooks.\n\n"
      "  moat lab up policies/invoice-app.json    # try it: a lab of namespaces, enforced\n"
      "  moat lab probe                            # who reaches whom, expected vs observed\n"
      "  moat explain rechnung datenbank 7000/tcp  # why (add --lab NAME for a lab)\n"
      "  moat apply FILE [POLICY_FILE...]          # enforce on existing interfaces\n"
      "  moat stats | moat flows | moat top        # what passed, what was dropped and why\n"
      "  moat status | moat down                   # inspect | remove everything",
      "moat"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moat 0.1.0");
  app.get_formatter()->column_width(36);

  CommandTable table;
  for (auto add : kFamilies) add(app, table);

  try {
    app.parse(argc, argv);
    return run_parsed(table);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const moat::cli::CliError& e) {
    std::cerr << "moat: " << e.message << "\n";
    return e.code;
  } catch (const std::exception& e) {
    std::cerr << "moat: " << e.what() << "\n";
    return 1;
  }
}
