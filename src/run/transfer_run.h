// The transfer steps from a run config: `deltatrain transfer record | learn | (both)`.
// Each loads one model; `transfer` frees the teacher before it loads the student.
#pragma once
#include <string>

#include "run/run_config.h"
#include "run/train_run.h"

namespace dt {

// The delta store folder of a run: transfer.store, or <run_dir>/deltas.
std::string store_dir(const RunConfig& run);

// Step 1: the teacher (transfer.teacher or model.base, with transfer.teacher_lora) records δc [and
// δu] of every item of the run's plan. With `resume` it continues an interrupted store (or finds
// it complete and returns without loading the teacher).
void record(const RunConfig& run, bool resume);

// Step 2: the student (transfer.student, starting from transfer.student_lora) learns from the store;
// optimizer, schedule, checkpoints and the LoRA output as `deltatrain train`.
LoopResult learn(const RunConfig& run, bool resume);

// Both steps in sequence; a resumed transfer continues in whichever step it stopped.
LoopResult transfer(const RunConfig& run, bool resume);

}  // namespace dt
