#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "cli/command.h"
#include "cli/run_args.h"
#include "run/distributed.h"
#include "run/transfer_run.h"

namespace dt {

// deltatrain transfer [record | learn] CONFIG [--run-dir DIR] [--output LORA] [--resume] [--set k=v]...
int run_transfer(int argc, char** argv) {
  std::string step = "both";
  if (argc > 1 && (!std::strcmp(argv[1], "record") || !std::strcmp(argv[1], "learn"))) {
    step = argv[1];
    argv[1] = argv[0];  // the step becomes part of the program name
    --argc;
    ++argv;
  }
  const std::string name = step == "both" ? std::string(argv[0]) : std::string(argv[0]) + " " + step;
  CLI::App app(step == "record"  ? "Delta transfer step 1: the teacher records δc [and δu] of every plan item to the delta store."
               : step == "learn" ? "Delta transfer step 2: the student learns a LoRA from the delta store."
                                 : "Delta transfer: record on the teacher, then learn on the student (one model in memory at a "
                                   "time). Steps alone: deltatrain transfer record|learn CONFIG.",
               name);
  RunArgs args;
  args.add_to(app, {"the run config (TOML) with a [transfer] section",
                    "run folder (overrides output.run_dir); the store lives in <run_dir>/deltas by default",
                    step != "record" ? "the learned LoRA file (overrides output.lora)" : "",
                    "continue an interrupted run in the same run folder, in whichever step it stopped"});
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  RunConfig run = args.load();
  join_ranks(run, "transfer " + step);
  const bool resume = args.resume;
  if (step == "record") {
    record(run, resume);
    std::cout << "delta store: " << store_dir(run) << "\n";
    return 0;
  }
  const LoopResult r = step == "learn" ? learn(run, resume) : transfer(run, resume);
  std::cout << "learned " << r.optimizer_steps << " steps; LoRA: "
            << (run.output.lora.empty() ? run.resolve(run.output.run_dir) + "/lora.safetensors" : run.resolve(run.output.lora))
            << "\n";
  return 0;
}

}  // namespace dt
