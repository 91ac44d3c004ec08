#include "cli/inputs.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "cli/common.h"
#include "dataplane/reconcile.h"
#include "dataplane/state.h"

namespace moat::cli {

Config config_from_inputs(const Inputs& in) {
  auto loaded = moat::load_inputs(in);
  if (!loaded.config) die(problems_message(loaded.problems, loaded.file), 2);
  return std::move(*loaded.config);
}

Config load_config_text(const std::string& text, const std::string& path) {
  return config_from_inputs(Inputs{{{path, text}}, false, {}});
}

Config load_config(const std::string& path) { return load_config_text(read_file(path), path); }

Inputs read_inputs(const std::vector<std::string>& files, bool replace_policies) {
  Inputs in;
  in.replace_policies = replace_policies;
  for (const auto& f : files) in.files.push_back({f, read_file(f)});
  return in;
}

std::vector<int> OpenedInputs::unread_fds() const {
  std::vector<int> fds;
  for (const Fd& fd : unread) fds.push_back(fd.get());
  return fds;
}

void OpenedInputs::put_first(InputFile f) {
  inputs.files.insert(inputs.files.begin(), std::move(f));
  unread.insert(unread.begin(), Fd());
}

OpenedInputs open_inputs(const std::vector<std::string>& files, bool replace_policies) {
  OpenedInputs in;
  in.inputs.replace_policies = replace_policies;
  for (const auto& f : files) {
    Fd fd(open(f.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (fd.ok() && fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<size_t>(st.st_size) >= kUnreadBytes) {
      in.inputs.files.push_back({f, ""});
      in.unread.push_back(std::move(fd));
      continue;
    }
    in.inputs.files.push_back({f, read_file(f)});
    in.unread.emplace_back();
  }
  return in;
}

Inputs read_rest(OpenedInputs in) {
  for (size_t i = 0; i < in.unread.size(); ++i) {
    if (!in.unread[i].ok()) continue;
    InputFile& f = in.inputs.files[i];
    auto text = moat::read_open_file(in.unread[i].get(), f.name);
    if (!text) {
      const int err = text.error().err;
      die(f.name + ": cannot read: " + (err ? std::strerror(err) : text.error().message()), 2);
    }
    f.text = std::move(*text);
  }
  return std::move(in.inputs);
}

Config load_saved_inputs(const std::string& instance) {
  return config_from_inputs(check(moat::saved_inputs(instance)));
}

}  // namespace moat::cli
