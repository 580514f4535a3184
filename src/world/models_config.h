// How a world's Base and Turbo are made, per model family: a `[[models]]` table of the world
// config (world_config.h). The Base is the family's real architecture at a small config, trained
// from scratch on the world's images (train.method = "full", caption dropout so that CFG works);
// the Turbo is distilled from it (deltatrain distill). `deltatrain world build` runs it all.
#pragma once
#include <cstdint>
#include <string>

#include "world/efficacy_config.h"

namespace dt::world {

struct ModelsConfig {
  std::string family;
  std::string transformer = "{}";
  int64_t seed = 1;
  int64_t text_max_length = 0;
  int64_t base_images = 2000;
  int64_t base_steps = 3000;
  int64_t base_batch_size = 32;
  double base_learning_rate = 1e-3;
  int64_t base_warmup_steps = 100;
  double caption_dropout = 0.1;
  int64_t base_sample_steps = 30;
  double base_cfg = 4;
  int64_t turbo_steps = 4;
  int64_t distill_substeps = 8;
  int64_t distill_images = 1000;
  int64_t distill_seeds = 2;
  int64_t distill_train_steps = 2000;
  double distill_learning_rate = 3e-4;
  int64_t eval_prompts = 200;
  EfficacyConfig efficacy;

  template <class V>
  void fields(V& v) {
    v("family", family, "the model family, as the registry names it (required)");
    v("transformer", transformer, "the Base transformer's config.json fields (a JSON object) replacing the family's tiny config");
    v("text_max_length", text_max_length, "positions the prompts are padded to, written as the tokenizer's model_max_length (0: the family's own, 512)");
    v("seed", seed, "seed of the random initialisation, the plans and the trajectories");
    v("base_images", base_images, "images of the Base's training set (scene seeds 1, 2, ...)");
    v("base_steps", base_steps, "optimizer steps of the Base's training from scratch");
    v("base_batch_size", base_batch_size, "images per step of the Base's training, and trajectory steps per step of the distillation");
    v("base_learning_rate", base_learning_rate, "peak learning rate (AdamW, warm-up then cosine decay)");
    v("base_warmup_steps", base_warmup_steps, "warm-up steps");
    v("caption_dropout", caption_dropout, "probability of the empty caption in the Base's training (CFG needs it)");
    v("base_sample_steps", base_sample_steps, "the Base's sampling steps (its gate: shape and colour as prompted)");
    v("base_cfg", base_cfg, "the Base's standard CFG weight in sampling, and the guidance the Turbo is distilled at");
    v("turbo_steps", turbo_steps, "the Turbo's sampling steps (no CFG)");
    v("distill_substeps", distill_substeps, "Base steps per Turbo step in the recorded trajectories");
    v("distill_images", distill_images, "captions (of the Base's training set, the first ones) the trajectories start from");
    v("distill_seeds", distill_seeds, "trajectories per caption (noise seeds)");
    v("distill_train_steps", distill_train_steps, "optimizer steps of the distillation");
    v("distill_learning_rate", distill_learning_rate, "peak learning rate of the distillation");
    v("eval_prompts", eval_prompts, "held-out prompts each gate samples and scores");
    v("efficacy", efficacy, "how `deltatrain world efficacy` measures delta transfer on this family's Base and Turbo");
  }
};

}  // namespace dt::world
