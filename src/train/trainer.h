// The training loop shared by every objective: batches from the plan, AdamW with fp32 states, LR
// schedule with warm-up, gradient accumulation and clipping, atomic saves of what it trains (a
// LoRA, or with train.method = "full" the whole transformer), rolling checkpoints (trained
// tensors, optimizer, plan position, RNG) and bitwise resume, metrics, progress.
// The loop knows only its own settings and the model it is given; reading a run config and
// loading models is the run layer's (run/train_run.h).
#pragma once
#include <functional>
#include <string>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "io/safetensors.h"
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
  // Before the first step, the objective's pass on the largest batch with nothing kept: the
  // memory of the largest step taken (and checked) up front, so that no step pays for it.
  bool warm_up_pass = true;
  // Outputs: checkpoints/ and metrics in run_dir; the final result at output_path.
  std::string run_dir;
  std::string output_path;
  int64_t save_every = 0, checkpoint_every = 50, keep_checkpoints = 2;
  bool tensorboard = true;
  double loss_smoothing = 0.9;
  // Writes what the loop trained (a LoRA file in the run's format, or a model folder) at `path`:
  // the intermediate saves, named by `save_name(step)`, and the final one.
  std::function<void(const std::string& path)> save;
  std::function<std::string(int64_t step)> save_name;
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

// Runs `objective` on `model` over plan.batches from the start, or with `resume` from the newest
// checkpoint in settings.run_dir (or the objective's own progress). `trained` names the tensors the
// optimizer updates (they require gradients; a resume copies the checkpoint's back into them in
// place): the LoRA adapters' matrices, or every weight of the transformer. Writes
// settings.output_path at the end when the objective trains. Throws dt::Error on NaN/inf (naming
// the step), unwritable outputs (before the first step) and out-of-memory (naming the settings to
// change).
LoopResult run_loop(const LoopSettings& settings, Denoiser& model, const NamedTensors& trained, const Plan& plan,
                    SampleSource& source, Objective& objective, bool resume, const AfterStep& after_step = {});

}  // namespace dt
