#include "run/train_run.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "core/dtype.h"
#include "core/error.h"
#include "core/listing.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "data/dataset.h"
#include "dist/group.h"
#include "lora/file.h"
#include "run/run_samples.h"
#include "sample/generate.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

bool full(const RunConfig& run) { return run.train.method == "full"; }

std::string output_path(const RunConfig& run) {
  const std::string& given = full(run) ? run.output.model : run.output.lora;
  return given.empty() ? (fs::path(run.resolve(run.output.run_dir)) / (full(run) ? "model" : "lora.safetensors")).string()
                       : run.resolve(given);
}

// The saved tensors' dtype (output.save_dtype).
c10::ScalarType save_dtype(const RunConfig& run) {
  return dtype_by_name(run.output.save_dtype, "output.save_dtype", {torch::kFloat, torch::kBFloat16, torch::kHalf});
}

// The transformer folder of model.base, whose config.json a full save takes.
std::string base_transformer_folder(const RunConfig& run) {
  const std::string base = run.resolve(run.model.base);
  const std::string folder = pipeline_component(base, "transformer");
  if (!fs::is_regular_file(fs::path(folder) / "config.json"))
    throw file_error(base, "train.method = full saves a diffusers model and takes its config.json from model.base's "
                           "transformer folder, which this is not (a single file or a folder without config.json)");
  return folder;
}

// Every entry of `from` except `skip`, hard-linked into `to` (copied where links cannot be made).
void link_tree(const fs::path& from, const fs::path& to, const std::string& skip) {
  for (const auto& entry : fs::directory_iterator(from)) {
    const std::string name = entry.path().filename().string();
    if (name == skip) continue;
    const fs::path target = to / name;
    if (entry.is_directory()) {
      fs::create_directories(target);
      link_tree(entry.path(), target, "");
      continue;
    }
    std::error_code ec;
    fs::create_hard_link(entry.path(), target, ec);
    if (ec) fs::copy_file(entry.path(), target);
  }
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

std::string step_name(const char* prefix, int64_t step) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%06lld", static_cast<long long>(step));
  return prefix + std::string(digits);
}

}  // namespace

std::string intermediate_lora_name(int64_t step) { return step_name("lora-step-", step) + ".safetensors"; }

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
  o.compute_dtype = dtype_by_name(m.dtype, "model.dtype", {torch::kFloat, torch::kBFloat16});
  weight_format(m);  // refused here, before any cache is filled
  if (m.offload_blocks < 0) throw Error("model.offload_blocks must be 0 (off) or a number of blocks");
  if (m.offload_blocks > 0 && !o.device.is_cuda())
    throw Error("model.offload_blocks keeps blocks in host memory for a GPU, but model.device is '" + m.device + "'");
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
  out.family = &family;
  const LoadOptions options = load_options(m);
  if (m.offload_blocks > 0 && !m.gradient_checkpointing)
    throw Error("model.offload_blocks needs model.gradient_checkpointing = true: a plain backward pass would keep "
                "every offloaded block on the device");
  LoadOptions load = options;
  const WeightFormat weights = weight_format(m);
  load.device = load_device(options.device, weights, m.offload_blocks);
  load.block_weights = weights;  // adapters are attached, never merged, so the blocks load in 8 bits
  out.denoiser = family.load_transformer(run.resolve(m.base), load);
  torch::nn::Module& module = out.denoiser->module();
  for (auto& p : module.parameters()) p.requires_grad_(false);
  store_and_place(*out.denoiser, weights, m.offload_blocks, options.device);  // before the adapters: they go where the weights are
  if (!l.init.empty()) {
    const auto weights = lora::read_lora(run.resolve(l.init), family.lora_keys(), &module);
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
  if (m.offload_blocks > 0) out.denoiser->offload_blocks(static_cast<int>(m.offload_blocks), options.device);
  return out;
}

WeightFormat weight_format(const ModelConfig& m) {
  return weight_format_by_name(m.weight_dtype, "model.weight_dtype");
}

void check_full_training(const ModelConfig& m) {
  if (weight_format(m) != WeightFormat::dense)
    throw Error("model.weight_dtype = \"" + m.weight_dtype + "\" stores frozen weights in 8 bits, and full training (train.method = full, distill) trains every weight: leave it empty");
  if (m.offload_blocks > 0)
    throw Error("model.offload_blocks offloads frozen weights, and full training (train.method = full, distill) trains every weight: set it to 0");
  if (load_options(m).compute_dtype != torch::kFloat)
    throw Error("train.method = full needs model.dtype = \"fp32\" (AdamW's small updates vanish in bf16 weights)");
}

LoadedModel load_model_full(const RunConfig& run, const ModelConfig& m) {
  const Family& family = family_of(run, m);
  check_full_training(m);
  LoadedModel out;
  out.family = &family;
  out.denoiser = family.load_transformer(run.resolve(m.base), load_options(m));
  for (auto& p : out.denoiser->module().parameters()) p.requires_grad_(true);
  return out;
}

NamedTensors trained_tensors(const LoadedModel& model) {
  NamedTensors out;
  if (model.adapters) {
    // The live tensors (state_dict() holds detached views), named as in state_dict().
    const std::vector<at::Tensor> tensors = model.adapters->parameters();  // down, up per adapter
    for (size_t i = 0; i < model.adapters->size(); ++i) {
      out.emplace_back(model.adapters->names()[i] + ".lora_down.weight", tensors[2 * i]);
      out.emplace_back(model.adapters->names()[i] + ".lora_up.weight", tensors[2 * i + 1]);
    }
    return out;
  }
  for (const auto& item : model.denoiser->module().named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

void check_method(const RunConfig& run, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), run.train.method) == allowed.end())
    throw Error("train.method '" + run.train.method + "' is not one of " + join(allowed) + " for this command");
}

void save_model(const RunConfig& run, const LoadedModel& model, const std::string& path) {
  const std::string base = run.resolve(run.model.base);
  const std::string source = base_transformer_folder(run);
  const bool pipeline = fs::path(source) != fs::path(base);
  const fs::path target(path), partial(path + ".partial"), previous(path + ".previous");
  fs::remove_all(partial);
  fs::create_directories(partial);
  if (pipeline) link_tree(base, partial, "transformer");
  NamedTensors weights;
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : model.denoiser->module().named_parameters())
      weights.emplace_back(item.key(), item.value().detach().to(torch::kCPU, save_dtype(run)).contiguous());
  }
  const nlohmann::json config = read_json_file((fs::path(source) / "config.json").string());
  write_model_folder((pipeline ? partial / "transformer" : partial).string(), "diffusion_pytorch_model.safetensors",
                     weights, config);
  // The earlier save stays whole until the new one is: a kill leaves one of the two complete.
  fs::remove_all(previous);
  if (fs::exists(target)) fs::rename(target, previous);
  fs::rename(partial, target);
  fs::remove_all(previous);
}

void save_lora(const RunConfig& run, const LoadedModel& model, const std::string& path) {
  lora::WriteOptions o;
  o.format = lora::format_by_name(run.output.format);
  o.dtype = save_dtype(run);
  o.base_model = model.denoiser->identity();
  lora::write_lora(path, model.adapters->weights(model.family->name()), model.family->lora_keys(), o);
}

LoopSettings loop_settings(const RunConfig& run, const LoadedModel& model) {
  const TrainConfig& t = run.train;
  if (t.optimizer != "adamw") throw Error("train.optimizer '" + t.optimizer + "' is not one of adamw");
  // Checked before anything is computed.
  if (model.adapters) lora::format_by_name(run.output.format);
  else base_transformer_folder(run);
  save_dtype(run);
  LoopSettings s;
  s.schedule = {t.learning_rate, t.lr_schedule, t.warmup_steps, t.min_lr_factor};
  s.adamw = {t.beta1, t.beta2, t.epsilon, t.weight_decay};
  s.clip_grad_norm = t.clip_grad_norm;
  s.gradient_accumulation = t.gradient_accumulation;
  s.max_steps = t.max_steps;
  s.seed = static_cast<uint64_t>(t.seed);
  const LoadOptions o = load_options(run.model);
  s.device = o.device;
  s.dtype = o.compute_dtype;
  s.gradient_checkpointing = run.model.gradient_checkpointing;
  s.run_dir = run.resolve(run.output.run_dir);
  s.output_path = output_path(run);
  s.save_every = t.save_every;
  s.checkpoint_every = t.checkpoint_every;
  s.keep_checkpoints = t.keep_checkpoints;
  s.warm_up_pass = t.warm_up_pass;
  s.tensorboard = run.output.tensorboard;
  s.loss_smoothing = run.output.loss_smoothing;
  if (model.adapters) {
    s.save = [&run, &model](const std::string& path) { save_lora(run, model, path); };
    s.save_name = intermediate_lora_name;
  } else {
    s.save = [&run, &model](const std::string& path) { save_model(run, model, path); };
    s.save_name = [](int64_t step) { return step_name("model-step-", step); };
  }
  s.memory_settings = "batch_size " + std::to_string(t.batch_size) + ", dtype " + run.model.dtype;
  return s;
}

LoopResult run_loop(const RunConfig& run, LoadedModel& model, const Plan& plan, SampleSource& source,
                    Objective& objective, bool resume, const AfterStep& after_step) {
  return run_loop(loop_settings(run, model), *model.denoiser, trained_tensors(model), plan, source, objective, resume,
                  after_step);
}

LoopResult train(const RunConfig& run, bool resume) {
  FlowObjective objective(LossFunction::from_settings(run.train.loss, run.train.huber_delta));
  const std::unique_ptr<RunData> data = prepare_data(run, run.model);
  // Before the transformer loads; rank 0 alone samples.
  const std::unique_ptr<RunSampler> sampler = dist::world().is_main() ? RunSampler::create(run, run.model) : nullptr;
  check_method(run, {"lora", "full"});
  LoadedModel model = full(run) ? load_model_full(run, run.model) : load_model(run, run.model, run.lora);
  std::cout << "model " << model.family->name() << " on " << run.model.device << " (" << run.model.dtype << "), ";
  if (model.adapters)
    std::cout << model.adapters->size() << " LoRA adapters of rank " << run.lora.rank << "\n";
  else
    std::cout << "every weight trained (" << model.denoiser->module().parameters().size() << " tensors)\n";
  return run_loop(run, model, data->plan, *data->source, objective, resume,
                  sampler ? sampler->begin(*model.denoiser, resume) : AfterStep{});
}

}  // namespace dt
