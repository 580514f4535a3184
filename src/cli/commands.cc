#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/command.h"

namespace dt {

int run_inspect(int argc, char** argv);
int run_forward(int argc, char** argv);
int run_cache(int argc, char** argv);
int run_tokenize(int argc, char** argv);
int run_train(int argc, char** argv);
int run_config(int argc, char** argv);
int run_transfer(int argc, char** argv);
int run_make_tiny(int argc, char** argv);
int run_sample(int argc, char** argv);
int run_demo(int argc, char** argv);
int run_world(int argc, char** argv);
int run_distill(int argc, char** argv);
int run_launch(int argc, char** argv);

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"inspect", "Show the tensors, parameter count and metadata of a checkpoint or LoRA", run_inspect},
      {"forward", "Run one model component on golden-style inputs (see shared/golden/README.md)", run_forward},
      {"cache", "Scan a run's dataset and fill its latent and text caches", run_cache, true},
      {"tokenize", "Print the token ids of a text, optionally through a pipeline's chat template", run_tokenize},
      {"train", "Train a LoRA (or every weight) on a dataset (flow matching) from a run config", run_train, true},
      {"config", "Print documented defaults, a config's effective settings, or convert a OneTrainer config", run_config},
      {"distill", "Distill a Base into a few-step student without CFG (guidance and step distillation)", run_distill},
      {"transfer", "Teach a LoRA from a Base model to its Turbo sibling: record deltas, then learn (or one step)", run_transfer, true},
      {"make-tiny", "Write a tiny model set (Base + Turbo), a dataset and example configs for smoke tests", run_make_tiny},
      {"launch", "Start the ranks of a data-parallel train or transfer on this machine (torchrun's contract, no Python)", run_launch},
      {"sample", "Generate images from prompts with a model and LoRA files (PNG with parameters, grid)", run_sample},
      {"demo", "Delta transfer end to end on the miniature world shipped in worlds/: LoRA on Base, record, learn on Turbo, scored grid", run_demo},
      {"world", "The miniature world: render datasets, score images, train its VAE, build its Base and Turbo, evaluate a model on it", run_world},
  };
  return table;
}

bool parse_args(CLI::App& app, int argc, char** argv, int& exit_code) {
  try {
    app.parse(argc, argv);
    return true;
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    exit_code = 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    exit_code = 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": error: " << e.what() << " (see --help)\n";
    exit_code = 2;
  }
  return false;
}

}  // namespace dt
