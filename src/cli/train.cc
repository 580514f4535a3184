// deltatrain train CONFIG [--run-dir DIR] [--output LORA] [--resume] [--set key=value ...]
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "run/train_run.h"

namespace dt {

int run_train(int argc, char** argv) {
  CLI::App app("Train a LoRA with the flow-matching objective on the config's dataset.", argv[0]);
  std::string config, run_dir, output;
  std::vector<std::string> overrides;
  bool resume = false;
  app.add_option("config", config, "run config (TOML); see `deltatrain config --defaults`")->required();
  app.add_option("--run-dir", run_dir, "folder for checkpoints and metrics (overrides output.run_dir)");
  app.add_option("--output", output, "final LoRA file (overrides output.lora)");
  app.add_flag("--resume", resume, "continue from the newest checkpoint in the run folder");
  app.add_option("--set", overrides, "override a setting, key=value in TOML syntax (repeatable), e.g. train.learning_rate=5e-5");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  RunConfig run = load_run_config(config, overrides);
  // Command-line paths are relative to the current folder, not the config's.
  if (!run_dir.empty()) run.output.run_dir = std::filesystem::absolute(run_dir).string();
  if (!output.empty()) run.output.lora = std::filesystem::absolute(output).string();
  const LoopResult r = train(run, resume);
  std::cout << "trained " << r.optimizer_steps << " steps, final smoothed loss " << r.last_loss << "\n";
  return 0;
}

}  // namespace dt
