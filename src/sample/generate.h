// Prompts to images with a family's three components, each loaded only while it is used and freed
// after: the text encoder (all prompts at once), the transformer (every sample), the VAE (every
// decode). Training-time samplers reuse the pieces with the model they already hold.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "data/image.h"
#include "models/family.h"
#include "sample/output.h"
#include "sample/sample_config.h"

namespace dt {

class Progress;

// Where a sampler's components come from: pipeline folders (or a transformer checkpoint).
struct SamplingModels {
  const Family* family = nullptr;
  std::string transformer, text_encoder, vae;
  LoadOptions options;
  int64_t offload_blocks = 0;  // model.offload_blocks (Denoiser::offload_blocks)
  WeightFormat weight_format = WeightFormat::dense;  // model.weight_dtype
};

// Where a transformer with 8-bit or offloaded weights is loaded: in host memory, so that the device
// never holds the full-precision weights (8-bit) or every block (offloading).
c10::Device load_device(c10::Device device, WeightFormat weight_format, int64_t offload_blocks);
// After loading on load_device() and merging any LoRA: stores the block weights in 8 bits unless
// they were loaded so (LoadOptions::block_weights), releases the checkpoint's memory map, and moves the model to `device` unless its blocks are to
// be offloaded (offload_blocks does that).
void store_and_place(Denoiser& model, WeightFormat weight_format, int64_t offload_blocks, c10::Device device);

// Caption features by prompt text, on the CPU.
using PromptFeatures = std::map<std::string, TextFeatures>;

// Features of every prompt and (where CFG runs) negative prompt of `prompts`.
PromptFeatures encode_prompts(const Family& family, const std::string& text_encoder_path, const LoadOptions& options,
                              const std::vector<SamplePrompt>& prompts);

// The final latent of one resolved prompt on a loaded model, with its LoRA state as it is.
at::Tensor sample_prompt(Denoiser& model, const Family& family, const SamplePrompt& prompt, const PromptFeatures& features,
                         const LoadOptions& options, Progress* progress = nullptr);

// Images from latents with the family's VAE.
std::vector<Image> decode_latents(const Family& family, const std::string& vae_path, const LoadOptions& options,
                                  const std::vector<at::Tensor>& latents);

// One forward of a sampling step of the largest of `prompts` (in pixels; without CFG, whose two
// forwards are each of that size) with nothing kept: the process takes the memory of its largest step (the kernel zeroes each new page on its
// first touch, which made the first step of a small model 1.2–1.3× a later one) and a prompt that
// does not fit fails before any other is drawn. The training loop's warm-up pass does the same
// (train/trainer.h). Returns the seconds it took.
double warm_up_forward(Denoiser& model, const Family& family, const std::vector<SamplePrompt>& prompts,
                       const PromptFeatures& features, const LoadOptions& options);

// The whole pipeline for resolved prompts; LoRA files are merged into the transformer's weights
// at their strengths (any number; their deltas add up). `warm_up`: warm_up_forward() before the first
// prompt, its time printed.
std::vector<Image> generate(const SamplingModels& models, const std::vector<LoraFile>& loras,
                            const std::vector<SamplePrompt>& prompts, bool warm_up = true);

}  // namespace dt
