// Resumable checkpoints of a run: <run_dir>/checkpoints/step-<N>.safetensors, each holding the LoRA
// state, the optimizer state and the RNG states as tensors and the loop position as metadata.
// Written atomically; the newest K are kept.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <ATen/Tensor.h>

#include "io/safetensors.h"

namespace dt {

struct TrainCheckpoint {
  int64_t next_batch = 0;       // the plan batch the run continues with
  int64_t optimizer_steps = 0;  // optimizer steps done
  double loss_smooth = 0;       // the smoothed-loss state of the metrics
  std::string plan_hash;        // the plan it belongs to
  std::map<std::string, at::Tensor> tensors;  // "lora.*", "adamw.*", "rng.*"
  std::string path;             // where it was read from or written to
};

// Writes the checkpoint and removes all but the newest `keep` ones. Returns its path.
std::string write_train_checkpoint(const std::string& run_dir, TrainCheckpoint checkpoint, int64_t keep);
// The newest checkpoint in run_dir; nullopt when there is none. An unreadable one is skipped with
// a warning (an older one is used).
std::optional<TrainCheckpoint> latest_train_checkpoint(const std::string& run_dir);

// The state of the default generators (CPU, and CUDA when present) that dropout draws from.
std::map<std::string, at::Tensor> rng_state();
void set_rng_state(const std::map<std::string, at::Tensor>& state);

}  // namespace dt
