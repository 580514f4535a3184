// A tiny Z-Image pipeline folder with random weights and the real layouts (diffusers transformer
// and VAE folders, a transformers Qwen3 folder, a Qwen3-style tokenizer): the test worlds of
// `make-tiny` and the tests.
#pragma once
#include <cstdint>
#include <string>

#include "models/zimage/config.h"

namespace dt::zimage {

// The tiny transformer: dim 64 in 2 heads, 2 main layers and 1 refiner each, caption features of
// the tiny Qwen3's hidden size 64.
ZImageConfig tiny_config();

// Writes a Z-Image pipeline folder (Family::write_tiny_pipeline): model_index.json (is_distilled),
// scheduler/, transformer/ (drawn from `seed` + (distilled ? 1 : 0)), text_encoder/, tokenizer/,
// vae/ (a 4-level AutoencoderKL: 8 px per latent, as the real one).
// `transformer_config`: config.json fields (a JSON object) replacing tiny_config()'s.
void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled, const std::string& transformer_config = "{}");

}  // namespace dt::zimage
