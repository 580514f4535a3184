// The [sample] section of a run config (samples during `train` and transfer `learn`) and the
// prompts a sampler runs: from the section itself or from a OneTrainer samples.json.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "models/family.h"

namespace dt {

struct SampleConfig {
  std::vector<std::string> prompts;
  std::string file;
  std::string negative_prompt;
  int64_t seed = 42;
  int64_t width = 0;
  int64_t height = 0;
  int64_t steps = 0;
  double guidance = -1;
  int64_t teacher_steps = 0;
  double teacher_guidance = -1;
  std::string variant = "auto";
  int64_t every_steps = 0;
  double every_minutes = 0;
  bool at_start = false;
  std::string dir;

  template <class V>
  void fields(V& v) {
    v("prompts", prompts, "prompts sampled during training and learn (none and no `file`: no samples)");
    v("file", file, "OneTrainer samples.json (a list of {prompt, negative_prompt, width, height, seed, diffusion_steps, cfg_scale, enabled}) adding prompts");
    v("negative_prompt", negative_prompt, "negative prompt of `prompts` (used when CFG runs)");
    v("seed", seed, "seed of the first of `prompts`; the i-th uses seed + i, the same at every sampling");
    v("width", width, "image width in pixels; 0 = the first data resolution");
    v("height", height, "image height in pixels; 0 = the first data resolution");
    v("steps", steps, "sampling steps of the model in training; 0 = the family default for its variant (Base many, Turbo few)");
    v("guidance", guidance, "guidance in the family's convention (Z-Image g: o_pos + g·(o_pos − o_neg); FLUX.2 w); -1 = the variant default (Base with CFG, Turbo without)");
    v("teacher_steps", teacher_steps, "transfer grids: steps of the Base + teacher LoRA column; 0 = the Base default");
    v("teacher_guidance", teacher_guidance, "transfer grids: guidance of the Base + teacher LoRA column; -1 = the Base default");
    v("variant", variant, "whose defaults `steps` and `guidance` take: base, distilled, or auto (the model's model_index.json is_distilled)");
    v("every_steps", every_steps, "sample every N optimizer steps; 0 = not by steps");
    v("every_minutes", every_minutes, "sample when this many minutes have passed since the last samples; 0 = not by time");
    v("at_start", at_start, "also sample before the first step (the model as loaded)");
    v("dir", dir, "folder of the sample images; empty = <run_dir>/samples");
  }
};

// One image to generate, fully specified.
struct SamplePrompt {
  std::string prompt;
  std::string negative_prompt;
  uint64_t seed = 0;
  int64_t width = 0, height = 0;
  int64_t steps = 0;  // 0: the default of the model's variant
  double cfg = NAN;   // standard CFG weight (CFG runs iff > 1); NaN: from the variant's guidance
};

// The variant `name` says ("base", "distilled" or the family's name for it, FamilyDefaults::
// distilled_name), or for "auto" (or empty) what the model's
// own files say (Family::variant); dt::Error naming the model when they do not say. `why` says
// which rule decided.
Variant variant_by_name(const std::string& name, const Family& family, const std::string& model_path,
                        std::string* why = nullptr);

// The variant defaults of a family: {steps, standard CFG weight}.
std::pair<int64_t, double> variant_defaults(const Family& family, Variant variant);

// Fills steps and cfg left open (0 / NaN) from `steps` and `guidance` (family convention), each in
// turn left open (0 / negative) meaning the variant default.
SamplePrompt resolve(SamplePrompt p, const Family& family, Variant variant, int64_t steps, double guidance);

// A OneTrainer samples.json: its enabled entries. cfg_scale is a standard CFG weight already.
// Errors name the file.
std::vector<SamplePrompt> read_onetrainer_samples(const std::string& path);

// The prompts of a [sample] section (`prompts`, then `file`, resolved against `base_dir`);
// sizes left at 0 take `default_side`.
std::vector<SamplePrompt> sample_prompts(const SampleConfig& config, const std::string& base_dir, int64_t default_side);

}  // namespace dt
