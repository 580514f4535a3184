// Loading an autoencoder from any layout users bring:
// * a diffusers folder (config.json + diffusion_pytorch_model*.safetensors), or a pipeline folder
//   holding one under vae/;
// * a single .safetensors file with diffusers names, or with the original (BFL / LDM, as ComfyUI
//   also stores them) names: encoder.down.{i}.block.{j}, mid.attn_1.{q,k,v,proj_out} as 1×1 convs,
//   decoder.up.{levels−1−i}, norm_out, nin_shortcut, encoder.quant_conv / decoder.post_quant_conv;
//   optionally under the prefix `vae.` or `first_stage_model.` of an all-in-one checkpoint.
// FLUX.2's AutoencoderKLFlux2 is told from AutoencoderKL by its BatchNorm statistics `bn.*`.
// Every tensor the configuration needs must be present with its exact shape, and a VAE file may
// hold nothing else: a missing, misshapen or unexpected tensor is refused naming file and key.
#pragma once
#include <string>

#include "core/model_api.h"
#include "vae/autoencoder.h"

namespace dt::vae {

// Weights are converted to options.compute_dtype on options.device; the FLUX.2 BatchNorm
// statistics stay float32.
AutoencoderKL load_autoencoder(const std::string& path, const LoadOptions& options = {});

// The original (BFL / LDM) name of a diffusers VAE tensor name, for a VAE with `levels` levels.
std::string original_vae_name(const std::string& diffusers_name, int64_t levels);

}  // namespace dt::vae
