// A complete tiny world of the real architectures for smoke tests, unit tests and benchmarks: a
// "Base" and a differently-initialised "Turbo" pipeline folder (transformer/, text_encoder/,
// tokenizer/, vae/, scheduler/ + model_index.json) sharing one VAE and text encoder (one latent
// space, as the real pair does), a generated dataset of captioned images, and example configs
// train.toml and transfer.toml.
#pragma once
#include <string>

#include "train/run_config.h"

namespace dt {

struct TinyWorldOptions {
  std::string family = "zimage";  // or "flux2-klein"
  int images = 8;
  int64_t resolution = 64;  // pixels per side of the generated images
};

void make_tiny_world(const std::string& dir, const TinyWorldOptions& options = {});

// The folder of the distilled sibling: "turbo" (Z-Image-Turbo), "distilled" (FLUX.2 klein).
std::string tiny_student_folder(const std::string& family);

// The run config make_tiny_world writes as train.toml (paths relative to `dir`).
RunConfig tiny_train_config();

}  // namespace dt
