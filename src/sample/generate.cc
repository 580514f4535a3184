#include "sample/generate.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "core/progress.h"
#include "lora/file.h"
#include "sample/sampler.h"

namespace dt {

PromptFeatures encode_prompts(const Family& family, const std::string& text_encoder_path, const LoadOptions& options,
                              const std::vector<SamplePrompt>& prompts) {
  std::vector<std::string> texts;
  auto add = [&](const std::string& t) {
    if (std::find(texts.begin(), texts.end(), t) == texts.end()) texts.push_back(t);
  };
  for (const SamplePrompt& p : prompts) {
    add(p.prompt);
    if (!(p.cfg <= 1)) add(p.negative_prompt);  // NaN: not resolved yet, CFG may run
  }
  PromptFeatures out;
  if (texts.empty()) return out;
  const std::unique_ptr<TextEncoder> encoder = family.load_text_encoder(text_encoder_path, options);
  const std::vector<TextFeatures> features = encoder->encode(texts);
  for (size_t i = 0; i < texts.size(); ++i) out[texts[i]] = features[i].cpu();
  return out;
}

at::Tensor sample_prompt(Denoiser& model, const Family& family, const SamplePrompt& p, const PromptFeatures& features,
                         const LoadOptions& options, Progress* progress) {
  SamplerInput in;
  in.noise = sample_noise(p.seed, family.latent_shape(p.height, p.width));
  in.sigmas = family.sigmas(static_cast<int>(p.steps), p.height, p.width);
  in.positive = features.at(p.prompt);
  in.cfg = p.cfg;
  if (p.cfg > 1) in.negative = features.at(p.negative_prompt);
  return sample_latent(model, in, options.device, options.compute_dtype, [&] {
    if (progress) progress->advance();
  });
}

std::vector<Image> decode_latents(const Family& family, const std::string& vae_path, const LoadOptions& options,
                                  const std::vector<at::Tensor>& latents) {
  const std::unique_ptr<Autoencoder> vae = family.load_vae(vae_path, options);
  std::vector<Image> images;
  for (const at::Tensor& x0 : latents) images.push_back(image_from_tensor(vae->decode(x0.unsqueeze(0))[0]));
  return images;
}

c10::Device load_device(c10::Device device, WeightFormat weight_format, int64_t offload_blocks) {
  return weight_format != WeightFormat::dense || offload_blocks > 0 ? c10::Device(c10::kCPU) : device;
}

void store_and_place(Denoiser& model, WeightFormat weight_format, int64_t offload_blocks, c10::Device device) {
  if (weight_format != WeightFormat::dense) {
    bool stored = false;  // loaded in 8 bits (LoadOptions::block_weights): codes are integers
    for (const at::Tensor& t : model.module().parameters()) stored |= !t.is_floating_point();
    if (!stored) model.store_blocks_8bit(weight_format);
    // The weights left in the model's dtype may be views of the checkpoint's memory map, which
    // would keep the whole full-precision file resident: they get memory of their own.
    torch::NoGradGuard no_grad;
    for (at::Tensor t : model.module().parameters())
      if (t.is_floating_point()) t.set_data(t.clone());
  }
  if (offload_blocks == 0) model.module().to(device);
}

double warm_up_forward(Denoiser& model, const Family& family, const std::vector<SamplePrompt>& prompts,
                       const PromptFeatures& features, const LoadOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  SamplePrompt largest = *std::max_element(prompts.begin(), prompts.end(), [](const SamplePrompt& a, const SamplePrompt& b) {
    return a.width * a.height < b.width * b.height;
  });
  largest.steps = 1;
  largest.cfg = 1;  // one forward: CFG's second is another of the same size
  sample_prompt(model, family, largest, features, options);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<Image> generate(const SamplingModels& m, const std::vector<LoraFile>& loras, const std::vector<SamplePrompt>& prompts,
                            bool warm_up) {
  const Family& family = *m.family;
  const PromptFeatures features = encode_prompts(family, m.text_encoder, m.options, prompts);
  std::vector<at::Tensor> latents;
  {
    LoadOptions load = m.options;
    load.device = load_device(m.options.device, m.weight_format, m.offload_blocks);
    // Merged LoRA files change the block weights: their 8-bit storage waits for the merge.
    if (loras.empty()) load.block_weights = m.weight_format;
    const std::unique_ptr<Denoiser> model = family.load_transformer(m.transformer, load);
    std::vector<std::pair<std::string, double>> files;
    for (const LoraFile& l : loras) files.emplace_back(l.path, l.strength);
    if (!files.empty()) lora::merge_lora_files(model->module(), family.lora_keys(), files);
    store_and_place(*model, m.weight_format, m.offload_blocks, m.options.device);
    if (m.offload_blocks > 0) model->offload_blocks(static_cast<int>(m.offload_blocks), m.options.device);
    model->module().eval();
    if (warm_up && !prompts.empty()) {
      std::cout << "warm-up forward on the largest prompt, nothing kept: " << std::flush;
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.3f s\n", warm_up_forward(*model, family, prompts, features, m.options));
      std::cout << seconds;
    }
    int64_t total = 0;
    for (const SamplePrompt& p : prompts) total += p.steps;
    Progress progress("sample", total);
    for (const SamplePrompt& p : prompts) latents.push_back(sample_prompt(*model, family, p, features, m.options, &progress));
    progress.finish();
  }
  return decode_latents(family, m.vae, m.options, latents);
}

}  // namespace dt
