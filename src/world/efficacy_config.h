// How `deltatrain world efficacy` measures delta transfer on a world's Base and Turbo: the concept
// LoRAs trained on the Base, the arms compared on the Turbo, and how many prompts score each.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dt::world {

struct EfficacyConfig {
  int64_t lora_rank = 16;
  double lora_alpha = 16;
  std::string lora_preset = "attn-mlp";
  int64_t lora_steps = 300;
  int64_t batch_size = 4;
  double learning_rate = 1e-3;
  double caption_dropout = 0.1;
  std::vector<double> guidances = {1, 2, 3, 4};
  int64_t seeds = 3;
  int64_t curve_points = 4;
  int64_t prompts = 50;
  int64_t drift_prompts = 50;
  int64_t grid_prompts = 3;

  template <class V>
  void fields(V& v) {
    v("lora_rank", lora_rank, "rank of every LoRA of the table (the Base's, the Turbo's own, the transferred ones)");
    v("lora_alpha", lora_alpha, "their alpha");
    v("lora_preset", lora_preset, "their layer preset");
    v("lora_steps", lora_steps, "optimizer steps of each concept LoRA on the Base, of the one trained on the Turbo, and of each learn");
    v("batch_size", batch_size, "images (records in learn) per step");
    v("learning_rate", learning_rate, "constant learning rate of every LoRA training and learn");
    v("caption_dropout", caption_dropout, "probability of the empty caption in the concept LoRAs' training");
    v("guidances", guidances, "g of the approximate-form transfers (arm e); the best by concept score is the exact form's and the fresh LoRA's (arms f, g)");
    v("seeds", seeds, "training seeds per arm (1, 2, ...): the table gives mean ± standard deviation over them");
    v("curve_points", curve_points, "learn steps at which the best transfer's concept score is measured (evenly spaced up to lora_steps)");
    v("prompts", prompts, "held-out trigger prompts each arm samples and scores");
    v("drift_prompts", drift_prompts, "held-out prompts without the trigger on which each arm is compared with the model alone");
    v("grid_prompts", grid_prompts, "trigger prompts in each concept's grid (rows), besides one prompt without it");
  }
};

}  // namespace dt::world
