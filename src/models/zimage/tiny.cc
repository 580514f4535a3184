#include "models/zimage/tiny.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "models/tiny_pipeline.h"
#include "models/zimage/weights.h"
#include "text/qwen3.h"
#include "vae/random_vae.h"

namespace dt::zimage {
namespace {

constexpr int32_t kVocab = 512;
constexpr int64_t kTextHidden = 64;

Qwen3Config tiny_qwen3() {
  return {.vocab_size = kVocab, .hidden_size = kTextHidden, .intermediate_size = 128, .num_hidden_layers = 2,
          .num_attention_heads = 2, .num_key_value_heads = 1, .head_dim = 32, .rope_theta = 1e6};
}

}  // namespace

ZImageConfig tiny_config() {
  ZImageConfig c;
  c.dim = 64;
  c.n_heads = 2;
  c.n_kv_heads = 2;
  c.n_layers = 2;
  c.n_refiner_layers = 1;
  c.cap_feat_dim = kTextHidden;
  c.axes_dims = {8, 12, 12};
  c.axes_lens = {512, 64, 64};
  return c;
}

void write_tiny_pipeline(const std::string& dir, uint64_t seed, bool distilled, const std::string& transformer_config) {
  const ZImageConfig config =
      ZImageConfig::from_json(with_fields(tiny_config().to_json(), transformer_config), "transformer config");
  write_random_checkpoint((std::filesystem::path(dir) / "transformer").string(), config, seed + (distilled ? 1 : 0));
  TinyPipelineParts parts;
  parts.text_encoder = tiny_qwen3();
  parts.vocab = kVocab;
  parts.text_seed = seed + 10;
  parts.vae = vae::tiny_vae_config(VaeKind::kAutoencoderKL);
  parts.vae.block_out_channels = parts.vae.decoder_block_out_channels = {16, 32, 32, 32};
  parts.vae_seed = seed + 11;
  parts.scheduler = {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
                     {"num_train_timesteps", 1000},
                     {"shift", 3.0},
                     {"use_dynamic_shifting", false}};
  parts.index = {{"_class_name", "ZImagePipeline"},
                 {"is_distilled", distilled},
                 {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                 {"text_encoder", {"transformers", "Qwen3Model"}},
                 {"tokenizer", {"transformers", "Qwen2Tokenizer"}},
                 {"transformer", {"diffusers", "ZImageTransformer2DModel"}},
                 {"vae", {"diffusers", "AutoencoderKL"}}};
  write_tiny_pipeline_parts(dir, parts);
}

}  // namespace dt::zimage
