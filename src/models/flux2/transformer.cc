#include "models/flux2/transformer.h"

#include <torch/torch.h>

#include "core/error.h"
#include "nn/attention.h"
#include "nn/checkpoint.h"
#include "nn/rope.h"
#include "nn/timestep.h"

namespace dt::flux2 {
namespace {

at::Tensor layer_norm(const at::Tensor& x, double eps) { return torch::layer_norm(x, {x.size(-1)}, {}, {}, eps); }

// (1 + scale)·LN(x) + shift with [B, dim] modulation rows.
at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale, double eps) {
  return layer_norm(x, eps) * (1.0 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

at::Tensor swiglu(const at::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::silu(halves[0]) * halves[1];
}

// q, k, v: [B, S, H, D] (q, k already normalized) → RoPE on q, k, attention → [B, S, H·D].
at::Tensor rotary_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Rope& rope) {
  at::Tensor cos = rope.cos.unsqueeze(1), sin = rope.sin.unsqueeze(1);  // [S, 1, D/2]
  at::Tensor qr = nn::apply_rope_interleaved(q, cos, sin), kr = nn::apply_rope_interleaved(k, cos, sin);
  at::Tensor o = nn::attention(qr.transpose(1, 2), kr.transpose(1, 2), v.transpose(1, 2));  // [B, H, S, D]
  return o.transpose(1, 2).flatten(2);
}

at::Tensor heads_view(const at::Tensor& x, int64_t heads) { return x.unflatten(-1, {heads, -1}); }

}  // namespace

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double eps) : heads(heads) {
  const int64_t inner = heads * head_dim;
  to_q = register_module("to_q", nn::Linear(dim, inner, false));
  to_k = register_module("to_k", nn::Linear(dim, inner, false));
  to_v = register_module("to_v", nn::Linear(dim, inner, false));
  out = nn::Linear(inner, dim, false);
  to_out = register_module("to_out", torch::nn::ModuleList(out));
  add_q_proj = register_module("add_q_proj", nn::Linear(dim, inner, false));
  add_k_proj = register_module("add_k_proj", nn::Linear(dim, inner, false));
  add_v_proj = register_module("add_v_proj", nn::Linear(dim, inner, false));
  to_add_out = register_module("to_add_out", nn::Linear(inner, dim, false));
  norm_q = register_module("norm_q", nn::RMSNorm(head_dim, eps));
  norm_k = register_module("norm_k", nn::RMSNorm(head_dim, eps));
  norm_added_q = register_module("norm_added_q", nn::RMSNorm(head_dim, eps));
  norm_added_k = register_module("norm_added_k", nn::RMSNorm(head_dim, eps));
}

std::pair<at::Tensor, at::Tensor> AttentionImpl::forward(const at::Tensor& img, const at::Tensor& txt, const Rope& rope) {
  const int64_t L = txt.size(1);
  // Joint sequence [text ; image], per head: [B, L + N, H, D].
  at::Tensor q = torch::cat({norm_added_q(heads_view(add_q_proj(txt), heads)), norm_q(heads_view(to_q(img), heads))}, 1);
  at::Tensor k = torch::cat({norm_added_k(heads_view(add_k_proj(txt), heads)), norm_k(heads_view(to_k(img), heads))}, 1);
  at::Tensor v = torch::cat({heads_view(add_v_proj(txt), heads), heads_view(to_v(img), heads)}, 1);
  at::Tensor o = rotary_attention(q, k, v, rope);
  return {out(o.narrow(1, L, o.size(1) - L)), to_add_out(o.narrow(1, 0, L))};
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden) {
  linear_in = register_module("linear_in", nn::Linear(dim, 2 * hidden, false));
  linear_out = register_module("linear_out", nn::Linear(hidden, dim, false));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) { return linear_out(swiglu(linear_in(x))); }

TransformerBlockImpl::TransformerBlockImpl(const Flux2Config& c) : eps(c.eps) {
  attn = register_module("attn", Attention(c.inner_dim(), c.num_attention_heads, c.attention_head_dim, c.eps));
  ff = register_module("ff", FeedForward(c.inner_dim(), c.mlp_hidden()));
  ff_context = register_module("ff_context", FeedForward(c.inner_dim(), c.mlp_hidden()));
}

std::pair<at::Tensor, at::Tensor> TransformerBlockImpl::forward(const at::Tensor& img_in, const at::Tensor& txt_in,
                                                                const at::Tensor& mod_img, const at::Tensor& mod_txt,
                                                                const Rope& rope) {
  auto m = mod_img.chunk(6, -1), c = mod_txt.chunk(6, -1);  // shift1, scale1, gate1, shift2, scale2, gate2
  auto [attn_img, attn_txt] = attn(modulate(img_in, m[0], m[1], eps), modulate(txt_in, c[0], c[1], eps), rope);
  at::Tensor img = img_in + m[2].unsqueeze(1) * attn_img;
  img = img + m[5].unsqueeze(1) * ff(modulate(img, m[3], m[4], eps));
  at::Tensor txt = txt_in + c[2].unsqueeze(1) * attn_txt;
  txt = txt + c[5].unsqueeze(1) * ff_context(modulate(txt, c[3], c[4], eps));
  return {img, txt};
}

ParallelAttentionImpl::ParallelAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t mlp_hidden, double eps)
    : heads(heads), mlp_hidden(mlp_hidden) {
  const int64_t inner = heads * head_dim;
  to_qkv_mlp_proj = register_module("to_qkv_mlp_proj", nn::Linear(dim, 3 * inner + 2 * mlp_hidden, false));
  to_out = register_module("to_out", nn::Linear(inner + mlp_hidden, dim, false));
  norm_q = register_module("norm_q", nn::RMSNorm(head_dim, eps));
  norm_k = register_module("norm_k", nn::RMSNorm(head_dim, eps));
}

at::Tensor ParallelAttentionImpl::forward(const at::Tensor& x, const Rope& rope) {
  at::Tensor p = to_qkv_mlp_proj(x);  // [B, S, 3·inner + 2·mlp_hidden]: q, k, v, then the MLP input
  const int64_t inner = (p.size(-1) - 2 * mlp_hidden) / 3;
  at::Tensor q = norm_q(heads_view(p.narrow(-1, 0, inner), heads));
  at::Tensor k = norm_k(heads_view(p.narrow(-1, inner, inner), heads));
  at::Tensor v = heads_view(p.narrow(-1, 2 * inner, inner), heads);
  at::Tensor a = rotary_attention(q, k, v, rope);
  return to_out(torch::cat({a, swiglu(p.narrow(-1, 3 * inner, 2 * mlp_hidden))}, -1));
}

SingleTransformerBlockImpl::SingleTransformerBlockImpl(const Flux2Config& c) : eps(c.eps) {
  attn = register_module("attn", ParallelAttention(c.inner_dim(), c.num_attention_heads, c.attention_head_dim, c.mlp_hidden(), c.eps));
}

at::Tensor SingleTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& mod, const Rope& rope) {
  auto m = mod.chunk(3, -1);  // shift, scale, gate
  return x + m[2].unsqueeze(1) * attn(modulate(x, m[0], m[1], eps), rope);
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in, int64_t out) {
  linear_1 = register_module("linear_1", nn::Linear(in, out, false));
  linear_2 = register_module("linear_2", nn::Linear(out, out, false));
}

TimeGuidanceEmbedImpl::TimeGuidanceEmbedImpl(int64_t channels, int64_t dim) : channels(channels) {
  timestep_embedder = register_module("timestep_embedder", TimestepEmbedding(channels, dim));
}

at::Tensor TimeGuidanceEmbedImpl::forward(const at::Tensor& scaled_t, c10::ScalarType dtype) {
  return timestep_embedder(nn::timestep_embedding(scaled_t, channels).to(dtype));
}

ModulationImpl::ModulationImpl(int64_t dim, int64_t sets) {
  linear = register_module("linear", nn::Linear(dim, sets * dim, false));
}

Flux2TransformerImpl::Flux2TransformerImpl(const Flux2Config& config) : config_(config) {
  const Flux2Config& c = config_;
  const int64_t d = c.inner_dim();
  time_guidance_embed = register_module("time_guidance_embed", TimeGuidanceEmbed(c.timestep_guidance_channels, d));
  double_stream_modulation_img = register_module("double_stream_modulation_img", Modulation(d, 6));
  double_stream_modulation_txt = register_module("double_stream_modulation_txt", Modulation(d, 6));
  single_stream_modulation = register_module("single_stream_modulation", Modulation(d, 3));
  x_embedder = register_module("x_embedder", nn::Linear(c.in_channels, d, false));
  context_embedder = register_module("context_embedder", nn::Linear(c.joint_attention_dim, d, false));
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_layers; ++i) transformer_blocks->push_back(TransformerBlock(c));
  single_transformer_blocks = register_module("single_transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_single_layers; ++i) single_transformer_blocks->push_back(SingleTransformerBlock(c));
  norm_out = register_module("norm_out", Modulation(d, 2));
  proj_out = register_module("proj_out", nn::Linear(d, c.patch_size * c.patch_size * c.out_channels, false));
}

Rope Flux2TransformerImpl::rope(const at::Tensor& txt_ids, const at::Tensor& img_ids, NamedTensors* mid) const {
  const auto device = x_embedder->weight.device();
  // The reference tabulates the angles and their cos/sin in float64, then rounds to float32.
  auto table = [&](const at::Tensor& ids, const std::string& name) {
    at::Tensor angles = nn::rope_angles(ids.to(device), config_.axes_dims_rope, config_.rope_theta);
    Rope r{angles.cos().to(at::kFloat), angles.sin().to(at::kFloat)};
    if (mid) {  // the golden stores the tables repeated per pair: [S, head_dim]
      mid->emplace_back("pos_embed." + name + "_cos", r.cos.repeat_interleave(2, -1).cpu());
      mid->emplace_back("pos_embed." + name + "_sin", r.sin.repeat_interleave(2, -1).cpu());
    }
    return r;
  };
  Rope txt = table(txt_ids, "txt"), img = table(img_ids, "img");
  return {torch::cat({txt.cos, img.cos}), torch::cat({txt.sin, img.sin})};
}

at::Tensor Flux2TransformerImpl::forward(const at::Tensor& hidden_states, const at::Tensor& encoder_hidden_states,
                                         const at::Tensor& timestep, const at::Tensor& img_ids, const at::Tensor& txt_ids,
                                         NamedTensors* mid) {
  const Flux2Config& c = config_;
  const auto dtype = x_embedder->weight.scalar_type();
  const auto device = x_embedder->weight.device();
  const int64_t B = hidden_states.size(0), N = hidden_states.dim() == 3 ? hidden_states.size(1) : 0;
  const int64_t L = encoder_hidden_states.dim() == 3 ? encoder_hidden_states.size(1) : 0;
  if (hidden_states.dim() != 3 || hidden_states.size(2) != c.in_channels || N == 0 || B == 0)
    throw Error("FLUX.2 hidden_states must be [B, N > 0, " + std::to_string(c.in_channels) + "], got " + c10::str(hidden_states.sizes()));
  if (encoder_hidden_states.dim() != 3 || encoder_hidden_states.size(0) != B || encoder_hidden_states.size(2) != c.joint_attention_dim || L == 0)
    throw Error("FLUX.2 encoder_hidden_states must be [" + std::to_string(B) + ", L > 0, " + std::to_string(c.joint_attention_dim) +
                "], got " + c10::str(encoder_hidden_states.sizes()));
  if (timestep.dim() != 1 || timestep.size(0) != B) throw Error("FLUX.2 timestep must be [B], got " + c10::str(timestep.sizes()));
  if (img_ids.sizes() != c10::IntArrayRef{N, 4} || txt_ids.sizes() != c10::IntArrayRef{L, 4})
    throw Error("FLUX.2 position ids must be img_ids [" + std::to_string(N) + ", 4] and txt_ids [" + std::to_string(L) +
                ", 4], got " + c10::str(img_ids.sizes()) + " and " + c10::str(txt_ids.sizes()));
  auto record = [&](const std::string& name, const at::Tensor& v) {
    if (mid) mid->emplace_back(name, v.detach().to(at::kFloat).cpu());
  };

  // 1. Time embedding (σ·1000, rounded to the model dtype as the reference does) and the shared
  //    modulation of every block type.
  at::Tensor temb = time_guidance_embed(timestep.to(device, dtype) * 1000.0, dtype);  // [B, d]
  at::Tensor mod_img = double_stream_modulation_img(temb), mod_txt = double_stream_modulation_txt(temb);  // [B, 6d]
  at::Tensor mod_single = single_stream_modulation(temb);  // [B, 3d]
  record("temb", temb);
  record("double_stream_mod_img", mod_img);
  record("double_stream_mod_txt", mod_txt);
  record("single_stream_mod", mod_single);

  // 2. Input projections and RoPE of [text ; image].
  at::Tensor img = x_embedder(hidden_states.to(device, dtype));            // [B, N, d]
  at::Tensor txt = context_embedder(encoder_hidden_states.to(device, dtype));  // [B, L, d]
  const Rope r = rope(txt_ids, img_ids, mid);

  // 3. Double-stream blocks.
  for (size_t k = 0; k < transformer_blocks->size(); ++k) {
    TransformerBlock block(transformer_blocks->ptr<TransformerBlockImpl>(k));
    if (gradient_checkpointing_) {
      auto fn = [block](const std::vector<at::Tensor>& in) mutable {
        auto [i, t] = block->forward(in[0], in[1], in[2], in[3], {in[4], in[5]});
        return torch::cat({t, i}, 1);
      };
      at::Tensor joint = nn::checkpoint(fn, {img, txt, mod_img, mod_txt, r.cos, r.sin}, nn::trainable_tensors(*block),
                                        offloader_ ? offloader_->residency(*block) : nn::Residency{});
      txt = joint.narrow(1, 0, L);
      img = joint.narrow(1, L, N);
    } else {
      nn::ResidentBlock resident(offloader_.get(), *block);
      std::tie(img, txt) = block->forward(img, txt, mod_img, mod_txt, r);
    }
    record("transformer_blocks." + std::to_string(k) + ".encoder_hidden_states", txt);
    record("transformer_blocks." + std::to_string(k) + ".hidden_states", img);
  }

  // 4. Single-stream blocks over [text ; image].
  at::Tensor x = torch::cat({txt, img}, 1);  // [B, L + N, d]
  for (size_t k = 0; k < single_transformer_blocks->size(); ++k) {
    SingleTransformerBlock block(single_transformer_blocks->ptr<SingleTransformerBlockImpl>(k));
    if (gradient_checkpointing_) {
      auto fn = [block](const std::vector<at::Tensor>& in) mutable { return block->forward(in[0], in[1], {in[2], in[3]}); };
      x = nn::checkpoint(fn, {x, mod_single, r.cos, r.sin}, nn::trainable_tensors(*block),
                         offloader_ ? offloader_->residency(*block) : nn::Residency{});
    } else {
      nn::ResidentBlock resident(offloader_.get(), *block);
      x = block->forward(x, mod_single, r);
    }
    record("single_transformer_blocks." + std::to_string(k), x);
  }

  // 5. Image tokens only; final AdaLN (rows [scale ; shift]) and projection.
  x = x.narrow(1, L, N);
  auto ss = norm_out(temb).chunk(2, -1);
  x = layer_norm(x, c.eps) * (1.0 + ss[0].unsqueeze(1)) + ss[1].unsqueeze(1);
  record("norm_out", x);
  return proj_out(x);
}

at::Tensor text_ids(int64_t length) {
  at::Tensor ids = torch::zeros({length, 4}, torch::kLong);
  ids.select(1, 3).copy_(torch::arange(length));
  return ids;
}

at::Tensor image_ids(int64_t h, int64_t w, int64_t t) {
  auto grid = torch::meshgrid({torch::arange(h), torch::arange(w)}, "ij");
  at::Tensor rows = grid[0].reshape(-1), cols = grid[1].reshape(-1);
  return torch::stack({torch::full_like(rows, t), rows, cols, torch::zeros_like(rows)}, -1);
}

void Flux2TransformerImpl::store_blocks_8bit(WeightFormat format, nn::Store8bit when) {
  for (auto* blocks : {&transformer_blocks, &single_transformer_blocks})
    for (size_t k = 0; k < (*blocks)->size(); ++k) nn::store_linears_8bit(*(*blocks)->ptr(k), format, when);
}

void Flux2TransformerImpl::offload_blocks(int64_t n, c10::Device device) {
  std::vector<std::shared_ptr<torch::nn::Module>> all;
  for (size_t k = 0; k < transformer_blocks->size(); ++k) all.push_back(transformer_blocks->ptr(k));
  for (size_t k = 0; k < single_transformer_blocks->size(); ++k) all.push_back(single_transformer_blocks->ptr(k));
  const auto total = static_cast<int64_t>(all.size());
  if (n < 1 || n > total)
    throw Error("model.offload_blocks = " + std::to_string(n) + ": this FLUX.2 transformer has " + std::to_string(total) +
                " blocks to offload");
  if (offloader_) throw Error("the FLUX.2 transformer's blocks are already offloaded");
  offloader_ = std::make_shared<nn::BlockOffloader>(*this, std::vector(all.end() - n, all.end()), device);
}

}  // namespace dt::flux2
