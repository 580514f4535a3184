// Tiny FLUX.2 [klein] pipeline folders with random weights and the real layouts (diffusers
// transformer and VAE folders, a transformers Qwen3 folder deep enough for hidden states 9/18/27, a
// Qwen3-style tokenizer): the test worlds of `make-tiny --family flux2-klein` and the tests.
#pragma once
#include <cstdint>
#include <string>

#include "models/flux2/config.h"

namespace dt::flux2 {

// The tiny transformer: 2 heads of 32 (RoPE 8 per axis), one double and one single block, text
// features of 3 × 32 (the tiny Qwen3's hidden size).
Flux2Config tiny_config();

// Writes a klein pipeline folder: model_index.json (is_distilled), scheduler/, transformer/,
// text_encoder/, tokenizer/, vae/ (a 4-level AutoencoderKLFlux2: 16 px per token, as the real one).
// The text encoder, tokenizer and VAE depend on nothing but `seed`, so a Base and a distilled
// pipeline written with one seed share them as the real klein pair does; the transformer is drawn
// from `seed` + (distilled ? 1 : 0). Same arguments ⇒ the same bytes.
// `transformer_config`: config.json fields (a JSON object) replacing tiny_config()'s.
void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled, const std::string& transformer_config = "{}");

}  // namespace dt::flux2
