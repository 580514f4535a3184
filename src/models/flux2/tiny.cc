#include "models/flux2/tiny.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "models/flux2/weights.h"
#include "models/tiny_pipeline.h"
#include "text/qwen3.h"
#include "vae/random_vae.h"

namespace dt::flux2 {
namespace {

constexpr int32_t kVocab = 512;

// 28 layers: hidden state 27 is the deepest klein reads.
Qwen3Config tiny_qwen3() {
  return {.vocab_size = kVocab, .hidden_size = 32, .intermediate_size = 64, .num_hidden_layers = 28,
          .num_attention_heads = 2, .num_key_value_heads = 1, .head_dim = 16, .rope_theta = 1e6,
          .tie_word_embeddings = true};
}

}  // namespace

Flux2Config tiny_config() {
  Flux2Config c;
  c.num_layers = 1;
  c.num_single_layers = 1;
  c.num_attention_heads = 2;
  c.attention_head_dim = 32;
  c.axes_dims_rope = {8, 8, 8, 8};
  c.joint_attention_dim = 3 * tiny_qwen3().hidden_size;
  return c;
}

void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled, const std::string& transformer_config) {
  const Flux2Config config = Flux2Config::from_json(with_fields(tiny_config().to_json(), transformer_config), "transformer config");
  write_random_checkpoint((std::filesystem::path(dir) / "transformer").string(), config, seed + (distilled ? 1 : 0));
  TinyPipelineParts parts;
  parts.text_encoder = tiny_qwen3();
  parts.vocab = kVocab;
  parts.text_seed = seed + 2;
  parts.vae = vae::tiny_vae_config(VaeKind::kFlux2);
  parts.vae.block_out_channels = parts.vae.decoder_block_out_channels = {16, 16, 32, 32};
  parts.vae_seed = seed + 3;
  // The scheduler config the klein repositories copy from FLUX.1-dev (specs/flux2.md §7).
  parts.scheduler = {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                                    {"base_image_seq_len", 256},
                                    {"base_shift", 0.5},
                                    {"max_image_seq_len", 4096},
                                    {"max_shift", 1.15},
                                    {"num_train_timesteps", 1000},
                                    {"shift", 3.0},
                                    {"time_shift_type", "exponential"},
                                    {"use_dynamic_shifting", true}};
  parts.index = {{"_class_name", "Flux2KleinPipeline"},
                                {"_diffusers_version", "0.40.0"},
                                {"is_distilled", distilled},
                                {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                                {"text_encoder", {"transformers", "Qwen3ForCausalLM"}},
                                {"tokenizer", {"transformers", "Qwen2TokenizerFast"}},
                                {"transformer", {"diffusers", "Flux2Transformer2DModel"}},
                                {"vae", {"diffusers", "AutoencoderKLFlux2"}}};
  write_tiny_pipeline_parts(dir, parts);
}

}  // namespace dt::flux2
