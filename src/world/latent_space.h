// The world's latent space: the autoencoder of a real model family (diffusers AutoencoderKL for
// Z-Image, AutoencoderKLFlux2 for FLUX.2) in a small configuration, trained from scratch on the
// world's images and written as a diffusers VAE folder that the family loads unchanged. Its
// latents are the family's: after training, AutoencoderKL's encoder is reparametrized so that
// (z − shift_factor)·scaling_factor has mean 0 and std 1 per channel over the training images, and
// AutoencoderKLFlux2's BatchNorm statistics are those of its patchified training latents.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vae/config.h"
#include "world/world.h"

namespace dt::world {

// The diffusers config of the world's [vae] table: 4 levels (8 pixels per latent side), the quant
// convs for AutoencoderKLFlux2 (as FLUX.2's VAE has them) and none for AutoencoderKL (as FLUX.1's).
// A setting that cannot make such a VAE of the world's images is a dt::Error naming `source`.
VaeConfig latent_vae_config(const WorldConfig& config, const std::string& source);

// Image `index` of the latent space's images: the Base's world and then each concept in turn,
// from scene seed `index`. Training uses 0 … vae.images − 1, the measurement the vae.held_out after.
Scene latent_scene(const World& world, int64_t index);

// What training did and how well the trained VAE reconstructs the held-out images.
struct LatentSpaceReport {
  int64_t steps = 0;
  double train_seconds = 0;
  double first_loss = 0;  // reconstruction loss (MSE in [-1, 1]) of the first step's batch, untrained
  double last_loss = 0;   // the mean of the last tenth of the steps
  double psnr_db = 0;     // held-out reconstructions against the renderings, on [0, 255]
  // Attribute → fraction of held-out reconstructions the scorer reads back as rendered.
  std::vector<std::pair<std::string, double>> accuracy;
  double invalid_fraction = 0;  // mean over the held-out reconstructions
  std::string config_sha256;    // of the whole world config (the images and the [vae] table)
  nlohmann::json to_json() const;
};

// Trains the world's VAE on the CPU and writes `out_dir`/config.json and
// diffusion_pytorch_model.safetensors (each atomically), then measures the written VAE on the
// held-out images and writes the report beside them as latent_space.json. Same world config ⇒ the
// same weights file, bit for bit. Progress goes to stdout.
LatentSpaceReport train_latent_space(const World& world, const std::string& out_dir);

}  // namespace dt::world
