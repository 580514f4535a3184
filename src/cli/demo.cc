// deltatrain demo: delta transfer end to end on the miniature world shipped in the repository (run/demo.h).
#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "run/demo.h"

namespace dt {

int run_demo(int argc, char** argv) {
  CLI::App app("Delta transfer end to end on the miniature world whose Base and Turbo ship in the repository: a LoRA of a "
               "new concept trained on the Base, recorded, taught to the Turbo, and a labelled grid with the concept's "
               "score per column. About 70 s on 2 cores with OPENBLAS_NUM_THREADS=1 (scripts/demo.sh); each stage is cached in the work folder.", argv[0]);
  DemoOptions o;
  app.add_option("--workdir", o.workdir, "folder for everything the demo writes");
  app.add_option("--world", o.world, "the world config (relative paths: from the current folder)");
  app.add_option("--built", o.built, "its `world build` folder with base/ and turbo/; empty = <world's folder>/<world's name>/<family>");
  app.add_option("--family", o.family, "which [[models]] table of the world; empty = the first");
  app.add_option("--concept", o.concept_trigger, "the concept's trigger word (a [[concepts]] table of the world)");
  app.add_option("--guidance", o.guidance, "g of the transfer; 0 = the CFG weight the Turbo was distilled at");
  app.add_option("--steps", o.lora_steps, "steps of the Base LoRA and of the learn; 0 = the world's [models.efficacy] lora_steps");
  app.add_option("--prompts", o.score_prompts, "held-out trigger prompts each column samples and scores");
  app.add_option("--grid-prompts", o.grid_prompts, "of them, rows of the grid (besides one prompt without the trigger)");
  app.add_option("--seed", o.seed, "training seed");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  run_demo(o);
  return 0;
}

}  // namespace dt
