// deltatrain demo [--workdir DIR]: the whole mission on a tiny generated world (run/demo.h).
#include <CLI/CLI.hpp>

#include "cli/command.h"
#include "run/demo.h"

namespace dt {

int run_demo(int argc, char** argv) {
  CLI::App app("Run delta transfer end to end on a tiny generated world: make-tiny → train a LoRA on Base → "
               "transfer record → transfer learn on Turbo → sample grids. Minutes on a laptop CPU.", argv[0]);
  DemoOptions o;
  app.add_option("--workdir", o.workdir, "folder for everything the demo writes (its world/ is replaced)");
  app.add_option("--images", o.images, "generated training images");
  app.add_option("--sample-every", o.sample_every, "also sample every N steps (0: at the start and the end)");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  run_demo(o);
  return 0;
}

}  // namespace dt
