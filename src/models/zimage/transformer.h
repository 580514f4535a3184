// ZImageTransformer2DModel (diffusers), the Z-Image / Z-Image-Turbo single-stream DiT
// (specs/z-image.md §3–4). Modules are named exactly as the diffusers checkpoint keys, so
// named_parameters() are the checkpoint's tensor names and loading is by name.
#pragma once
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/moduledict.h>
#include <torch/nn/modules/container/modulelist.h>

#include "io/safetensors.h"
#include "models/zimage/config.h"
#include "nn/linear.h"
#include "nn/offload.h"
#include "nn/rms_norm.h"

namespace dt::zimage {

// Per-token rotary factors and key mask of one padded token sequence of the batch.
struct SequenceContext {
  at::Tensor cos, sin;  // [B, L, head_dim/2] float32 (zero at batch padding)
  at::Tensor key_mask;  // [B, L] bool, or undefined when every item has length L
};

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t n_heads, bool qk_norm);
  at::Tensor forward(const at::Tensor& x, const SequenceContext& ctx);  // x: [B, L, dim]

  int64_t n_heads;
  nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out{nullptr};
  torch::nn::ModuleList to_out;  // "to_out.0" (index 1 is the reference's parameter-free dropout)
  nn::RMSNorm norm_q{nullptr}, norm_k{nullptr};  // per head; null without qk_norm
};
TORCH_MODULE(Attention);

class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden);
  at::Tensor forward(const at::Tensor& x) { return w2(torch::silu(w1(x)) * w3(x)); }

  nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(FeedForward);

// Sandwich-normalized block; modulated by the time embedding (main layers, noise refiner) or not
// (context refiner).
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const ZImageConfig& c, bool modulated);
  // x: [B, L, dim]; c: [B, adaln_dim] (ignored by unmodulated blocks).
  at::Tensor forward(const at::Tensor& x, const SequenceContext& ctx, const at::Tensor& c);

  Attention attention{nullptr};
  FeedForward feed_forward{nullptr};
  nn::RMSNorm attention_norm1{nullptr}, attention_norm2{nullptr}, ffn_norm1{nullptr}, ffn_norm2{nullptr};
  torch::nn::ModuleList adaLN_modulation{nullptr};  // "adaLN_modulation.0": adaln_dim → 4·dim
  nn::Linear modulation{nullptr};
};
TORCH_MODULE(TransformerBlock);

class FinalLayerImpl : public torch::nn::Module {
 public:
  FinalLayerImpl(int64_t dim, int64_t adaln_dim, int64_t out_features);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c);

  nn::Linear linear{nullptr}, modulation{nullptr};
  torch::nn::ModuleList adaLN_modulation{nullptr};  // "adaLN_modulation.1" (index 0 is the SiLU)
};
TORCH_MODULE(FinalLayer);

// t_embedder: sinusoid of the scaled time → mlp.0 → SiLU → mlp.2.
class TimestepEmbedderImpl : public torch::nn::Module {
 public:
  TimestepEmbedderImpl(int64_t out_features);
  at::Tensor forward(const at::Tensor& scaled_t);  // [B] → [B, out_features]

  nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::ModuleList mlp{nullptr};
};
TORCH_MODULE(TimestepEmbedder);

class ZImageTransformerImpl : public torch::nn::Module {
 public:
  explicit ZImageTransformerImpl(const ZImageConfig& config);

  // x: B latents [C, F, H, W] (sizes may differ); t: [B] model time τ = 1 − σ in [0, 1];
  // cap_feats: B caption features [L_i, cap_feat_dim] (valid tokens only). Returns B outputs shaped
  // like x (≈ x0 − ε) in the weights' dtype. `patch` selects all_patch_size[patch]. When `mid` is
  // given, the intermediates of golden/README.md are appended to it under their golden names.
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& x, const at::Tensor& t,
                                  const std::vector<at::Tensor>& cap_feats, size_t patch = 0,
                                  NamedTensors* mid = nullptr);

  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  // Keeps the frozen weights of the last `n` main layers in host memory, brought to `device` per
  // use, and moves everything else there (nn/offload.h); after LoRA adapters are attached or merged.
  void offload_blocks(int64_t n, c10::Device device);
  const nn::BlockOffloader* offloader() const { return offloader_.get(); }
  // Stores the Linear weights of every block (refiners and main layers) in 8 bits (nn/weights_8bit.h).
  void store_blocks_8bit(WeightFormat format, nn::Store8bit when = nn::Store8bit::now);
  const ZImageConfig& config() const { return config_; }

  torch::nn::ModuleDict all_x_embedder{nullptr};   // "2-1": Linear(pF·pH·pW·C → dim)
  torch::nn::ModuleDict all_final_layer{nullptr};  // "2-1": FinalLayer
  torch::nn::ModuleList noise_refiner{nullptr}, context_refiner{nullptr}, layers{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  torch::nn::ModuleList cap_embedder{nullptr};     // "cap_embedder.0": RMSNorm, ".1": Linear
  nn::RMSNorm cap_norm{nullptr};
  nn::Linear cap_linear{nullptr};
  at::Tensor x_pad_token, cap_pad_token;           // [1, dim]

 private:
  at::Tensor run_block(TransformerBlock& block, const at::Tensor& x, const SequenceContext& ctx, const at::Tensor& c);

  ZImageConfig config_;
  bool gradient_checkpointing_ = false;
  std::shared_ptr<nn::BlockOffloader> offloader_;
};
TORCH_MODULE(ZImageTransformer);

}  // namespace dt::zimage
