// deltatrain train CONFIG [--run-dir DIR] [--output LORA] [--resume] [--set key=value ...]
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/command.h"
#include "cli/run_args.h"
#include "run/distributed.h"
#include "run/train_run.h"

namespace dt {

int run_train(int argc, char** argv) {
  CLI::App app("Train a LoRA (or, with train.method = full, every weight) with the flow-matching objective on the "
               "config's dataset.", argv[0]);
  RunArgs args;
  args.add_to(app, {"run config (TOML); see `deltatrain config --defaults`",
                    "folder for checkpoints and metrics (overrides output.run_dir)",
                    "final LoRA file (overrides output.lora; with train.method = full the model folder, output.model)",
                    "continue from the newest checkpoint in the run folder"});
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  RunConfig run = args.load();
  join_ranks(run, "train");
  const LoopResult r = train(run, args.resume);
  std::cout << "trained " << r.optimizer_steps << " steps, final smoothed loss " << r.last_loss << "\n";
  return 0;
}

}  // namespace dt
