// Flux2Transformer2DModel (diffusers), the FLUX.2 [klein] MM-DiT (specs/flux2.md §2–4): double-stream
// blocks over [text ; image], then single-stream parallel blocks over the joint sequence, all
// modulated by three shared modulation layers; 4-axis RoPE. Modules are named exactly as the
// diffusers checkpoint keys, so named_parameters() are the checkpoint's tensor names.
#pragma once
#include <utility>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include "io/safetensors.h"
#include "models/flux2/config.h"
#include "nn/linear.h"
#include "nn/offload.h"
#include "nn/rms_norm.h"

namespace dt::flux2 {

// Rotary factors of the joint sequence [text ; image]: [L + N, head_dim/2] float32 each.
struct Rope {
  at::Tensor cos, sin;
};

// Double-stream attention: image and text have their own projections and q/k norms and attend
// jointly over [text ; image].
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double eps);
  // img: [B, N, dim], txt: [B, L, dim] (both already modulated) → {img, txt} attention outputs.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& img, const at::Tensor& txt, const Rope& rope);

  int64_t heads;
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // "to_out.0" (index 1 is the reference's parameter-free dropout)
  nn::Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr}, to_add_out{nullptr};
  nn::RMSNorm norm_q{nullptr}, norm_k{nullptr}, norm_added_q{nullptr}, norm_added_k{nullptr};
};
TORCH_MODULE(Attention);

// linear_out(SiLU(a) ⊙ b) with [a ; b] = linear_in(x).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden);
  at::Tensor forward(const at::Tensor& x);

  nn::Linear linear_in{nullptr}, linear_out{nullptr};
};
TORCH_MODULE(FeedForward);

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const Flux2Config& c);
  // mod_img, mod_txt: [B, 6·dim] shared modulation (shift, scale, gate) × (attention, MLP).
  // Returns {img, txt}.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& img, const at::Tensor& txt, const at::Tensor& mod_img,
                                            const at::Tensor& mod_txt, const Rope& rope);

  Attention attn{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};
  double eps;
};
TORCH_MODULE(TransformerBlock);

// Single-stream parallel attention + MLP: one input projection to [q ; k ; v ; mlp], one output
// projection of [attention ; SwiGLU(mlp)].
class ParallelAttentionImpl : public torch::nn::Module {
 public:
  ParallelAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t mlp_hidden, double eps);
  at::Tensor forward(const at::Tensor& x, const Rope& rope);  // x: [B, L + N, dim], modulated

  int64_t heads, mlp_hidden;
  nn::Linear to_qkv_mlp_proj{nullptr}, to_out{nullptr};
  nn::RMSNorm norm_q{nullptr}, norm_k{nullptr};
};
TORCH_MODULE(ParallelAttention);

class SingleTransformerBlockImpl : public torch::nn::Module {
 public:
  SingleTransformerBlockImpl(const Flux2Config& c);
  // mod: [B, 3·dim] (shift, scale, gate).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mod, const Rope& rope);

  ParallelAttention attn{nullptr};
  double eps;
};
TORCH_MODULE(SingleTransformerBlock);

// linear_2(SiLU(linear_1(x))), bias-free.
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in, int64_t out);
  at::Tensor forward(const at::Tensor& x) { return linear_2(torch::silu(linear_1(x))); }

  nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// "time_guidance_embed": klein has only the timestep embedder.
class TimeGuidanceEmbedImpl : public torch::nn::Module {
 public:
  TimeGuidanceEmbedImpl(int64_t channels, int64_t dim);
  at::Tensor forward(const at::Tensor& scaled_t, c10::ScalarType dtype);  // [B] (σ·1000) → [B, dim]

  int64_t channels;
  TimestepEmbedding timestep_embedder{nullptr};
};
TORCH_MODULE(TimeGuidanceEmbed);

// "…modulation.linear" applied to SiLU(temb); also the final AdaLN ("norm_out.linear").
class ModulationImpl : public torch::nn::Module {
 public:
  ModulationImpl(int64_t dim, int64_t sets);
  at::Tensor forward(const at::Tensor& temb) { return linear(torch::silu(temb)); }

  nn::Linear linear{nullptr};
};
TORCH_MODULE(Modulation);

class Flux2TransformerImpl : public torch::nn::Module {
 public:
  explicit Flux2TransformerImpl(const Flux2Config& config);

  // hidden_states: [B, N, in_channels] packed image tokens (reference-image tokens may follow the
  // noisy ones); encoder_hidden_states: [B, L, joint_attention_dim]; timestep: [B] σ in [0, 1];
  // img_ids: [N, 4], txt_ids: [L, 4] (t, h, w, l) positions shared by the batch.
  // Returns [B, N, out_channels] (≈ ε − x0) in the weights' dtype. When `mid` is given, the
  // intermediates of golden/README.md (flux2_transformer) are appended under their golden names.
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& encoder_hidden_states, const at::Tensor& timestep,
                     const at::Tensor& img_ids, const at::Tensor& txt_ids, NamedTensors* mid = nullptr);

  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  // Keeps the frozen weights of the last `n` blocks (double-stream, then single-stream, in their
  // order of use) in host memory, brought to `device` per use, and moves everything else there
  // (nn/offload.h); after LoRA adapters are attached or merged.
  void offload_blocks(int64_t n, c10::Device device);
  const nn::BlockOffloader* offloader() const { return offloader_.get(); }
  // Stores the Linear weights of every double- and single-stream block in 8 bits (nn/weights_8bit.h).
  void store_blocks_8bit(WeightFormat format, nn::Store8bit when = nn::Store8bit::now);
  const Flux2Config& config() const { return config_; }

  TimeGuidanceEmbed time_guidance_embed{nullptr};
  Modulation double_stream_modulation_img{nullptr}, double_stream_modulation_txt{nullptr}, single_stream_modulation{nullptr};
  nn::Linear x_embedder{nullptr}, context_embedder{nullptr};
  torch::nn::ModuleList transformer_blocks{nullptr}, single_transformer_blocks{nullptr};
  Modulation norm_out{nullptr};  // rows [scale ; shift] (diffusers order)
  nn::Linear proj_out{nullptr};

 private:
  Rope rope(const at::Tensor& txt_ids, const at::Tensor& img_ids, NamedTensors* mid) const;

  Flux2Config config_;
  bool gradient_checkpointing_ = false;
  std::shared_ptr<nn::BlockOffloader> offloader_;
};
TORCH_MODULE(Flux2Transformer);

// Position ids of the klein pipeline: text token i → (0, 0, 0, i) ([L, 4]); image token at grid
// (r, c) → (t, r, c, 0) in raster order ([h·w, 4]); t = 0 for the noisy image, 10·(k+1) for the
// k-th reference image.
at::Tensor text_ids(int64_t length);
at::Tensor image_ids(int64_t h, int64_t w, int64_t t = 0);

}  // namespace dt::flux2
