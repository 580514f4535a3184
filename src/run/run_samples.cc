#include "run/run_samples.h"

#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "core/hash.h"
#include "io/atomic_file.h"
#include "nn/linear.h"
#include "train/tensorboard.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

std::string numbered(const std::string& prefix, size_t i, const std::string& suffix = ".png") {
  char name[16];
  std::snprintf(name, sizeof(name), "%02zu", i);
  return prefix + name + suffix;
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

RunSampler::~RunSampler() = default;

std::unique_ptr<RunSampler> RunSampler::create(const RunConfig& run, const ModelConfig& model) {
  const SampleConfig& c = run.sample;
  if (c.prompts.empty() && c.file.empty()) return nullptr;
  if (c.every_steps < 0 || c.every_minutes < 0) throw Error("sample.every_steps and sample.every_minutes must not be negative");
  const CacheModels paths = cache_models(run, model);
  std::unique_ptr<RunSampler> s(new RunSampler);
  s->config_ = c;
  s->models_ = {paths.family, run.resolve(model.base), paths.text_encoder_path, paths.vae_path, paths.options};
  s->model_label_ = model.base;
  const Variant variant = variant_by_name(c.variant, *paths.family, s->models_.transformer);
  const int64_t side = run.data.resolutions.empty() ? 1024 : run.data.resolutions.front();
  for (const SamplePrompt& p : sample_prompts(c, run.base_dir, side))
    s->prompts_.push_back(resolve(p, *paths.family, variant, c.steps, c.guidance));
  if (s->prompts_.empty()) return nullptr;  // a samples.json with every entry disabled
  s->dir_ = c.dir.empty() ? (fs::path(run.resolve(run.output.run_dir)) / "samples").string() : run.resolve(c.dir);
  fs::create_directories(s->dir_);
  s->features_ = encode_prompts(*paths.family, paths.text_encoder_path, paths.options, s->prompts_);
  if (run.output.tensorboard)
    s->tensorboard_ = std::make_unique<TensorBoardWriter>((fs::path(run.resolve(run.output.run_dir)) / "tensorboard" / "samples").string());
  s->last_ = std::chrono::steady_clock::now();
  return s;
}

void RunSampler::add_teacher_column(const RunConfig& run, const ModelConfig& teacher, const std::string& teacher_lora) {
  const CacheModels paths = cache_models(run, teacher);
  const SamplingModels models{paths.family, run.resolve(teacher.base), paths.text_encoder_path, paths.vae_path, paths.options,
                              teacher.offload_blocks, weight_format(teacher)};
  const std::vector<LoraFile> loras = {{run.resolve(teacher_lora), 1.0}};
  std::vector<SamplePrompt> prompts;
  Sha256 key;
  key.update(models.transformer + "\n" + sha256_file(loras[0].path) + "\n");
  for (SamplePrompt p : prompts_) {
    p.steps = 0;
    p.cfg = NAN;
    prompts.push_back(resolve(p, *paths.family, Variant::base, config_.teacher_steps, config_.teacher_guidance));
    key.update(parameters_json({prompts.back(), paths.family->name(), models.transformer, loras}) + "\n");
  }
  const fs::path folder = fs::path(dir_) / "teacher";
  const std::string key_file = (folder / "settings.sha256").string(), want = key.hex();
  teacher_.clear();
  if (fs::exists(key_file) && read_file(key_file) == want) {
    for (size_t i = 0; i < prompts.size(); ++i) teacher_.push_back(read_image((folder / numbered("", i)).string()));
    return;
  }
  teacher_ = generate(models, loras, prompts);
  fs::create_directories(folder);
  for (size_t i = 0; i < prompts.size(); ++i)
    write_sample_png((folder / numbered("", i)).string(), teacher_[i], {prompts[i], paths.family->name(), teacher.base, {{teacher_lora, 1.0}}});
  write_file_atomic(key_file, want);
}

std::vector<Image> RunSampler::sample_images(Denoiser& model, bool lora_enabled) {
  nn::LoraState& state = model.lora_state();
  const nn::LoraState saved = state;
  const bool training = model.module().is_training();
  model.module().eval();
  state.enabled = lora_enabled;
  state.sample_scale = at::Tensor();
  std::vector<at::Tensor> latents;
  try {
    for (const SamplePrompt& p : prompts_) latents.push_back(sample_prompt(model, *models_.family, p, features_, models_.options));
  } catch (...) {
    state = saved;
    model.module().train(training);
    throw;
  }
  state = saved;
  model.module().train(training);
  return decode_latents(*models_.family, models_.vae, models_.options, latents);
}

std::string RunSampler::sample(Denoiser& model, int64_t step) {
  const bool transfer = !teacher_.empty();
  if (transfer && no_lora_.empty()) {
    no_lora_ = sample_images(model, false);
    fs::create_directories(fs::path(dir_) / "no-lora");
    for (size_t i = 0; i < prompts_.size(); ++i)
      write_sample_png((fs::path(dir_) / "no-lora" / numbered("", i)).string(), no_lora_[i],
                       {prompts_[i], models_.family->name(), model_label_, {}});
  }
  const std::vector<Image> images = sample_images(model, true);
  char name[32];
  std::snprintf(name, sizeof(name), "step-%06lld", static_cast<long long>(step));
  const fs::path folder = fs::path(dir_) / name;
  fs::create_directories(folder);
  const double now = wall_seconds();
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const SampleInfo info{prompts_[i], models_.family->name(), model_label_, {{"LoRA in training", 1.0}}, step};
    write_sample_png((folder / numbered("", i)).string(), images[i], info);
    Image shown = images[i];
    if (transfer) {
      // Base + teacher LoRA | student without LoRA | student + LoRA; tiles of one size side by side.
      shown = make_grid({teacher_[i], no_lora_[i], images[i]}, 3);
      write_png((folder / numbered("grid-", i)).string(), shown,
                {{"parameters", "columns: Base + teacher LoRA | student without LoRA | student + LoRA at step " +
                                    std::to_string(step) + "\n" + parameters_text(info)}});
    }
    if (tensorboard_)
      tensorboard_->image(step, numbered(transfer ? "transfer/" : "sample/", i, ""), encode_png(shown), shown.width,
                          shown.height, shown.channels, now);
  }
  last_ = std::chrono::steady_clock::now();
  return folder.string();
}

AfterStep RunSampler::begin(Denoiser& model, bool resume) {
  if (config_.at_start && !resume) sample(model, 0);
  last_ = std::chrono::steady_clock::now();
  return [this, &model](int64_t step, bool last) {
    const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_).count() / 60;
    const bool due = last || (config_.every_steps > 0 && step % config_.every_steps == 0) ||
                     (config_.every_minutes > 0 && minutes >= config_.every_minutes);
    if (due) sample(model, step);
  };
}

}  // namespace dt
