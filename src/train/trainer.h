// The training loop shared by every objective: batches from the plan, AdamW with fp32 states, LR
// schedule with warm-up, gradient accumulation and clipping, atomic LoRA saves, rolling
// checkpoints (LoRA, optimizer, plan position, RNG) and bitwise resume, metrics, progress.
// The loop knows only its own settings and the model it is given; reading a run config and
// loading models is the run layer's (run/train_run.h).
#pragma once
#include <functional>
#include <string>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "lora/adapters.h"
#include "models/family.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/plan.h"

namespace dt {

struct LoopSettings {
  LearningRateSchedule schedule;
  AdamWOptions adamw;
  double clip_grad_norm = 1.0;  // 0 = off
  int64_t gradient_accumulation = 1;
  int64_t max_steps = 0;  // 0 = the whole plan
  uint64_t seed = 42;     // of the default generators (dropout)
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;  // compute dtype of the model's inputs
  bool gradient_checkpointing = false;
  // Outputs: checkpoints/ and metrics in run_dir; the final LoRA at lora_path.
  std::string run_dir;
  std::string lora_path;
  int64_t save_every = 0, checkpoint_every = 50, keep_checkpoints = 2;
  bool tensorboard = true;
  double loss_smoothing = 0.9;
  // Writes the adapters as a LoRA file in the run's format (intermediate saves and the final one).
  std::function<void(const std::string& path)> save_lora;
  // Named in the out-of-memory message: what to lower or change.
  std::string memory_settings;
};

// Batches the loop runs of a plan: all, or max_steps × gradient_accumulation when that is fewer.
int64_t loop_batches(const Plan& plan, int64_t max_steps, int64_t gradient_accumulation);

struct LoopResult {
  int64_t optimizer_steps = 0;
  int64_t batches = 0;
  double last_loss = 0;  // smoothed
};

// Called after every optimizer step with the step count and whether it was the last (e.g. to take
// samples); its time is not counted in the step's metrics.
using AfterStep = std::function<void(int64_t step, bool last)>;

// Runs `objective` on `model` (trained through `adapters`) over plan.batches from the start, or
// with `resume` from the newest checkpoint in settings.run_dir (or the objective's own progress).
// Writes settings.lora_path at the end when the objective trains. Throws dt::Error on NaN/inf
// (naming the step), unwritable outputs (before the first step) and out-of-memory (naming the
// settings to change).
LoopResult run_loop(const LoopSettings& settings, Denoiser& model, lora::Adapters& adapters, const Plan& plan,
                    SampleSource& source, Objective& objective, bool resume, const AfterStep& after_step = {});

}  // namespace dt
