// The shipped shapes world (worlds/shapes.toml) shrunk for tests that build it.
#pragma once
#include <string>

#include "io/atomic_file.h"
#include "testing/support.h"

namespace dt::testing {

// The shapes world shrunk until every stage takes a moment: 48² images (the style's frame 0.06 of
// the side is 2 pixels wide there, 1 at 32²), a VAE and a Base of a few steps, one concept, two
// seeds, two g.
inline std::string tiny_shapes_world(const ScratchDir& dir) {
  std::string text = read_file(std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml");
  text = text.substr(0, text.find("[vae]"));
  text.replace(text.find("size = 64"), 9, "size = 48");
  for (size_t at; (at = text.find("images = 30")) != std::string::npos;) text.replace(at, 11, "images = 4");
  text += R"(
[vae]
block_out_channels = [8, 8, 8, 8]
norm_num_groups = 4
latent_channels = 16
steps = 2
warmup_steps = 0
batch_size = 2
images = 8
held_out = 2

[[models]]
family = "zimage"
transformer = '{"dim": 32, "n_heads": 2, "n_kv_heads": 2, "n_layers": 1, "n_refiner_layers": 1, "axes_dims": [4, 6, 6]}'
base_images = 8
base_steps = 3
base_batch_size = 2
base_warmup_steps = 0
base_sample_steps = 3
base_cfg = 3.0
turbo_steps = 2
distill_substeps = 2
distill_images = 2
distill_seeds = 1
distill_train_steps = 2
eval_prompts = 2

[models.efficacy]
lora_rank = 4
lora_alpha = 4
lora_steps = 4
batch_size = 2
guidances = [1.0, 2.0]
seeds = 2
curve_points = 2
prompts = 3
drift_prompts = 2
grid_prompts = 1
)";
  const std::string path = dir / "tiny.toml";
  write_file_atomic(path, text);
  return path;
}

}  // namespace dt::testing
