// `deltatrain train` from a config: the family, the dataset and its caches, the plan, the model with
// its adapters, then the loop with the flow objective.
#include <torch/torch.h>

#include <iostream>

#include "core/error.h"
#include "data/cache.h"
#include "data/dataset.h"
#include "lora/file.h"
#include "sample/run_samples.h"
#include "train/trainer.h"

namespace dt {
namespace {

c10::ScalarType compute_dtype(const std::string& name) {
  if (name == "fp32") return torch::kFloat;
  if (name == "bf16") return torch::kBFloat16;
  throw Error("model.dtype '" + name + "' is not one of fp32, bf16");
}

// The data caches seen through the plan's sample indices.
class ManifestSource : public SampleSource {
 public:
  ManifestSource(const Manifest& manifest, const DataCache& cache) : manifest_(manifest), cache_(cache) {}
  at::Tensor latent(int32_t sample) override { return cache_.latent(manifest_.samples.at(sample)); }
  TextFeatures text(int32_t sample, int32_t caption) override { return cache_.text(this->caption(sample, caption)); }
  std::string caption(int32_t sample, int32_t caption) override {
    return caption == kEmptyCaption ? std::string() : manifest_.samples.at(sample).captions.at(caption);
  }

 private:
  const Manifest& manifest_;
  const DataCache& cache_;
};

}  // namespace

const Family& family_of(const RunConfig& run, const ModelConfig& m) {
  if (m.base.empty()) throw Error("model.base is not set (a pipeline folder or transformer checkpoint)");
  return m.family.empty() ? detect_family(run.resolve(m.base)) : family_by_name(m.family);
}

LoadOptions load_options(const ModelConfig& m) {
  LoadOptions o;
  try {
    o.device = c10::Device(m.device);
  } catch (const c10::Error&) {
    throw Error("model.device '" + m.device + "' is not a device (cpu, cuda, cuda:N)");
  }
  if (o.device.is_cuda() && !torch::cuda::is_available())
    throw Error("model.device is '" + m.device + "' but this build or machine has no CUDA device");
  o.compute_dtype = compute_dtype(m.dtype);
  return o;
}

CacheModels cache_models(const RunConfig& run, const ModelConfig& model) {
  CacheModels models;
  models.family = &family_of(run, model);
  models.vae_path = run.resolve(model.vae.empty() ? model.base : model.vae);
  models.text_encoder_path = run.resolve(model.text_encoder.empty() ? model.base : model.text_encoder);
  models.options = load_options(model);
  return models;
}

RunData::~RunData() = default;

std::unique_ptr<RunData> prepare_data(const RunConfig& run, const ModelConfig& model) {
  const Family& family = family_of(run, model);
  validate(run.data, "[data]");
  auto out = std::make_unique<RunData>();
  out->manifest = std::make_unique<Manifest>(scan_dataset(run.data, run.base_dir, family.pixel_multiple()));
  const Manifest& manifest = *out->manifest;
  for (const auto& w : manifest.warnings) std::cerr << "warning: " << w << "\n";
  out->cache = std::make_unique<DataCache>(run.data, run.base_dir,
                                           fill_cache(manifest, run.data, run.base_dir, cache_models(run, model)));

  PlanOptions plan_options = run.train.plan_options();
  plan_options.family_shift = [&family](int64_t w, int64_t h) { return family.dynamic_shift(h, w); };
  use_manifest_epochs(manifest, plan_options);
  out->plan = make_plan(plan_samples(manifest), manifest.hash, plan_options);
  std::cout << "plan " << out->plan.hash.substr(0, 16) << ": " << manifest.samples.size() << " samples, "
            << out->plan.batches.size() << " batches, " << out->plan.item_count() << " items\n";
  out->source = std::make_unique<ManifestSource>(manifest, *out->cache);
  return out;
}

LoadedModel load_model(const RunConfig& run, const ModelConfig& m, const LoraConfig& l) {
  const Family& family = family_of(run, m);
  LoadedModel out;
  out.family = family.name();
  out.denoiser = family.load_transformer(run.resolve(m.base), load_options(m));
  torch::nn::Module& module = out.denoiser->module();
  for (auto& p : module.parameters()) p.requires_grad_(false);
  if (!l.init.empty()) {
    const auto weights = lora::read_lora(run.resolve(l.init), lora::key_map(family.name()), &module);
    out.adapters = std::make_unique<lora::Adapters>(
        lora::Adapters::attach(module, out.denoiser->lora_state(), weights, 1.0, l.dropout));
  } else {
    const auto layers = lora::select_layers(module, {l.preset, l.include, l.exclude}, family.lora_presets());
    lora::AdapterOptions o;
    o.rank = l.rank;
    o.alpha = l.alpha;
    o.dropout = l.dropout;
    o.seed = static_cast<uint64_t>(run.train.seed);
    out.adapters = std::make_unique<lora::Adapters>(lora::Adapters::create(module, out.denoiser->lora_state(), layers, o));
  }
  return out;
}

LoopResult train(const RunConfig& run, bool resume) {
  FlowObjective objective(LossFunction::from_settings(run.train.loss, run.train.huber_delta));
  const std::unique_ptr<RunData> data = prepare_data(run, run.model);
  const std::unique_ptr<RunSampler> sampler = RunSampler::create(run, run.model);  // before the transformer loads
  LoadedModel model = load_model(run, run.model, run.lora);
  std::cout << "model " << model.family << " on " << run.model.device << " (" << run.model.dtype << "), "
            << model.adapters->size() << " LoRA adapters of rank " << run.lora.rank << "\n";
  return run_loop(run, model, data->plan, *data->source, objective, resume,
                  sampler ? sampler->begin(*model.denoiser, resume) : AfterStep{});
}

}  // namespace dt
