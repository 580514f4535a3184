#include "vae/autoencoder.h"

#include <cmath>

#include <torch/torch.h>
#include <torch/version.h>

#include "core/error.h"

namespace dt::vae {
namespace {

constexpr double kNormEps = 1e-6;

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kNormEps));
}

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}

// SiLU in place: the normalised maps it applies to are never needed again.
at::Tensor silu_inplace(at::Tensor x) {
  at::silu_(x);
  return x;
}

template <typename Impl>
Impl& at_index(torch::nn::ModuleList& list, size_t i) {
  return *list->ptr<Impl>(i);
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t max_scores) {
#if TORCH_VERSION_MAJOR >= 2
  // The fused kernels keep memory linear in N; their default scale is the same 1/√d.
  if (q.is_cuda()) return at::scaled_dot_product_attention(q, k, v);
#endif
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const int64_t n = q.size(1);
  const int64_t rows = std::max<int64_t>(1, max_scores / (n * q.size(0)));
  at::Tensor kt = k.transpose(1, 2);
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < n; start += rows) {
    at::Tensor scores = at::matmul(q.narrow(1, start, std::min(rows, n - start)), kt).mul_(scale);
    at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(v.scalar_type());
    scores.reset();
    parts.push_back(at::matmul(probs, v));
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, 1);
}

ResnetBlockImpl::ResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t groups) {
  norm1 = register_module("norm1", group_norm(groups, in_channels));
  conv1 = register_module("conv1", conv(in_channels, out_channels, 3, 1, 1));
  norm2 = register_module("norm2", group_norm(groups, out_channels));
  conv2 = register_module("conv2", conv(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels) conv_shortcut = register_module("conv_shortcut", conv(in_channels, out_channels, 1));
}

at::Tensor ResnetBlockImpl::forward(const at::Tensor& x) {
  // Each normalised map is dropped before the next convolution allocates: at most x, one
  // normalised map and one convolution output exist at a time.
  at::Tensor h = silu_inplace(norm1(x));
  h = conv1(h);
  at::Tensor n = silu_inplace(norm2(h));
  h.reset();
  h = conv2(n);
  n.reset();
  return conv_shortcut ? h.add_(conv_shortcut(x)) : h.add_(x);
}

AttentionImpl::AttentionImpl(int64_t channels, int64_t groups) {
  group_norm = register_module("group_norm", dt::vae::group_norm(groups, channels));
  to_q = register_module("to_q", torch::nn::Linear(channels, channels));
  to_k = register_module("to_k", torch::nn::Linear(channels, channels));
  to_v = register_module("to_v", torch::nn::Linear(channels, channels));
  to_out = register_module("to_out", torch::nn::ModuleList(torch::nn::Linear(channels, channels)));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor tokens = group_norm(x).view({b, c, h * w}).transpose(1, 2);  // [B, HW, C]
  at::Tensor q = to_q(tokens), k = to_k(tokens), v = to_v(tokens);
  tokens.reset();
  at::Tensor out = attention(q, k, v);
  q.reset(), k.reset(), v.reset();
  out = at_index<torch::nn::LinearImpl>(to_out, 0).forward(out);  // [B, HW, C]
  // Back to the contiguous NCHW layout: the transposed view is channels-last, a layout that every
  // later convolution would keep and on which LibTorch 1.13's bf16 GroupNorm is wrong on the CPU.
  return out.transpose(1, 2).contiguous().view({b, c, h, w}).add_(x);
}

MidBlockImpl::MidBlockImpl(int64_t channels, int64_t groups, bool with_attention) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  attentions = register_module("attentions", torch::nn::ModuleList());
  resnets->push_back(ResnetBlock(channels, channels, groups));
  if (with_attention) attentions->push_back(Attention(channels, groups));
  resnets->push_back(ResnetBlock(channels, channels, groups));
}

at::Tensor MidBlockImpl::forward(at::Tensor x) {
  x = at_index<ResnetBlockImpl>(resnets, 0).forward(x);
  if (!attentions->is_empty()) x = at_index<AttentionImpl>(attentions, 0).forward(x);
  return at_index<ResnetBlockImpl>(resnets, 1).forward(x);
}

DownsampleImpl::DownsampleImpl(int64_t channels) { conv = register_module("conv", dt::vae::conv(channels, channels, 3, 2)); }

at::Tensor DownsampleImpl::forward(const at::Tensor& x) {
  return conv(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));  // pad (left, right, top, bottom)
}

UpsampleImpl::UpsampleImpl(int64_t channels) { conv = register_module("conv", dt::vae::conv(channels, channels, 3, 1, 1)); }

at::Tensor UpsampleImpl::forward(const at::Tensor& x) {
  return conv(at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}));
}

BlockImpl::BlockImpl(int64_t in_channels, int64_t out_channels, int64_t layers, int64_t groups, bool down, bool resample) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  resamplers = register_module(down ? "downsamplers" : "upsamplers", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) resnets->push_back(ResnetBlock(i == 0 ? in_channels : out_channels, out_channels, groups));
  if (resample && down) resamplers->push_back(Downsample(out_channels));
  if (resample && !down) resamplers->push_back(Upsample(out_channels));
}

at::Tensor BlockImpl::forward(at::Tensor x) {
  for (size_t i = 0; i < resnets->size(); ++i) x = at_index<ResnetBlockImpl>(resnets, i).forward(x);
  if (resamplers->is_empty()) return x;
  if (auto* down = resamplers->ptr(0)->as<DownsampleImpl>()) return down->forward(x);
  return at_index<UpsampleImpl>(resamplers, 0).forward(x);
}

EncoderImpl::EncoderImpl(const VaeConfig& c) {
  const auto& ch = c.block_out_channels;
  const int64_t g = c.norm_num_groups, n = c.levels();
  conv_in = register_module("conv_in", conv(c.in_channels, ch[0], 3, 1, 1));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < n; ++i)
    down_blocks->push_back(Block(i == 0 ? ch[0] : ch[i - 1], ch[i], c.layers_per_block, g, /*down=*/true, /*resample=*/i + 1 < n));
  mid_block = register_module("mid_block", MidBlock(ch[n - 1], g, c.mid_block_add_attention));
  conv_norm_out = register_module("conv_norm_out", group_norm(g, ch[n - 1]));
  conv_out = register_module("conv_out", conv(ch[n - 1], 2 * c.latent_channels, 3, 1, 1));
}

at::Tensor EncoderImpl::forward(const at::Tensor& image) {
  at::Tensor h = conv_in(image);  // [B, ch0, H, W]
  for (size_t i = 0; i < down_blocks->size(); ++i) h = at_index<BlockImpl>(down_blocks, i).forward(std::move(h));
  h = mid_block(std::move(h));  // [B, ch_last, H/f, W/f]
  return conv_out(silu_inplace(conv_norm_out(h)));
}

DecoderImpl::DecoderImpl(const VaeConfig& c) {
  std::vector<int64_t> ch(c.decoder_block_out_channels.rbegin(), c.decoder_block_out_channels.rend());
  const int64_t g = c.norm_num_groups, n = c.levels();
  conv_in = register_module("conv_in", conv(c.latent_channels, ch[0], 3, 1, 1));
  mid_block = register_module("mid_block", MidBlock(ch[0], g, c.mid_block_add_attention));
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < n; ++i)
    up_blocks->push_back(Block(i == 0 ? ch[0] : ch[i - 1], ch[i], c.layers_per_block + 1, g, /*down=*/false, /*resample=*/i + 1 < n));
  conv_norm_out = register_module("conv_norm_out", group_norm(g, ch[n - 1]));
  conv_out = register_module("conv_out", conv(ch[n - 1], c.out_channels, 3, 1, 1));
}

at::Tensor DecoderImpl::forward(const at::Tensor& z) {
  at::Tensor h = mid_block(conv_in(z));  // [B, ch_last, h, w]
  for (size_t i = 0; i < up_blocks->size(); ++i) h = at_index<BlockImpl>(up_blocks, i).forward(std::move(h));
  return conv_out(silu_inplace(conv_norm_out(h)));  // [B, out, h·f, w·f]
}

AutoencoderKLImpl::AutoencoderKLImpl(VaeConfig config) : config_(std::move(config)) {
  config_.validate("VAE config");
  encoder = register_module("encoder", Encoder(config_));
  decoder = register_module("decoder", Decoder(config_));
  const int64_t lat = config_.latent_channels;
  if (config_.use_quant_conv) quant_conv = register_module("quant_conv", conv(2 * lat, 2 * lat, 1));
  if (config_.use_post_quant_conv) post_quant_conv = register_module("post_quant_conv", conv(lat, lat, 1));
  if (config_.kind == VaeKind::kFlux2)
    bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(config_.bn_channels())
                                                          .eps(config_.batch_norm_eps)
                                                          .momentum(config_.batch_norm_momentum)
                                                          .affine(false)));
  eval();
  for (auto& p : parameters()) p.set_requires_grad(false);
}

at::ScalarType AutoencoderKLImpl::dtype() const { return encoder->conv_in->weight.scalar_type(); }
at::Device AutoencoderKLImpl::device() const { return encoder->conv_in->weight.device(); }

at::Tensor AutoencoderKLImpl::check_input(const at::Tensor& x, int64_t channels, int64_t multiple, const char* what) const {
  if (!x.defined() || x.dim() != 4 || x.size(1) != channels || x.size(2) == 0 || x.size(3) == 0 ||
      x.size(2) % multiple != 0 || x.size(3) % multiple != 0) {
    std::string shape = x.defined() ? c10::str(x.sizes()) : "undefined";
    throw Error(std::string("VAE ") + what + ": expected [B, " + std::to_string(channels) + ", H, W] with H and W positive multiples of " +
                std::to_string(multiple) + ", got " + shape);
  }
  return x.to(device(), dtype());
}

Posterior AutoencoderKLImpl::encode(const at::Tensor& image) {
  torch::NoGradGuard no_grad;
  at::Tensor x = check_input(image, config_.in_channels, config_.spatial_factor(), "encode input");
  Posterior post;
  post.parameters = encoder(x);
  if (quant_conv) post.parameters = quant_conv(post.parameters);
  auto halves = post.parameters.chunk(2, 1);
  post.mean = halves[0];
  post.logvar = halves[1].clamp(-30.0, 20.0);
  return post;
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& z) {
  torch::NoGradGuard no_grad;
  at::Tensor x = check_input(z, config_.latent_channels, 1, "decode input");
  if (post_quant_conv) x = post_quant_conv(x);
  return decoder(x);
}

at::Tensor AutoencoderKLImpl::bn_mean() const {
  if (!bn) throw Error("this VAE (" + std::string(config_.class_name()) + ") has no BatchNorm statistics");
  return bn->running_mean.to(at::kFloat);
}

at::Tensor AutoencoderKLImpl::bn_std() const {
  if (!bn) throw Error("this VAE (" + std::string(config_.class_name()) + ") has no BatchNorm statistics");
  return at::sqrt(bn->running_var.to(at::kFloat) + config_.batch_norm_eps);
}

}  // namespace dt::vae
