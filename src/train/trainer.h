// The training loop shared by every objective: batches from the plan, AdamW with fp32 states, LR
// schedule with warm-up, gradient accumulation and clipping, atomic LoRA saves, rolling
// checkpoints (LoRA, optimizer, plan position, RNG) and bitwise resume, metrics, progress.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "data/cache.h"
#include "lora/adapters.h"
#include "models/family.h"
#include "train/objective.h"
#include "train/plan.h"
#include "train/run_config.h"

namespace dt {

// A model loaded per a [model] section with adapters per a [lora] section.
struct LoadedModel {
  std::string family;  // Family::name(), also the LoRA key map's name
  std::unique_ptr<Denoiser> denoiser;
  std::unique_ptr<lora::Adapters> adapters;
};
LoadedModel load_model(const RunConfig& run, const ModelConfig& model, const LoraConfig& lora);

// The family a model section names (or its transformer's weights reveal) and its load options.
const Family& family_of(const RunConfig& run, const ModelConfig& model);
LoadOptions load_options(const ModelConfig& model);
// Where the run's VAE and text encoder come from, for filling the data caches.
CacheModels cache_models(const RunConfig& run);

struct LoopResult {
  int64_t optimizer_steps = 0;
  int64_t batches = 0;
  double last_loss = 0;  // smoothed
};

// Runs `objective` over plan.batches from the start, or with `resume` from the newest checkpoint in
// run.output.run_dir (or the objective's own progress). Writes run.output.lora at the end when the
// objective trains. Throws dt::Error on NaN/inf (naming the step), unwritable outputs (before the
// first step) and out-of-memory (naming the setting to change).
LoopResult run_loop(const RunConfig& run, LoadedModel& model, const Plan& plan, SampleSource& source,
                    Objective& objective, bool resume);

// The LoRA file of the adapters in the format and dtype of run.output.
void save_lora(const RunConfig& run, const LoadedModel& model, const std::string& path);

// `deltatrain train`: loads everything per the config and runs the flow objective.
LoopResult train(const RunConfig& run, bool resume);

}  // namespace dt
