// The Qwen3 decoder as a text encoder (transformers' Qwen3ForCausalLM): token embeddings, decoder
// layers (RMSNorm → attention with per-head q/k RMSNorm before rotate-half RoPE, grouped-query
// heads, causal + key-padding mask → RMSNorm → SwiGLU MLP), final RMSNorm, optional LM head.
// Modules are named as the checkpoint keys (model.layers.0.self_attn.q_proj.weight, ...); every size
// comes from config.json.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include "core/model_api.h"
#include "nn/linear.h"
#include "nn/rms_norm.h"

namespace dt {

struct Qwen3Config {
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  bool attention_bias = false, tie_word_embeddings = false;

  // transformers' config.json; `where` names the file in errors.
  static Qwen3Config from_json(const nlohmann::json& j, const std::string& where);
  // A checkpoint without config.json (ComfyUI's text encoder files): every size from the shapes of
  // the weights (tensor names without the "model." prefix), the two constants the weights do not
  // hold from the released Qwen3 models (rope_theta 1e6, rms_norm_eps 1e-6). dt::Error naming
  // `where` when a tensor the sizes come from is missing or the shapes disagree.
  static Qwen3Config from_shapes(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& where);
  nlohmann::json to_json() const;
};

class Qwen3AttentionImpl : public torch::nn::Module {
 public:
  explicit Qwen3AttentionImpl(const Qwen3Config& c);
  // x: [B, S, hidden]; cos, sin: [S, head_dim/2]; key_mask: [B, S] bool.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& key_mask);

  nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  nn::RMSNorm q_norm{nullptr}, k_norm{nullptr};
  int64_t heads, kv_heads, head_dim;
};
TORCH_MODULE(Qwen3Attention);

class Qwen3MlpImpl : public torch::nn::Module {
 public:
  explicit Qwen3MlpImpl(const Qwen3Config& c);
  at::Tensor forward(const at::Tensor& x);  // down(SiLU(gate(x)) ⊙ up(x))

  nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Qwen3Mlp);

class Qwen3DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit Qwen3DecoderLayerImpl(const Qwen3Config& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& key_mask);

  Qwen3Attention self_attn{nullptr};
  Qwen3Mlp mlp{nullptr};
  nn::RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(Qwen3DecoderLayer);

// The "model." part of the checkpoint: embed_tokens, layers, norm.
class Qwen3ModelImpl : public torch::nn::Module {
 public:
  explicit Qwen3ModelImpl(const Qwen3Config& c);

  std::shared_ptr<torch::nn::Module> embed_tokens;  // holds `weight`
  at::Tensor embedding;                             // that weight, [vocab, hidden]
  torch::nn::ModuleList layers{nullptr};
  nn::RMSNorm norm{nullptr};
};
TORCH_MODULE(Qwen3Model);

class Qwen3Encoder : public torch::nn::Module {
 public:
  // with_lm_head: an untied `lm_head.weight` is part of the module (tied heads reuse the embeddings).
  Qwen3Encoder(const Qwen3Config& c, bool with_lm_head);

  // A transformers folder (config.json + model*.safetensors), keys with or without the "model."
  // prefix. Strict: a missing, unexpected or wrong-shape tensor is a dt::Error naming the path.
  // Without lm_head, an untied head in the file is left on disk (a text encoder never needs it).
  static std::shared_ptr<Qwen3Encoder> load(const std::string& path, const LoadOptions& options, bool lm_head = true);

  // The transformers hidden_states tuple at the requested indices, in order: 0 = token embeddings,
  // i in 1..L-1 = output of decoder layer i (no final norm), L = final RMSNorm of the last layer.
  // Layers past the highest requested index are not run. input_ids: [B, S] int64 (< vocab);
  // attention_mask: [B, S], 1 = real token, 0 = padding (never attended to). Positions are 0..S-1
  // in every row. A position with no real token at or before it gets 0 attention output.
  // Z-Image: {L - 1} (hidden_states[-2]); FLUX.2 klein: {9, 18, 27}.
  std::vector<at::Tensor> hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                        const std::vector<int64_t>& indices);

  bool has_lm_head() const { return config.tie_word_embeddings || lm_head; }
  at::Tensor logits(const at::Tensor& final_hidden);  // [B, S, vocab] from hidden_states[L]

  Qwen3Config config;
  Qwen3Model model{nullptr};
  nn::Linear lm_head{nullptr};
};

// A transformers folder with random weights drawn from `seed` (sorted-name order: matrices
// N(0, 1/fan_in), embeddings N(0, 1), norm weights 1 + 0.1·N(0, 1), biases 0.1·N(0, 1)) and real
// Qwen3ForCausalLM key names. Same seed ⇒ same bytes.
void write_random_qwen3(const std::string& dir, const Qwen3Config& config, uint64_t seed);

}  // namespace dt
