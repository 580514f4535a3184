// deltatrain config: print the documented defaults, the effective settings of a config, or a
// config imported from OneTrainer.
#include <CLI/CLI.hpp>

#include <iostream>

#include "cli/command.h"
#include "core/config.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "run/onetrainer_config.h"
#include "run/run_config.h"

namespace dt {

int run_config(int argc, char** argv) {
  CLI::App app("Print run configs: every default with its documentation, a config's effective settings, or a "
               "OneTrainer config converted.", argv[0]);
  std::string config, onetrainer, concepts, out;
  std::vector<std::string> overrides;
  bool defaults = false;
  app.add_option("config", config, "a run config (TOML) to print with its overrides applied");
  app.add_flag("--defaults", defaults, "print every setting with its default and documentation");
  app.add_option("--from-onetrainer", onetrainer, "a OneTrainer training config (JSON) to convert");
  app.add_option("--concepts", concepts, "its concepts file (default: the config's concept_file_name)");
  app.add_option("--set", overrides, "override a setting, key=value (repeatable)");
  app.add_option("--out", out, "write to this file instead of stdout");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;
  if (defaults + !config.empty() + !onetrainer.empty() != 1)
    throw Error("give exactly one of --defaults, a CONFIG file or --from-onetrainer FILE");
  std::string text;
  if (defaults) {
    text = default_run_config_toml();
  } else if (!config.empty()) {
    RunConfig run = load_run_config(config, overrides);
    text = config_to_toml(run);
  } else {
    std::vector<std::string> warnings;
    RunConfig run = import_onetrainer_config(onetrainer, concepts, warnings);
    for (const auto& w : warnings) std::cerr << "warning: " << w << "\n";
    text = "# converted from the OneTrainer config " + onetrainer + "\n" + config_to_toml(run);
  }
  if (out.empty()) std::cout << text;
  else write_file_atomic(out, text);
  return 0;
}

}  // namespace dt
