// `deltatrain distill`: a guidance- and step-distillation of a Base (model.base) into a few-step
// student without CFG (docs/distill.md), in two steps on one model at a time:
//   1. record: the Base walks guided trajectories from every caption of the dataset (and
//      distill.seeds_per_caption noise seeds each) and keeps them at the student's σ grid;
//   2. learn: the student, initialised as the Base, trains every weight (train.method = "full")
//      to retrace them one grid step at a time, and is saved as a distilled pipeline
//      (model_index.json is_distilled = true).
#pragma once
#include "run/run_config.h"
#include "train/trainer.h"

namespace dt {

// Step 1; reuses the shards of an earlier recording of the same recipe. Returns the folder.
std::string record_trajectories(const RunConfig& run);

// Both steps; `resume` continues the student's run from its newest checkpoint.
LoopResult distill(const RunConfig& run, bool resume);

}  // namespace dt
