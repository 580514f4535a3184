#include "vae/random_vae.h"

#include <filesystem>
#include <map>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "vae/autoencoder.h"

namespace dt::vae {

VaeConfig tiny_vae_config(VaeKind kind) {
  VaeConfig c;
  c.kind = kind;
  c.block_out_channels = c.decoder_block_out_channels = {16, 32, 32};
  c.norm_num_groups = 8;
  c.layers_per_block = 2;
  const bool flux2 = kind == VaeKind::kFlux2;
  c.latent_channels = flux2 ? 32 : 16;
  c.use_quant_conv = c.use_post_quant_conv = flux2;
  if (!flux2) c.scaling_factor = 0.3611, c.shift_factor = 0.1159;
  return c;
}

void write_random_vae(const std::string& dir, const VaeConfig& config, uint64_t seed, at::ScalarType dtype) {
  AutoencoderKL vae(config);
  // Sorted names and one generator: the bytes depend on nothing but config and seed.
  std::map<std::string, at::Tensor> tensors;
  for (const auto& item : vae->named_parameters()) tensors[item.key()] = item.value();
  for (const auto& item : vae->named_buffers()) tensors[item.key()] = item.value();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  NamedTensors out;
  for (const auto& [name, like] : tensors) {
    const auto shape = like.sizes();
    at::Tensor t;
    if (name == "bn.num_batches_tracked") {
      t = at::zeros({}, at::kLong);
    } else if (name == "bn.running_var") {
      t = at::empty(shape).uniform_(0.5, 2.0, gen);
    } else if (name == "bn.running_mean") {
      t = at::randn(shape, gen) * 0.3;
    } else if (like.dim() >= 2) {  // convolution kernels and linear matrices: N(0, 1/fan_in)
      t = at::randn(shape, gen) / std::sqrt(static_cast<double>(like.numel() / like.size(0)));
    } else if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {  // GroupNorm scales
      t = 1.0 + 0.1 * at::randn(shape, gen);
    } else {  // biases
      t = 0.1 * at::randn(shape, gen);
    }
    out.emplace_back(name, at::isFloatingType(t.scalar_type()) && name.rfind("bn.", 0) != 0 ? t.to(dtype) : t);
  }
  write_model_folder(dir, "diffusion_pytorch_model.safetensors", out, config.to_json());
}

}  // namespace dt::vae
