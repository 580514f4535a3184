#include "cli/run_args.h"

#include <CLI/CLI.hpp>

#include <filesystem>

namespace dt {

void RunArgs::add_to(CLI::App& app, const Help& help) {
  app.add_option("CONFIG", config, help.config)->required();
  app.add_option("--run-dir", run_dir, help.run_dir);
  if (!help.output.empty()) app.add_option("--output", output, help.output);
  app.add_flag("--resume", resume, help.resume);
  app.add_option("--set", overrides, "override a setting, key=value in TOML syntax (repeatable), e.g. train.learning_rate=5e-5");
}

RunConfig RunArgs::load() const {
  RunConfig run = load_run_config(config, overrides);
  if (!run_dir.empty()) run.output.run_dir = std::filesystem::absolute(run_dir).string();
  if (!output.empty()) (run.train.method == "full" ? run.output.model : run.output.lora) = std::filesystem::absolute(output).string();
  return run;
}

}  // namespace dt
