#include "text/qwen3.h"

#include <filesystem>
#include <map>

#include <torch/torch.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "nn/attention.h"
#include "nn/load_state.h"
#include "nn/rope.h"

namespace dt {

Qwen3Config Qwen3Config::from_json(const nlohmann::json& j, const std::string& where) {
  auto fail = [&](const std::string& msg) { return file_error(where, msg); };
  if (!j.is_object()) throw fail("config is not a JSON object");
  if (j.contains("model_type") && j["model_type"] != "qwen3")
    throw fail("model_type is " + j["model_type"].dump() + ", not \"qwen3\"");
  auto integer = [&](const char* key, std::optional<int64_t> fallback = std::nullopt) -> int64_t {
    if (!j.contains(key) || j[key].is_null()) {
      if (fallback) return *fallback;
      throw fail(std::string("config has no '") + key + "'");
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0) throw fail(std::string("config '") + key + "' is not a positive integer");
    return j[key].get<int64_t>();
  };
  auto number = [&](const char* key, double fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number() || j[key].get<double>() <= 0) throw fail(std::string("config '") + key + "' is not a positive number");
    return j[key].get<double>();
  };
  Qwen3Config c;
  c.vocab_size = integer("vocab_size");
  c.hidden_size = integer("hidden_size");
  c.intermediate_size = integer("intermediate_size");
  c.num_hidden_layers = integer("num_hidden_layers");
  c.num_attention_heads = integer("num_attention_heads");
  c.num_key_value_heads = integer("num_key_value_heads", c.num_attention_heads);
  c.head_dim = integer("head_dim", c.hidden_size / c.num_attention_heads);
  c.rms_norm_eps = number("rms_norm_eps", 1e-6);
  c.rope_theta = number("rope_theta", 10000.0);
  c.attention_bias = j.value("attention_bias", false);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  if (c.num_attention_heads % c.num_key_value_heads != 0) throw fail("num_attention_heads is not a multiple of num_key_value_heads");
  if (c.head_dim % 2 != 0) throw fail("head_dim must be even for RoPE");
  if (j.value("hidden_act", std::string("silu")) != "silu") throw fail("hidden_act " + j["hidden_act"].dump() + " is not supported (silu)");
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) throw fail("rope_scaling is not supported");
  if (j.value("use_sliding_window", false)) throw fail("use_sliding_window is not supported");
  return c;
}

nlohmann::json Qwen3Config::to_json() const {
  return {{"architectures", {"Qwen3ForCausalLM"}},
          {"model_type", "qwen3"},
          {"vocab_size", vocab_size},
          {"hidden_size", hidden_size},
          {"intermediate_size", intermediate_size},
          {"num_hidden_layers", num_hidden_layers},
          {"num_attention_heads", num_attention_heads},
          {"num_key_value_heads", num_key_value_heads},
          {"head_dim", head_dim},
          {"hidden_act", "silu"},
          {"rms_norm_eps", rms_norm_eps},
          {"rope_theta", rope_theta},
          {"rope_scaling", nullptr},
          {"attention_bias", attention_bias},
          {"tie_word_embeddings", tie_word_embeddings},
          {"use_sliding_window", false},
          {"torch_dtype", "float32"}};
}

Qwen3AttentionImpl::Qwen3AttentionImpl(const Qwen3Config& c)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  q_proj = register_module("q_proj", nn::Linear(c.hidden_size, heads * head_dim, c.attention_bias));
  k_proj = register_module("k_proj", nn::Linear(c.hidden_size, kv_heads * head_dim, c.attention_bias));
  v_proj = register_module("v_proj", nn::Linear(c.hidden_size, kv_heads * head_dim, c.attention_bias));
  o_proj = register_module("o_proj", nn::Linear(heads * head_dim, c.hidden_size, c.attention_bias));
  q_norm = register_module("q_norm", nn::RMSNorm(head_dim, c.rms_norm_eps));
  k_norm = register_module("k_norm", nn::RMSNorm(head_dim, c.rms_norm_eps));
}

at::Tensor Qwen3AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                       const at::Tensor& key_mask) {
  const int64_t B = x.size(0), S = x.size(1);
  at::Tensor q = q_norm(q_proj(x).view({B, S, heads, head_dim})).transpose(1, 2);     // [B, H, S, D]
  at::Tensor k = k_norm(k_proj(x).view({B, S, kv_heads, head_dim})).transpose(1, 2);  // [B, Hkv, S, D]
  at::Tensor v = v_proj(x).view({B, S, kv_heads, head_dim}).transpose(1, 2);
  q = nn::apply_rope_rotate_half(q, cos, sin);
  k = nn::apply_rope_rotate_half(k, cos, sin);
  at::Tensor o = nn::attention(q, k, v, key_mask, /*causal=*/true);  // [B, H, S, D]
  // A query with no real key at or before it (left padding, an all-padding row) has no defined
  // output; make it 0 so that it cannot turn later positions into NaN through masked products.
  at::Tensor lonely = (key_mask.to(at::kLong).cumsum(1) == 0).view({B, 1, S, 1});
  o = o.masked_fill(lonely, 0);
  return o_proj(o.transpose(1, 2).reshape({B, S, heads * head_dim}));
}

Qwen3MlpImpl::Qwen3MlpImpl(const Qwen3Config& c) {
  gate_proj = register_module("gate_proj", nn::Linear(c.hidden_size, c.intermediate_size, false));
  up_proj = register_module("up_proj", nn::Linear(c.hidden_size, c.intermediate_size, false));
  down_proj = register_module("down_proj", nn::Linear(c.intermediate_size, c.hidden_size, false));
}

at::Tensor Qwen3MlpImpl::forward(const at::Tensor& x) { return down_proj(torch::silu(gate_proj(x)) * up_proj(x)); }

Qwen3DecoderLayerImpl::Qwen3DecoderLayerImpl(const Qwen3Config& c) {
  self_attn = register_module("self_attn", Qwen3Attention(c));
  mlp = register_module("mlp", Qwen3Mlp(c));
  input_layernorm = register_module("input_layernorm", nn::RMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", nn::RMSNorm(c.hidden_size, c.rms_norm_eps));
}

at::Tensor Qwen3DecoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                          const at::Tensor& key_mask) {
  at::Tensor h = x + self_attn(input_layernorm(x), cos, sin, key_mask);
  return h + mlp(post_attention_layernorm(h));
}

Qwen3ModelImpl::Qwen3ModelImpl(const Qwen3Config& c) {
  embed_tokens = register_module("embed_tokens", std::make_shared<torch::nn::Module>());
  embedding = embed_tokens->register_parameter("weight", torch::empty({c.vocab_size, c.hidden_size}));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Qwen3DecoderLayer(c));
  norm = register_module("norm", nn::RMSNorm(c.hidden_size, c.rms_norm_eps));
}

Qwen3Config Qwen3Config::from_shapes(const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& where) {
  auto shape = [&](const std::string& name, size_t dims) -> const std::vector<int64_t>& {
    const auto it = shapes.find(name);
    if (it == shapes.end()) throw file_error(where, "no config.json, and no tensor " + quoted_name(name) + " to read the sizes from");
    if (it->second.size() != dims || it->second[0] <= 0)
      throw file_error(where, "tensor " + quoted_name(name) + " must have " + std::to_string(dims) + " dimensions");
    return it->second;
  };
  Qwen3Config c;
  const auto& embed = shape("embed_tokens.weight", 2);
  c.vocab_size = embed[0];
  c.hidden_size = embed[1];
  while (shapes.count("layers." + std::to_string(c.num_hidden_layers) + ".self_attn.q_proj.weight")) ++c.num_hidden_layers;
  if (c.num_hidden_layers == 0) shape("layers.0.self_attn.q_proj.weight", 2);  // names the missing tensor
  c.head_dim = shape("layers.0.self_attn.q_norm.weight", 1)[0];
  const int64_t q_rows = shape("layers.0.self_attn.q_proj.weight", 2)[0], kv_rows = shape("layers.0.self_attn.k_proj.weight", 2)[0];
  if (q_rows % c.head_dim || kv_rows % c.head_dim || (q_rows / c.head_dim) % (kv_rows / c.head_dim))
    throw file_error(where, "the attention projections (" + std::to_string(q_rows) + " and " + std::to_string(kv_rows) +
                                " rows) do not split into heads of " + std::to_string(c.head_dim));
  c.num_attention_heads = q_rows / c.head_dim;
  c.num_key_value_heads = kv_rows / c.head_dim;
  c.intermediate_size = shape("layers.0.mlp.gate_proj.weight", 2)[0];
  c.attention_bias = shapes.count("layers.0.self_attn.q_proj.bias") > 0;
  c.tie_word_embeddings = shapes.count("lm_head.weight") == 0;
  c.rope_theta = 1e6;  // every released Qwen3 model
  c.rms_norm_eps = 1e-6;
  return c;
}

Qwen3Encoder::Qwen3Encoder(const Qwen3Config& c, bool with_lm_head) : config(c) {
  model = register_module("model", Qwen3Model(c));
  if (with_lm_head) lm_head = register_module("lm_head", nn::Linear(c.hidden_size, c.vocab_size, false));
}

std::shared_ptr<Qwen3Encoder> Qwen3Encoder::load(const std::string& path, const LoadOptions& options, bool lm_head) {
  Checkpoint ck = Checkpoint::open(path);
  // Qwen3ForCausalLM keys are "model.…" (+ "lm_head.weight"); a bare Qwen3Model has no prefix.
  const bool bare = !ck.contains("model.embed_tokens.weight") && ck.contains("embed_tokens.weight");
  Qwen3Config c;
  if (!ck.config().empty()) {
    c = Qwen3Config::from_json(ck.config(), (std::filesystem::path(path) / "config.json").string());
  } else {
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& name : ck.names()) shapes[bare || name.rfind("model.", 0) != 0 ? name : name.substr(6)] = ck.info(name).shape;
    c = Qwen3Config::from_shapes(shapes, path);
  }
  std::map<std::string, StoredTensor> tensors;
  for (const auto& name : ck.names()) {
    // A tied head saved anyway is a copy of the embeddings.
    if (name == "lm_head.weight" && (c.tie_word_embeddings || !lm_head)) continue;
    tensors.emplace(bare && name != "lm_head.weight" ? "model." + name : name, ck.stored(name));
  }
  auto encoder = std::make_shared<Qwen3Encoder>(c, tensors.count("lm_head.weight") > 0);
  nn::load_state(*encoder, tensors, path, options.device, options.compute_dtype);
  encoder->eval();
  return encoder;
}

std::vector<at::Tensor> Qwen3Encoder::hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                                    const std::vector<int64_t>& indices) {
  const int64_t L = config.num_hidden_layers;
  if (input_ids.dim() != 2 || attention_mask.sizes() != input_ids.sizes())
    throw Error("Qwen3: input_ids and attention_mask must both be [batch, tokens]");
  if (input_ids.numel() > 0 && (input_ids.min().item<int64_t>() < 0 || input_ids.max().item<int64_t>() >= config.vocab_size))
    throw Error("Qwen3: a token id is outside the vocabulary of " + std::to_string(config.vocab_size));
  int64_t last = 0;
  for (int64_t i : indices) {
    if (i < 0 || i > L) throw Error("Qwen3: hidden state " + std::to_string(i) + " does not exist (0.." + std::to_string(L) + ")");
    last = std::max(last, i);
  }
  const at::Tensor& embedding = model->embedding;
  const auto device = embedding.device();
  const int64_t S = input_ids.size(1);
  at::Tensor ids = input_ids.to(device, at::kLong);
  at::Tensor key_mask = attention_mask.to(device).ne(0);
  at::Tensor positions = torch::arange(S, torch::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(-1);
  at::Tensor angles = nn::rope_angles(positions, {config.head_dim}, config.rope_theta);  // [S, D/2]
  at::Tensor cos = angles.cos().to(at::kFloat), sin = angles.sin().to(at::kFloat);

  std::map<int64_t, at::Tensor> states;
  at::Tensor x = at::embedding(embedding, ids);  // [B, S, hidden]
  states[0] = x;
  for (int64_t i = 0; i < std::min(last, L); ++i) {
    x = model->layers->ptr<Qwen3DecoderLayerImpl>(i)->forward(x, cos, sin, key_mask);
    states[i + 1] = i + 1 == L ? model->norm(x) : x;
  }
  std::vector<at::Tensor> out;
  for (int64_t i : indices) out.push_back(states.at(i));
  return out;
}

at::Tensor Qwen3Encoder::logits(const at::Tensor& final_hidden) {
  if (lm_head) return lm_head(final_hidden);
  if (!config.tie_word_embeddings) throw Error("Qwen3: this checkpoint has no LM head");
  return torch::nn::functional::linear(final_hidden, model->embedding);
}

void write_random_qwen3(const std::string& dir, const Qwen3Config& config, uint64_t seed) {
  Qwen3Encoder shape(config, !config.tie_word_embeddings);
  write_model_folder(dir, "model.safetensors", nn::golden_recipe_weights(shape, seed, {"model.embed_tokens.weight"}),
                     config.to_json(), {{"format", "pt"}});
}

}  // namespace dt
