// deltatrain make-tiny --out DIR [--family NAME] [--images N] [--resolution PX] [--transformer-config JSON]
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/command.h"
#include "models/family.h"
#include "run/tiny_world.h"

namespace dt {

int run_make_tiny(int argc, char** argv) {
  CLI::App app("Write a tiny model set of the real architectures (Base + Turbo pipelines), a generated dataset "
               "and example configs train.toml and transfer.toml.", argv[0]);
  std::string out;
  TinyWorldOptions o;
  app.add_option("--out", out, "folder to write (created)")->required();
  app.add_option("--family", o.family, "model family (default: " + families().front()->name() + ")");
  app.add_option("--images", o.images, "number of generated images");
  app.add_option("--resolution", o.resolution, "side of the generated images in pixels (multiple of 16)");
  app.add_option("--transformer-config", o.transformer_config,
                 "entries of the transformers' config.json to change, as JSON (a larger model for a benchmark: '{\"dim\": 1024, \"n_layers\": 8}')");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  make_tiny_world(out, o);
  const Family& family = family_or_first(o.family);
  std::cout << "wrote " << out << ": base/, " << family.defaults().distilled_name << "/, dataset/, train.toml, transfer.toml\n"
            << "next: deltatrain train " << out << "/train.toml\n";
  return 0;
}

}  // namespace dt
