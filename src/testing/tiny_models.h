// Small real models and the run config the trainer, transfer, sampler and cache tests share, each
// written in one place so that a test says only what it changes.
#pragma once
#include <string>

#include "models/zimage/config.h"
#include "models/zimage/tiny.h"
#include "run/run_config.h"
#include "testing/device.h"
#include "text/qwen3.h"

namespace dt::testing {

// A Z-Image transformer of the golden's sizes (shared/golden/zimage_transformer: dim 64 in 2
// heads, 2 main layers, 1 refiner each) reading caption features of `cap_feat_dim`.
inline ZImageConfig golden_sized_zimage(int64_t cap_feat_dim = 48, int64_t caption_positions = 256) {
  ZImageConfig c = zimage::tiny_config();  // the golden's sizes
  c.cap_feat_dim = cap_feat_dim;
  c.axes_lens = {caption_positions, 64, 64};
  return c;
}

// A Qwen3 encoder that writes in milliseconds: hidden 32 in 4 heads (2 key/value heads of 8),
// tied embeddings.
inline Qwen3Config small_qwen3(int64_t vocab_size, int64_t layers) {
  return {.vocab_size = vocab_size, .hidden_size = 32, .intermediate_size = 40, .num_hidden_layers = layers,
          .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .tie_word_embeddings = true};
}

// A run on the transformer at `dir`/`base` on the test device (testing/device.h): fp32, rank-4
// LoRA (alpha 4), learning rate 3e-3, a checkpoint after every step, outputs in `dir`/run without
// TensorBoard.
inline RunConfig tiny_run(const std::string& dir, const std::string& base, const std::string& family) {
  RunConfig run;
  run.base_dir = dir;
  run.model.base = base;
  run.model.family = family;
  run.model.dtype = "fp32";
  run.model.device = test_device_name();
  run.lora.rank = 4;
  run.lora.alpha = 4;
  run.train.learning_rate = 3e-3;
  run.train.checkpoint_every = 1;
  run.output.run_dir = "run";
  run.output.tensorboard = false;
  return run;
}

}  // namespace dt::testing
