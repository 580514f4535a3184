// The training loop shared by every objective: batches from the plan, AdamW with fp32 states, LR
// schedule with warm-up, gradient accumulation and clipping, atomic LoRA saves, rolling
// checkpoints (LoRA, optimizer, plan position, RNG) and bitwise resume, metrics, progress.
#pragma once
#include <functional>
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

// A run's dataset: scanned, cached with the VAE and text encoder of `model` (each loaded only
// when entries are missing, and freed again), planned per [train], and seen through the plan's
// sample indices.
struct RunData {
  std::unique_ptr<Manifest> manifest;
  std::unique_ptr<DataCache> cache;
  Plan plan;
  std::unique_ptr<SampleSource> source;
  ~RunData();
};
std::unique_ptr<RunData> prepare_data(const RunConfig& run, const ModelConfig& model);

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
// Where the VAE and text encoder of a model section (default: the run's [model]) come from, for
// filling the data caches.
CacheModels cache_models(const RunConfig& run, const ModelConfig& model);
inline CacheModels cache_models(const RunConfig& run) { return cache_models(run, run.model); }

struct LoopResult {
  int64_t optimizer_steps = 0;
  int64_t batches = 0;
  double last_loss = 0;  // smoothed
};

// Called after every optimizer step with the step count and whether it was the last (e.g. to take
// samples); its time is not counted in the step's metrics.
using AfterStep = std::function<void(int64_t step, bool last)>;

// Runs `objective` over plan.batches from the start, or with `resume` from the newest checkpoint in
// run.output.run_dir (or the objective's own progress). Writes run.output.lora at the end when the
// objective trains. Throws dt::Error on NaN/inf (naming the step), unwritable outputs (before the
// first step) and out-of-memory (naming the setting to change).
LoopResult run_loop(const RunConfig& run, LoadedModel& model, const Plan& plan, SampleSource& source,
                    Objective& objective, bool resume, const AfterStep& after_step = {});

// The LoRA file of the adapters in the format and dtype of run.output.
void save_lora(const RunConfig& run, const LoadedModel& model, const std::string& path);

// `deltatrain train`: loads everything per the config and runs the flow objective.
LoopResult train(const RunConfig& run, bool resume);

}  // namespace dt
