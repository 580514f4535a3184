// A run from its config: the family a [model] section names, its data (scanned, cached, planned),
// the model with its adapters per [lora], the loop's settings from [train], [output] and [model],
// and `deltatrain train` itself. The transfer steps and the samplers build on these.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "data/cache.h"
#include "lora/adapters.h"
#include "models/family.h"
#include "run/run_config.h"
#include "train/objective.h"
#include "train/plan.h"
#include "train/trainer.h"

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

// A model loaded per a [model] section, trained through adapters per a [lora] section, or (no
// adapters) in every weight.
struct LoadedModel {
  const Family* family = nullptr;
  std::unique_ptr<Denoiser> denoiser;
  std::unique_ptr<lora::Adapters> adapters;  // null when every weight trains
};
LoadedModel load_model(const RunConfig& run, const ModelConfig& model, const LoraConfig& lora);
// train.method = "full": every transformer weight requires gradients (float32 weights only: AdamW's
// small updates vanish in bf16 weights).
LoadedModel load_model_full(const RunConfig& run, const ModelConfig& model);
// What load_model_full refuses, checked before any work (dt::Error).
void check_full_training(const ModelConfig& model);
// What the loop trains: the adapters' down and up matrices, or every transformer weight.
NamedTensors trained_tensors(const LoadedModel& model);
// Throws dt::Error unless train.method is lora or full (`allowed`: the methods the command runs).
void check_method(const RunConfig& run, const std::vector<std::string>& allowed);

// The family a model section names (or its transformer's weights reveal) and its load options.
const Family& family_of(const RunConfig& run, const ModelConfig& model);
LoadOptions load_options(const ModelConfig& model);
// model.weight_dtype, checked.
WeightFormat weight_format(const ModelConfig& model);
// Where the VAE and text encoder of a model section (default: the run's [model]) come from, for
// filling the data caches.
CacheModels cache_models(const RunConfig& run, const ModelConfig& model);
inline CacheModels cache_models(const RunConfig& run) { return cache_models(run, run.model); }

// The loop's settings of a run for `model` (its LoRA saved in the format and dtype of [output]).
// Throws dt::Error for a setting the loop cannot use, before anything runs.
LoopSettings loop_settings(const RunConfig& run, const LoadedModel& model);
// run_loop with the run's settings.
LoopResult run_loop(const RunConfig& run, LoadedModel& model, const Plan& plan, SampleSource& source,
                    Objective& objective, bool resume, const AfterStep& after_step = {});

// The LoRA file of the adapters in the format and dtype of run.output.
void save_lora(const RunConfig& run, const LoadedModel& model, const std::string& path);
// The fully trained model at `path` (train.method = full): a diffusers transformer folder (the
// config.json of model.base's transformer, the weights in output.save_dtype), inside a pipeline
// folder when model.base is one (its other components hard-linked, or copied across file systems).
// Replaces an earlier save at `path` only once the new one is complete.
void save_model(const RunConfig& run, const LoadedModel& model, const std::string& path);

// `deltatrain train`: loads everything per the config and runs the flow objective on a LoRA or,
// with train.method = full, on every weight.
LoopResult train(const RunConfig& run, bool resume);

// The file name in the run folder of the LoRA saved at `step` (train.save_every).
std::string intermediate_lora_name(int64_t step);

}  // namespace dt
