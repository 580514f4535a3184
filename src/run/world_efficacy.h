// `deltatrain world efficacy`: does delta transfer do what it exists for? On a world's Base and Turbo
// (`world build`, made first when missing), for every concept of the world and each training seed:
//   (a) Base + a LoRA trained on the concept, the Base's steps with CFG (the ceiling)
//   (b) Turbo alone                         (c) Turbo + the Base LoRA as is
//   (d) Turbo + a LoRA trained directly on Turbo with the flow loss, as many steps
//   (e) Turbo + the transferred LoRA, approximate form, at each g of the config
//   (f) the exact form at the best g        (g) a fresh LoRA transferred at the best g
// b–g at the Turbo's steps without CFG, on the same prompts and noise. Each arm is scored on
// held-out trigger prompts (the concept, the other prompted attributes, off-world pixels) and on
// prompts without the trigger (drift: mean RGB distance per pixel from the model alone). Every
// training, record, learn and score is a stage cached under <out>/efficacy (run/stages.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "run/world_build.h"

namespace dt {

// Starts the table of `concepts` in another process whose output goes to `log`, and returns a function
// that waits for it and gives its exit status. The CLI's worker re-invokes `deltatrain world efficacy`.
using EfficacyWorker =
    std::function<std::function<int()>(const std::vector<std::string>& concepts, const std::string& log)>;

struct WorldEfficacyOptions {
  WorldBuildOptions build;            // the world, its overrides, the family's [[models]] table, the build's folder
  std::string built;                  // a built folder (base/, turbo/, stages.json) measured as is, the shipped one for
                                      // instance; empty = build.out, built first where missing (stages under build.out either way)
  std::vector<std::string> concepts;  // trigger words; empty = every concept
  std::string report;                 // markdown file whose efficacy section (per family) is replaced; empty = none
  std::string command;                // the command line, quoted in the report
  int64_t jobs = 1;                   // concepts measured in this many worker processes at once
  EfficacyWorker worker;              // how a worker starts (needed when jobs > 1)
};

// One arm's measurements, one value per seed.
struct ArmResult {
  std::string id, label;
  std::vector<double> concept_score, others, invalid, drift;
};

struct ConceptEfficacy {
  std::string trigger, kind;
  double best_guidance = 0;
  std::vector<ArmResult> arms;
  std::vector<int64_t> curve_steps;                // learn steps of the best transfer, ending at lora_steps
  std::vector<std::vector<double>> curve_concept;  // per step: the concept score per seed
  std::string grid;                                // the labelled grid (PNG) of seed 1
};

struct WorldEfficacy {
  std::string family;
  std::vector<ConceptEfficacy> concepts;
  std::string markdown;  // the section written to the report
  double seconds = 0;
};

WorldEfficacy measure_efficacy(const WorldEfficacyOptions& options);

// Mean and sample standard deviation, as "0.83 ± 0.05" (no spread for one value).
std::string mean_and_spread(const std::vector<double>& values, int decimals = 2);

}  // namespace dt
