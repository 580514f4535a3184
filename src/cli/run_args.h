// The arguments the run commands (train, transfer) share: the config, --run-dir, --output,
// --resume and --set overrides.
#pragma once
#include <string>
#include <vector>

#include "run/run_config.h"

namespace CLI {
class App;
}

namespace dt {

struct RunArgs {
  std::string config, run_dir, output;
  std::vector<std::string> overrides;
  bool resume = false;

  struct Help {
    std::string config, run_dir, output, resume;  // output empty: the command has no --output
  };
  void add_to(CLI::App& app, const Help& help);
  // The config with its overrides; --run-dir and --output (output.lora, or output.model when
  // train.method = full) are relative to the current folder.
  RunConfig load() const;
};

}  // namespace dt
