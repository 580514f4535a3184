// The LDM-style autoencoder of FLUX.1 / Z-Image (diffusers `AutoencoderKL`) and FLUX.2
// (`AutoencoderKLFlux2`): one encoder/decoder (ResNet blocks, GroupNorm, a single-head mid-block
// attention, asymmetric-pad stride-2 downsampling, nearest ×2 upsampling), with the optional 1×1
// quant convs and the FLUX.2 BatchNorm statistics. Modules are named as the diffusers checkpoint
// keys, so `named_parameters()` and `named_buffers()` list exactly the tensors of a checkpoint.
//
// The forward passes are inference only: they run without autograd and free every activation as
// soon as the next one exists, so the peak is a few full-resolution feature maps (see
// docs/vae.md for the figures at 1024²).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "vae/config.h"

namespace dt::vae {

// softmax(q·kᵀ/√d)·v for q, k, v [B, N, d], softmax in float32. On the CPU the queries go in
// blocks of at most `max_scores` score elements, so a 1024² image (16384 mid-block positions)
// never holds the whole 1 GiB score matrix.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t max_scores = int64_t{1} << 26);

class ResnetBlockImpl : public torch::nn::Module {
 public:
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(ResnetBlock);

// Single-head self-attention over the H·W positions with a residual connection.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t channels, int64_t groups);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::GroupNorm group_norm{nullptr};
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out;  // [Linear] (diffusers keeps a dropout at index 1; it has no weights)
};
TORCH_MODULE(Attention);

// resnets.0 → attentions.0 → resnets.1
class MidBlockImpl : public torch::nn::Module {
 public:
  MidBlockImpl(int64_t channels, int64_t groups, bool with_attention);
  at::Tensor forward(at::Tensor x);
  torch::nn::ModuleList resnets, attentions;
};
TORCH_MODULE(MidBlock);

// A stride-2 3×3 convolution after zero padding by one on the right and bottom only.
class DownsampleImpl : public torch::nn::Module {
 public:
  explicit DownsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest-neighbour ×2, then a 3×3 convolution.
class UpsampleImpl : public torch::nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// down_blocks.i / up_blocks.i: resnets, then the optional resampler.
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(int64_t in_channels, int64_t out_channels, int64_t layers, int64_t groups, bool down, bool resample);
  at::Tensor forward(at::Tensor x);
  torch::nn::ModuleList resnets, resamplers;  // registered as downsamplers / upsamplers
};
TORCH_MODULE(Block);

class EncoderImpl : public torch::nn::Module {
 public:
  explicit EncoderImpl(const VaeConfig& c);
  at::Tensor forward(const at::Tensor& image);  // [B, in, H, W] → [B, 2·latent, H/f, W/f]
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks;
  MidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Encoder);

class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const VaeConfig& c);
  at::Tensor forward(const at::Tensor& z);  // [B, latent, h, w] → [B, out, h·f, w·f]
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  MidBlock mid_block{nullptr};
  torch::nn::ModuleList up_blocks;
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(Decoder);

// The diagonal Gaussian posterior of an encode.
struct Posterior {
  at::Tensor parameters;  // [B, 2·latent, h, w]: mean ‖ log-variance (not clamped)
  at::Tensor mean;        // [B, latent, h, w]
  at::Tensor logvar;      // [B, latent, h, w], clamped to [-30, 20]
};

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(VaeConfig config);

  // image [B, in, H, W] in [-1, 1], H and W multiples of the spatial factor. Computes in the
  // dtype of the weights; the results have that dtype.
  Posterior encode(const at::Tensor& image);
  // z [B, latent, h, w] → image [B, out, h·f, w·f] (no scaling or shift applied).
  at::Tensor decode(const at::Tensor& z);

  const VaeConfig& config() const { return config_; }
  at::ScalarType dtype() const;
  at::Device device() const;
  // FLUX.2: the BatchNorm statistics as float32 [4·latent]: mean and sqrt(var + eps).
  at::Tensor bn_mean() const;
  at::Tensor bn_std() const;

  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  at::Tensor check_input(const at::Tensor& x, int64_t channels, int64_t multiple, const char* what) const;
  VaeConfig config_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace dt::vae
