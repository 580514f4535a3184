// deltatrain distill CONFIG [--run-dir DIR] [--output FOLDER] [--resume] [--set key=value ...]
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/command.h"
#include "cli/run_args.h"
#include "run/distill_run.h"

namespace dt {

int run_distill(int argc, char** argv) {
  CLI::App app("Distill a Base (model.base) into a few-step student that needs no CFG: record the Base's guided "
               "trajectories from the dataset's captions, then train every weight of the student to retrace them "
               "at its own steps (docs/distill.md). Needs train.method = \"full\".",
               argv[0]);
  RunArgs args;
  args.add_to(app, {"run config (TOML) with a [distill] section; see `deltatrain config --defaults`",
                    "folder for trajectories, checkpoints and metrics (overrides output.run_dir)",
                    "the student's folder (overrides output.model)", "continue from the newest checkpoint in the run folder"});
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  const LoopResult r = distill(args.load(), args.resume);
  std::cout << "distilled in " << r.optimizer_steps << " steps, final smoothed loss " << r.last_loss << "\n";
  return 0;
}

}  // namespace dt
