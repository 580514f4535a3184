// A complete tiny world of the real architectures for smoke tests, unit tests and benchmarks: a
// "Base" and a differently-initialised distilled pipeline folder (named as the family calls its
// distilled model, FamilyDefaults::distilled_name) (transformer/, text_encoder/,
// tokenizer/, vae/, scheduler/ + model_index.json) sharing one VAE and text encoder (one latent
// space, as the real pair does), a generated dataset of captioned images, and example configs
// train.toml and transfer.toml.
#pragma once
#include <string>

#include "run/run_config.h"

namespace dt {

struct TinyWorldOptions {
  std::string family;  // empty: the first registered family
  int images = 8;
  int64_t resolution = 64;  // pixels per side of the generated images
  // Entries of the transformers' config.json to change (a JSON object), e.g. a larger model for a
  // benchmark: {"dim": 1024, "n_layers": 8}.
  std::string transformer_config = "{}";
};

void make_tiny_world(const std::string& dir, const TinyWorldOptions& options = {});

// The run config make_tiny_world writes as train.toml (paths relative to `dir`).
RunConfig tiny_train_config();

}  // namespace dt
