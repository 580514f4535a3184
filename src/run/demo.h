// The mission end to end on the miniature world whose Base and Turbo ship in the repository
// (worlds/shapes/zimage: `deltatrain world build worlds/shapes.toml` rebuilds them bit for bit):
//   data   images of a concept the Base never saw (a new shape by default), with captions
//   lora   a LoRA trained on them on the Base (flow matching)
//   record the Base + LoRA records its deltas (transfer record, approximate form)
//   learn  the Turbo learns them at g (transfer learn)
//   score  held-out trigger prompts sampled by four columns, scored by the world's scorer, and a
//          labelled grid: Base + LoRA (its steps, CFG) | Turbo | Turbo + Base LoRA | Turbo +
//          transferred LoRA (the Turbo's steps, no CFG), trigger prompts and one without as rows.
// Each stage is cached in the work folder (run/stages.h): a rerun redoes only what changed.
#pragma once
#include <cstdint>
#include <string>

namespace dt {

struct DemoOptions {
  std::string workdir = "demo-run";
  std::string world = "worlds/shapes.toml";
  std::string built;                 // the world build's folder (base/, turbo/); empty = <world's folder>/<world's name>/<family>
  std::string family;                // which [[models]] table of the world; empty = the first
  std::string concept_trigger = "zorbit";
  double guidance = 0;               // g of the learn; 0 = the CFG weight the Turbo was distilled at
  int64_t lora_steps = 0;            // steps of the LoRA and of the learn; 0 = the world's efficacy setting
  int64_t score_prompts = 16;        // held-out trigger prompts each column samples and scores
  int64_t grid_prompts = 3;          // of them, rows of the grid (besides one prompt without the trigger)
  int64_t seed = 1;                  // training seed
};

// Concept score: the fraction of held-out trigger prompts whose image shows the concept.
struct DemoScores {
  double base_with_lora = 0, turbo_alone = 0, turbo_with_base_lora = 0, turbo_transferred = 0;
};

struct DemoResult {
  std::string data, base_lora, store, turbo_lora, grid;
  DemoScores scores;
};

// Runs every stage, printing progress; throws dt::Error when a stage fails.
DemoResult run_demo(const DemoOptions& options);

}  // namespace dt
