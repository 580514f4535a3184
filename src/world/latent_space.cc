#include "world/latent_space.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include <malloc.h>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "core/config.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "models/flux2/conditioning.h"
#include "vae/autoencoder.h"
#include "vae/load.h"
#include "world/score.h"

namespace dt::world {
namespace {

constexpr const char* kWeightsFile = "diffusion_pytorch_model.safetensors";
// Running statistics of the posterior means the AutoencoderKL decoder is trained on: slow enough
// to average over batches, fast enough to follow the encoder (whose learning rate has decayed
// by the end, when the running values meet the exact ones the reparametrization uses).
constexpr double kStatisticsDecay = 0.98;
// Keeps a channel the encoder left constant from a division by zero.
constexpr double kVarianceFloor = 1e-12;
// The posterior's initial log-variance. LibTorch's default initialization would start it near 0:
// σ ≈ 1, noise that drowns the means in the decoder's input until the encoder unlearns it, a bias
// at a time (thousands of steps). The trained VAEs of the families end with σ this small anyway.
constexpr double kInitialLogVariance = -8;

// [count, 3, size, size] in [-1, 1]: the renderings of latent_scene(first … first + count − 1).
at::Tensor render_images(const World& world, int64_t first, int64_t count) {
  const int64_t n = world.config().size;
  at::Tensor out = at::empty({count, 3, n, n});
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i].copy_(image_to_tensor(world.render(latent_scene(world, first + i))));
  });
  return out;
}

// LibTorch's default initialization (uniform ±1/√fan_in for convolutions and linear layers and
// their biases, GroupNorm at identity), drawn from `gen` so that the weights depend on the seed
// only; but a nearly deterministic posterior (kInitialLogVariance).
void initialize(vae::AutoencoderKLImpl& vae, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  for (const auto& item : vae.named_modules()) {
    torch::nn::Module& m = *item.value();
    if (auto* norm = m.as<torch::nn::GroupNormImpl>()) {
      norm->weight.fill_(1.0);
      norm->bias.fill_(0.0);
      continue;
    }
    at::Tensor weight, bias;
    if (auto* conv = m.as<torch::nn::Conv2dImpl>()) weight = conv->weight, bias = conv->bias;
    if (auto* linear = m.as<torch::nn::LinearImpl>()) weight = linear->weight, bias = linear->bias;
    if (!weight.defined()) continue;
    const double bound = 1.0 / std::sqrt(static_cast<double>(weight.numel() / weight.size(0)));
    weight.uniform_(-bound, bound, gen);
    bias.uniform_(-bound, bound, gen);
  }
  torch::nn::Conv2dImpl& posterior = vae.quant_conv ? *vae.quant_conv : *vae.encoder->conv_out;
  const int64_t latent = vae.config().latent_channels;
  posterior.bias.narrow(0, latent, latent).fill_(kInitialLogVariance);
}

// Per-channel mean and population variance over batch and positions, accumulated in float64.
struct ChannelStatistics {
  at::Tensor sum, squares;
  int64_t count = 0;
  void add(const at::Tensor& x) {  // [B, C, h, w]
    const at::Tensor d = x.to(at::kDouble);
    sum = sum.defined() ? sum + d.sum({0, 2, 3}) : d.sum({0, 2, 3});
    squares = squares.defined() ? squares + d.square().sum({0, 2, 3}) : d.square().sum({0, 2, 3});
    count += x.size(0) * x.size(2) * x.size(3);
  }
  at::Tensor mean() const { return sum / static_cast<double>(count); }
  at::Tensor variance() const { return (squares / static_cast<double>(count) - mean().square()).clamp_min(0); }
};

at::Tensor per_channel(const at::Tensor& values) { return values.view({1, -1, 1, 1}); }

// AutoencoderKL's latent z' = a·z + b per channel, for raw posterior means of `mean` and
// `variance`, such that (z' − shift)·scale has mean 0 and std 1.
std::pair<at::Tensor, at::Tensor> family_affine(const at::Tensor& mean, const at::Tensor& variance, const LatentSpaceConfig& c) {
  const at::Tensor a = 1.0 / ((variance + kVarianceFloor).sqrt() * c.scaling_factor);
  return {a, c.shift_factor - a * mean};
}

// The learning rate of step `step` (from 0): a linear warm-up, then a cosine decay to a tenth.
double learning_rate(const LatentSpaceConfig& c, int64_t step) {
  if (step < c.warmup_steps) return c.learning_rate * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps + 1);
  const double done = static_cast<double>(step - c.warmup_steps) / static_cast<double>(std::max<int64_t>(1, c.steps - c.warmup_steps));
  return c.learning_rate * (0.1 + 0.45 * (1 + std::cos(M_PI * done)));
}

// Trains encoder and decoder together on `images`, with the modules' forwards called directly (the
// VAE's encode/decode are inference only). The loss per step is the mean squared error of the
// reconstruction from a posterior sample z = mean + σ·ε (ε from `gen`) plus kl_weight × the mean
// KL divergence of the posterior from N(0, 1) per latent element.
//
// AutoencoderKL's decoder learns the family's latent space itself: it is given
// (z − m)/(s·scaling) + shift, with m, s running statistics of the posterior means, so that the
// reparametrization afterwards (set_family_statistics) only rescales the encoder's output. Folding
// it into the decoder's input instead would not be exact: its conv_in pads with zeros, and zero
// means a different z before and after.
void train(vae::AutoencoderKLImpl& vae, const at::Tensor& images, const LatentSpaceConfig& c, at::Generator& gen,
           LatentSpaceReport& report) {
  std::vector<at::Tensor> parameters = vae.parameters();
  for (auto& p : parameters) p.set_requires_grad(true);
  vae.train();
  torch::optim::AdamW optimizer(parameters, torch::optim::AdamWOptions(c.learning_rate).betas({0.9, 0.99}));
  const bool flux2 = vae.config().kind == VaeKind::kFlux2;
  const int64_t n = images.size(0), batch = std::min(c.batch_size, n);
  at::Tensor order;
  int64_t cursor = n;
  at::Tensor running_mean, running_variance;
  const int64_t tail = std::max<int64_t>(1, c.steps / 10);
  double tail_loss = 0;
  Progress progress("vae", c.steps);
  for (int64_t step = 0; step < c.steps; ++step) {
    if (cursor + batch > n) order = at::randperm(n, gen, at::kLong), cursor = 0;
    const at::Tensor x = images.index_select(0, order.narrow(0, cursor, batch));
    cursor += batch;

    at::Tensor posterior = vae.encoder(x);
    if (flux2) posterior = vae.quant_conv(posterior);
    const auto halves = posterior.chunk(2, 1);
    const at::Tensor mean = halves[0], logvar = halves[1].clamp(-30.0, 20.0);
    at::Tensor z = mean + (0.5 * logvar).exp() * at::randn(mean.sizes(), gen);
    if (flux2) {
      z = vae.post_quant_conv(z);
    } else {
      const at::Tensor m = mean.detach().mean({0, 2, 3}), v = mean.detach().var({0, 2, 3}, /*unbiased=*/false);
      running_mean = running_mean.defined() ? kStatisticsDecay * running_mean + (1 - kStatisticsDecay) * m : m;
      running_variance = running_variance.defined() ? kStatisticsDecay * running_variance + (1 - kStatisticsDecay) * v : v;
      const auto [a, b] = family_affine(running_mean, running_variance, c);
      z = z * per_channel(a) + per_channel(b);
    }
    const at::Tensor reconstruction_loss = at::mse_loss(vae.decoder(z), x);
    const at::Tensor kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean();
    const at::Tensor loss = reconstruction_loss + c.kl_weight * kl;
    optimizer.zero_grad();
    loss.backward();
    for (auto& group : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(learning_rate(c, step));
    optimizer.step();

    const double value = reconstruction_loss.item<double>();
    if (step == 0) report.first_loss = value;
    if (step >= c.steps - tail) tail_loss += value;
    char note[64];
    std::snprintf(note, sizeof note, "loss %.5f", value);
    progress.set_note(note);
    progress.advance();
  }
  progress.finish();
  report.last_loss = tail_loss / static_cast<double>(tail);
  vae.eval();
  for (auto& p : parameters) p.set_requires_grad(false);
}

// Makes the trained VAE's latents the family's over the training images. AutoencoderKL: the mean
// rows of the encoder's conv_out become a·mean + b and its log-variance rows gain 2·log a, with
// (a, b) from the exact statistics of the trained encoder; the decoder already decodes that space
// (see train). AutoencoderKLFlux2: the BatchNorm statistics become those of the patchified means.
void set_family_statistics(vae::AutoencoderKLImpl& vae, const at::Tensor& images, const LatentSpaceConfig& c) {
  const bool flux2 = vae.config().kind == VaeKind::kFlux2;
  ChannelStatistics statistics;
  for (int64_t start = 0; start < images.size(0); start += 64) {
    const at::Tensor mean = vae.encode(images.narrow(0, start, std::min<int64_t>(64, images.size(0) - start))).mean;
    statistics.add(flux2 ? flux2::patchify_2x2(mean) : mean);
  }
  torch::NoGradGuard no_grad;
  if (flux2) {
    vae.bn->running_mean.copy_(statistics.mean());
    vae.bn->running_var.copy_(statistics.variance());
    return;
  }
  const auto [a, b] = family_affine(statistics.mean(), statistics.variance(), c);
  const int64_t latent = vae.config().latent_channels;
  torch::nn::Conv2dImpl& out = *vae.encoder->conv_out;
  const at::Tensor weight = out.weight.to(at::kDouble), bias = out.bias.to(at::kDouble);
  weight.narrow(0, 0, latent).mul_(a.view({-1, 1, 1, 1}));
  bias.narrow(0, 0, latent).mul_(a).add_(b);
  bias.narrow(0, latent, latent).add_(2 * a.log());
  out.weight.copy_(weight);
  out.bias.copy_(bias);
}

// Every tensor of the VAE under its diffusers name, sorted, as the folder's safetensors file holds them.
NamedTensors named_tensors(vae::AutoencoderKLImpl& vae) {
  NamedTensors tensors;
  for (const auto& item : vae.named_parameters()) tensors.emplace_back(item.key(), item.value().detach().contiguous());
  for (const auto& item : vae.named_buffers()) tensors.emplace_back(item.key(), item.value().contiguous());
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return tensors;
}

// Reconstructs the held-out images with the VAE as written (posterior mean, no sampling: what the
// family's encode and decode give) and reads them back with the scorer.
void measure(const World& world, const std::string& out_dir, const LatentSpaceConfig& c, LatentSpaceReport& report) {
  vae::AutoencoderKL vae = vae::load_autoencoder(out_dir);
  std::vector<std::pair<std::string, int64_t>> right;  // attribute → reconstructions read back as rendered
  std::vector<double> invalid(static_cast<size_t>(c.held_out), 0);
  double squared_error = 0;
  int64_t values = 0;
  for (int64_t start = 0; start < c.held_out; start += 32) {
    const int64_t count = std::min<int64_t>(32, c.held_out - start);
    const at::Tensor x = render_images(world, c.images + start, count);
    const at::Tensor y = vae->decode(vae->encode(x).mean);
    std::vector<Image> reconstructions;
    for (int64_t i = 0; i < count; ++i) reconstructions.push_back(image_from_tensor(y[i]));
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        invalid[static_cast<size_t>(start + i)] = invalid_fraction(world, reconstructions[static_cast<size_t>(i)]);
    });
    for (int64_t i = 0; i < count; ++i) {
      const Image& got = reconstructions[static_cast<size_t>(i)];
      const Image truth = world.render(latent_scene(world, c.images + start + i));
      for (size_t k = 0; k < got.pixels.size(); ++k) {
        const double d = static_cast<double>(got.pixels[k]) - truth.pixels[k];
        squared_error += d * d;
      }
      values += static_cast<int64_t>(got.pixels.size());
      const auto read = compare_attributes(latent_scene(world, c.images + start + i), read_scene(world, got));
      if (right.empty())
        for (const auto& [attribute, _] : read) right.emplace_back(attribute, 0);
      for (size_t k = 0; k < read.size(); ++k) right[k].second += read[k].second;
    }
  }
  const double mse = squared_error / static_cast<double>(values);
  report.psnr_db = mse > 0 ? 10 * std::log10(255.0 * 255.0 / mse) : INFINITY;
  for (const auto& [attribute, n] : right)
    report.accuracy.emplace_back(attribute, static_cast<double>(n) / static_cast<double>(c.held_out));
  double sum = 0;
  for (double f : invalid) sum += f;
  report.invalid_fraction = sum / static_cast<double>(c.held_out);
}

}  // namespace

VaeConfig latent_vae_config(const WorldConfig& world, const std::string& source) {
  const LatentSpaceConfig& c = world.vae;
  auto fail = [&](const std::string& what) { throw file_error(source, "vae." + what); };
  VaeConfig v;
  if (c.class_name == "AutoencoderKLFlux2") v.kind = VaeKind::kFlux2;
  else if (c.class_name != "AutoencoderKL") fail("class '" + c.class_name + "' is not AutoencoderKL or AutoencoderKLFlux2");
  const bool flux2 = v.kind == VaeKind::kFlux2;
  if (c.block_out_channels.size() != 4)
    fail("block_out_channels has " + std::to_string(c.block_out_channels.size()) +
         " levels; the families need 4 (8 pixels per latent side)");
  // FLUX.2 patchifies the latent 2×2: its side must be even.
  const int64_t multiple = flux2 ? 16 : 8;
  if (world.size % multiple != 0)
    fail("class " + c.class_name + " needs an image size that is a multiple of " + std::to_string(multiple) + ", the world's is " +
         std::to_string(world.size));
  if (c.steps < 1 || c.batch_size < 1 || c.images < 1 || c.held_out < 1)
    fail("steps, batch_size, images and held_out must each be at least 1");
  if (c.warmup_steps < 0 || c.warmup_steps >= c.steps) fail("warmup_steps must be 0 to steps - 1");
  if (!(c.learning_rate > 0) || !(c.kl_weight >= 0)) fail("learning_rate must be positive and kl_weight not negative");
  if (!flux2 && !(c.scaling_factor > 0)) fail("scaling_factor must be positive");
  v.block_out_channels = v.decoder_block_out_channels = c.block_out_channels;
  v.layers_per_block = c.layers_per_block;
  v.norm_num_groups = c.norm_num_groups;
  v.latent_channels = c.latent_channels;
  v.mid_block_add_attention = c.mid_block_attention;
  v.use_quant_conv = v.use_post_quant_conv = flux2;
  if (!flux2) v.scaling_factor = c.scaling_factor, v.shift_factor = c.shift_factor;
  v.validate(source);
  return v;
}

Scene latent_scene(const World& world, int64_t index) {
  const int64_t kinds = 1 + static_cast<int64_t>(world.concepts().size());
  const int kind = static_cast<int>(index % kinds);
  const auto seed = static_cast<uint64_t>(index);
  return kind == 0 ? world.base_scene(seed) : world.concept_scene(kind - 1, seed);
}

nlohmann::json LatentSpaceReport::to_json() const {
  nlohmann::json read = nlohmann::json::object();
  for (const auto& [attribute, fraction] : accuracy) read[attribute] = fraction;
  return {{"steps", steps},
          {"train_seconds", train_seconds},
          {"reconstruction_loss", {{"kind", "mse"}, {"first", first_loss}, {"last", last_loss}}},
          {"psnr_db", psnr_db},
          {"accuracy", read},
          {"invalid_fraction", invalid_fraction},
          {"config_sha256", config_sha256}};
}

LatentSpaceReport train_latent_space(const World& world, const std::string& out_dir) {
  const LatentSpaceConfig& c = world.config().vae;
  LatentSpaceReport report;
  report.steps = c.steps;
  WorldConfig config = world.config();
  report.config_sha256 = sha256_hex(config_to_toml(config));

  // Every step allocates and frees the same activations, megabytes each: glibc would hand them back
  // to the system and fault them in again each time (a third of the training time, measured).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  const auto start = std::chrono::steady_clock::now();
  const at::Tensor images = render_images(world, 0, c.images);
  vae::AutoencoderKL vae(latent_vae_config(config, "the world config"));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(c.seed));
  initialize(*vae, gen);
  train(*vae, images, c, gen, report);
  set_family_statistics(*vae, images, c);
  report.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  write_model_folder(out_dir, kWeightsFile, named_tensors(*vae), vae->config().to_json());
  measure(world, out_dir, c, report);
  write_file_atomic((std::filesystem::path(out_dir) / "latent_space.json").string(), report.to_json().dump(2) + "\n");
  return report;
}

}  // namespace dt::world
