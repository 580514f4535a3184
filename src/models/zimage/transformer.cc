#include "models/zimage/transformer.h"

#include <torch/torch.h>

#include "core/error.h"
#include "nn/attention.h"
#include "nn/checkpoint.h"
#include "nn/rope.h"
#include "nn/timestep.h"

namespace dt::zimage {
namespace {

constexpr int64_t kSeqMultiple = 32;     // sequences are padded to a multiple of this
constexpr int64_t kFrequencySize = 256;  // sinusoidal time embedding width
constexpr int64_t kTimeMlpWidth = 1024;
constexpr double kQkNormEps = 1e-5;
constexpr double kFinalNormEps = 1e-6;

int64_t round_up(int64_t n) { return (n + kSeqMultiple - 1) / kSeqMultiple * kSeqMultiple; }

torch::nn::Functional silu_module() {
  return torch::nn::Functional([](const at::Tensor& x) { return torch::silu(x); });
}

// One item's tokens before embedding: rows padded in-sample to a multiple of 32 by repeating the
// last row, and their 3-axis RoPE positions.
struct Tokens {
  at::Tensor rows;       // [N_p, features]
  at::Tensor positions;  // [N_p, 3] int64
  int64_t real = 0;      // rows before the in-sample padding
};

// Pads rows in-sample to a multiple of 32 by repeating the last row.
at::Tensor pad_rows(const at::Tensor& rows) {
  const int64_t n = rows.size(0), pad = round_up(n) - n;
  if (pad == 0) return rows;
  return torch::cat({rows, rows.narrow(0, n - 1, 1).expand({pad, rows.size(1)})});
}

// Caption token k (padding included) sits at (1 + k, 0, 0).
Tokens caption_tokens(const at::Tensor& cap) {
  Tokens t{pad_rows(cap), {}, cap.size(0)};
  t.positions = torch::zeros({t.rows.size(0), 3}, torch::kLong);
  t.positions.select(1, 0).copy_(torch::arange(1, t.rows.size(0) + 1));
  return t;
}

// [C, F, H, W] → tokens [(F/pF)(H/p)(W/p), pF·p·p·C] in raster order, feature index (pf, ph, pw, c);
// real token (f, h, w) sits at (frame_start + f, h, w), in-sample padding at (0, 0, 0).
Tokens image_tokens(const at::Tensor& x, int64_t p, int64_t pf, int64_t frame_start) {
  const int64_t C = x.size(0), Ft = x.size(1) / pf, Ht = x.size(2) / p, Wt = x.size(3) / p;
  at::Tensor rows = x.reshape({C, Ft, pf, Ht, p, Wt, p}).permute({1, 3, 5, 2, 4, 6, 0}).reshape({Ft * Ht * Wt, pf * p * p * C});
  auto grid = torch::meshgrid({torch::arange(frame_start, frame_start + Ft), torch::arange(Ht), torch::arange(Wt)}, "ij");
  at::Tensor positions = torch::stack({grid[0], grid[1], grid[2]}, -1).reshape({-1, 3});
  Tokens t{pad_rows(rows), {}, rows.size(0)};
  t.positions = torch::cat({positions, torch::zeros({t.rows.size(0) - t.real, 3}, torch::kLong)});
  return t;
}

// [N_p, p·p·pF·C] → [C, F, H, W] for the first F·H·W/(pF·p·p) rows.
at::Tensor unpatchify(const at::Tensor& rows, c10::IntArrayRef size, int64_t p, int64_t pf) {
  const int64_t C = size[0], F = size[1], H = size[2], W = size[3];
  return rows.narrow(0, 0, (F / pf) * (H / p) * (W / p))
      .view({F / pf, H / p, W / p, pf, p, p, C})
      .permute({6, 0, 3, 1, 4, 2, 5})
      .reshape({C, F, H, W});
}

// Batch of items of possibly different lengths → [B, L_max, ...] (zero-padded) with its RoPE factors
// and a key mask when lengths differ.
struct Sequence {
  at::Tensor rows;     // [B, L_max, features]
  at::Tensor in_pad;   // [B, L_max] bool: in-sample padding rows (to be replaced by a pad token)
  SequenceContext ctx;
  std::vector<int64_t> lengths;
};

Sequence batch(const std::vector<Tokens>& items, const ZImageConfig& config, c10::Device device) {
  Sequence s;
  std::vector<at::Tensor> rows, positions, in_pad;
  for (const auto& t : items) {
    rows.push_back(t.rows);
    positions.push_back(t.positions);
    in_pad.push_back(torch::arange(t.rows.size(0)) >= t.real);
    s.lengths.push_back(t.rows.size(0));
  }
  const int64_t longest = *std::max_element(s.lengths.begin(), s.lengths.end());
  s.rows = at::pad_sequence(rows, /*batch_first=*/true);
  s.in_pad = at::pad_sequence(in_pad, true).to(device);
  at::Tensor pos = at::pad_sequence(positions, true);  // [B, L_max, 3]
  for (int64_t a = 0; a < 3; ++a) {
    const int64_t highest = pos.select(-1, a).max().item<int64_t>();
    if (highest >= config.axes_lens[a])
      throw Error("Z-Image input too large: RoPE axis " + std::to_string(a) + " needs position " + std::to_string(highest) +
                  " but the model's axes_lens allow < " + std::to_string(config.axes_lens[a]));
  }
  // The reference tabulates angles in float64, rounds them to float32, then takes cos/sin.
  at::Tensor angles = nn::rope_angles(pos.to(device), config.axes_dims, config.rope_theta).to(at::kFloat);
  s.ctx.cos = angles.cos();
  s.ctx.sin = angles.sin();
  bool ragged = false;
  for (int64_t n : s.lengths) ragged |= n != longest;
  if (ragged) {
    s.ctx.key_mask = torch::zeros({static_cast<int64_t>(items.size()), longest}, torch::kBool);
    for (size_t i = 0; i < items.size(); ++i) s.ctx.key_mask[static_cast<int64_t>(i)].narrow(0, 0, s.lengths[i]).fill_(true);
    s.ctx.key_mask = s.ctx.key_mask.to(device);
  }
  return s;
}

}  // namespace

AttentionImpl::AttentionImpl(int64_t dim, int64_t n_heads, bool qk_norm) : n_heads(n_heads) {
  to_q = register_module("to_q", nn::Linear(dim, dim, false));
  to_k = register_module("to_k", nn::Linear(dim, dim, false));
  to_v = register_module("to_v", nn::Linear(dim, dim, false));
  out = nn::Linear(dim, dim, false);
  to_out = register_module("to_out", torch::nn::ModuleList(out));
  if (qk_norm) {
    norm_q = register_module("norm_q", nn::RMSNorm(dim / n_heads, kQkNormEps));
    norm_k = register_module("norm_k", nn::RMSNorm(dim / n_heads, kQkNormEps));
  }
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const SequenceContext& ctx) {
  const int64_t B = x.size(0), L = x.size(1);
  at::Tensor q = to_q(x).view({B, L, n_heads, -1});  // [B, L, H, head_dim]
  at::Tensor k = to_k(x).view({B, L, n_heads, -1});
  at::Tensor v = to_v(x).view({B, L, n_heads, -1});
  if (norm_q) {
    q = norm_q(q);
    k = norm_k(k);
  }
  at::Tensor cos = ctx.cos.unsqueeze(2), sin = ctx.sin.unsqueeze(2);  // [B, L, 1, head_dim/2]
  q = nn::apply_rope_interleaved(q, cos, sin);
  k = nn::apply_rope_interleaved(k, cos, sin);
  at::Tensor o = nn::attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), ctx.key_mask);
  return out(o.transpose(1, 2).reshape({B, L, -1}));
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden) {
  w1 = register_module("w1", nn::Linear(dim, hidden, false));
  w2 = register_module("w2", nn::Linear(hidden, dim, false));
  w3 = register_module("w3", nn::Linear(dim, hidden, false));
}

TransformerBlockImpl::TransformerBlockImpl(const ZImageConfig& c, bool modulated) {
  attention = register_module("attention", Attention(c.dim, c.n_heads, c.qk_norm));
  feed_forward = register_module("feed_forward", FeedForward(c.dim, c.ffn_dim()));
  attention_norm1 = register_module("attention_norm1", nn::RMSNorm(c.dim, c.norm_eps));
  ffn_norm1 = register_module("ffn_norm1", nn::RMSNorm(c.dim, c.norm_eps));
  attention_norm2 = register_module("attention_norm2", nn::RMSNorm(c.dim, c.norm_eps));
  ffn_norm2 = register_module("ffn_norm2", nn::RMSNorm(c.dim, c.norm_eps));
  if (modulated) {
    modulation = nn::Linear(c.adaln_dim(), 4 * c.dim, true);
    adaLN_modulation = register_module("adaLN_modulation", torch::nn::ModuleList(modulation));
  }
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x_in, const SequenceContext& ctx, const at::Tensor& c) {
  at::Tensor x = x_in;
  if (!modulation) {
    x = x + attention_norm2(attention(attention_norm1(x), ctx));
    return x + ffn_norm2(feed_forward(ffn_norm1(x)));
  }
  // No shift term: scale and (tanh-)gate for attention and MLP, each [B, 1, dim].
  auto m = modulation(c).unsqueeze(1).chunk(4, -1);
  at::Tensor scale_msa = 1.0 + m[0], gate_msa = m[1].tanh(), scale_mlp = 1.0 + m[2], gate_mlp = m[3].tanh();
  x = x + gate_msa * attention_norm2(attention(attention_norm1(x) * scale_msa, ctx));
  return x + gate_mlp * ffn_norm2(feed_forward(ffn_norm1(x) * scale_mlp));
}

FinalLayerImpl::FinalLayerImpl(int64_t dim, int64_t adaln_dim, int64_t out_features) {
  linear = register_module("linear", nn::Linear(dim, out_features, true));
  modulation = nn::Linear(adaln_dim, dim, true);
  adaLN_modulation = register_module("adaLN_modulation", torch::nn::ModuleList(silu_module(), modulation));
}

at::Tensor FinalLayerImpl::forward(const at::Tensor& x, const at::Tensor& c) {
  at::Tensor scale = 1.0 + modulation(torch::silu(c));  // [B, dim]
  const int64_t dim = x.size(-1);
  return linear(torch::layer_norm(x, {dim}, {}, {}, kFinalNormEps) * scale.unsqueeze(1));
}

TimestepEmbedderImpl::TimestepEmbedderImpl(int64_t out_features) {
  fc1 = nn::Linear(kFrequencySize, kTimeMlpWidth, true);
  fc2 = nn::Linear(kTimeMlpWidth, out_features, true);
  mlp = register_module("mlp", torch::nn::ModuleList(fc1, silu_module(), fc2));
}

at::Tensor TimestepEmbedderImpl::forward(const at::Tensor& scaled_t) {
  at::Tensor emb = nn::timestep_embedding(scaled_t, kFrequencySize).to(fc1->weight.scalar_type());
  return fc2(torch::silu(fc1(emb)));
}

ZImageTransformerImpl::ZImageTransformerImpl(const ZImageConfig& config) : config_(config) {
  const ZImageConfig& c = config_;
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> embedders, finals;
  for (size_t i = 0; i < c.all_patch_size.size(); ++i) {
    const int64_t patch_features = c.all_f_patch_size[i] * c.all_patch_size[i] * c.all_patch_size[i] * c.in_channels;
    embedders.emplace_back(c.patch_key(i), nn::Linear(patch_features, c.dim, true).ptr());
    finals.emplace_back(c.patch_key(i), FinalLayer(c.dim, c.adaln_dim(), patch_features).ptr());
  }
  all_x_embedder = register_module("all_x_embedder", torch::nn::ModuleDict(embedders));
  all_final_layer = register_module("all_final_layer", torch::nn::ModuleDict(finals));
  noise_refiner = register_module("noise_refiner", torch::nn::ModuleList());
  context_refiner = register_module("context_refiner", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_refiner_layers; ++i) {
    noise_refiner->push_back(TransformerBlock(c, /*modulated=*/true));
    context_refiner->push_back(TransformerBlock(c, /*modulated=*/false));
  }
  t_embedder = register_module("t_embedder", TimestepEmbedder(c.adaln_dim()));
  cap_norm = nn::RMSNorm(c.cap_feat_dim, c.norm_eps);
  cap_linear = nn::Linear(c.cap_feat_dim, c.dim, true);
  cap_embedder = register_module("cap_embedder", torch::nn::ModuleList(cap_norm, cap_linear));
  x_pad_token = register_parameter("x_pad_token", torch::empty({1, c.dim}));
  cap_pad_token = register_parameter("cap_pad_token", torch::empty({1, c.dim}));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layers; ++i) layers->push_back(TransformerBlock(c, /*modulated=*/true));
}

at::Tensor ZImageTransformerImpl::run_block(TransformerBlock& block, const at::Tensor& x, const SequenceContext& ctx,
                                            const at::Tensor& c) {
  if (!gradient_checkpointing_) {
    nn::ResidentBlock resident(offloader_.get(), *block);
    return block->forward(x, ctx, c);
  }
  TransformerBlock held = block;  // the recompute in backward keeps the block alive
  auto fn = [held](const std::vector<at::Tensor>& in) mutable { return held->forward(in[0], {in[1], in[2], in[3]}, in[4]); };
  return nn::checkpoint(fn, {x, ctx.cos, ctx.sin, ctx.key_mask, c}, nn::trainable_tensors(*block),
                        offloader_ ? offloader_->residency(*block) : nn::Residency{});
}

void ZImageTransformerImpl::store_blocks_8bit(WeightFormat format, nn::Store8bit when) {
  for (auto* blocks : {&noise_refiner, &context_refiner, &layers})
    for (size_t k = 0; k < (*blocks)->size(); ++k) nn::store_linears_8bit(*(*blocks)->ptr(k), format, when);
}

void ZImageTransformerImpl::offload_blocks(int64_t n, c10::Device device) {
  const auto total = static_cast<int64_t>(layers->size());
  if (n < 1 || n > total)
    throw Error("model.offload_blocks = " + std::to_string(n) + ": this Z-Image transformer has " + std::to_string(total) +
                " main layers to offload");
  if (offloader_) throw Error("the Z-Image transformer's blocks are already offloaded");
  std::vector<std::shared_ptr<torch::nn::Module>> blocks;
  for (int64_t k = total - n; k < total; ++k) blocks.push_back(layers->ptr(static_cast<size_t>(k)));
  offloader_ = std::make_shared<nn::BlockOffloader>(*this, std::move(blocks), device);
}

std::vector<at::Tensor> ZImageTransformerImpl::forward(const std::vector<at::Tensor>& x, const at::Tensor& t,
                                                       const std::vector<at::Tensor>& cap_feats, size_t patch,
                                                       NamedTensors* mid) {
  const ZImageConfig& c = config_;
  const int64_t B = static_cast<int64_t>(x.size());
  if (B == 0 || cap_feats.size() != x.size() || t.dim() != 1 || t.size(0) != B)
    throw Error("Z-Image forward needs B latents, B caption features and t of shape [B] (got " + std::to_string(x.size()) +
                ", " + std::to_string(cap_feats.size()) + ", " + std::to_string(t.dim() == 1 ? t.size(0) : -1) + ")");
  if (patch >= c.all_patch_size.size()) throw Error("Z-Image patch configuration " + std::to_string(patch) + " does not exist");
  const int64_t p = c.all_patch_size[patch], pf = c.all_f_patch_size[patch];
  const std::string key = c.patch_key(patch);
  const at::Tensor& pad_token = x_pad_token;
  const auto dtype = pad_token.scalar_type();
  const auto device = pad_token.device();
  auto record = [&](const std::string& name, const at::Tensor& v) {
    if (mid) mid->emplace_back(name, v.detach().to(at::kFloat).cpu());
  };

  // 1. Time embedding c: [B, adaln_dim], shared by every modulated block.
  at::Tensor temb = t_embedder(t.to(device, at::kFloat) * c.t_scale);
  record("adaln_input", temb);

  // 2–4. Tokens and positions per item: captions first in position space, then the image frames.
  std::vector<Tokens> image_items, caption_items;
  for (int64_t i = 0; i < B; ++i) {
    const at::Tensor& xi = x[i];
    const at::Tensor& ci = cap_feats[i];
    if (xi.dim() != 4 || xi.size(0) != c.in_channels || xi.size(1) % pf || xi.size(2) % p || xi.size(3) % p || xi.numel() == 0)
      throw Error("Z-Image latent " + std::to_string(i) + " must be [" + std::to_string(c.in_channels) +
                  ", F, H, W] with F a multiple of " + std::to_string(pf) + " and H, W multiples of " + std::to_string(p));
    if (ci.dim() != 2 || ci.size(1) != c.cap_feat_dim || ci.size(0) == 0)
      throw Error("Z-Image caption features " + std::to_string(i) + " must be [L > 0, " + std::to_string(c.cap_feat_dim) + "]");
    caption_items.push_back(caption_tokens(ci.to(device, dtype)));
    image_items.push_back(image_tokens(xi.to(device, dtype), p, pf, caption_items.back().rows.size(0) + 1));
  }

  // 5. Image embedding (in-sample padding ← x_pad_token) and noise refiner.
  Sequence img = batch(image_items, c, device);
  at::Tensor hx = all_x_embedder[key]->as<nn::LinearImpl>()->forward(img.rows);  // [B, N_max, dim]
  hx = torch::where(img.in_pad.unsqueeze(-1), pad_token, hx);
  for (size_t k = 0; k < noise_refiner->size(); ++k) {
    TransformerBlock block(noise_refiner->ptr<TransformerBlockImpl>(k));
    hx = run_block(block, hx, img.ctx, temb);
    record("noise_refiner." + std::to_string(k), hx);
  }

  // 6. Caption embedding (in-sample padding ← cap_pad_token) and unmodulated context refiner.
  Sequence cap = batch(caption_items, c, device);
  at::Tensor hc = cap_linear(cap_norm(cap.rows));  // [B, L_max, dim]
  hc = torch::where(cap.in_pad.unsqueeze(-1), cap_pad_token, hc);
  for (size_t k = 0; k < context_refiner->size(); ++k) {
    TransformerBlock block(context_refiner->ptr<TransformerBlockImpl>(k));
    hc = run_block(block, hc, cap.ctx, at::Tensor());
    record("context_refiner." + std::to_string(k), hc);
  }

  // 7. Unified sequence per item: [image tokens (N_p); caption tokens (L_p)].
  std::vector<Tokens> unified_items;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t n = img.lengths[i], l = cap.lengths[i];
    unified_items.push_back({torch::cat({hx[i].narrow(0, 0, n), hc[i].narrow(0, 0, l)}),
                             torch::cat({image_items[i].positions, caption_items[i].positions}), n + l});
  }
  Sequence uni = batch(unified_items, c, device);
  at::Tensor h = uni.rows;  // [B, U_max, dim]

  // 8. Main layers.
  for (size_t k = 0; k < layers->size(); ++k) {
    TransformerBlock block(layers->ptr<TransformerBlockImpl>(k));
    h = run_block(block, h, uni.ctx, temb);
    record("layers." + std::to_string(k), h);
  }

  // 9. Final layer: [B, U_max, pF·p·p·C].
  h = all_final_layer[key]->as<FinalLayerImpl>()->forward(h, temb);
  record("final_layer", h);

  // 10. Unpatchify the real image tokens of each item.
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < B; ++i) out.push_back(unpatchify(h[i], x[i].sizes(), p, pf));
  return out;
}

}  // namespace dt::zimage
