// Flow-matching Euler sampling on a family's denoiser (specs/z-image.md §7, specs/flux2.md §7):
// x starts as seeded noise at σ = 1 and follows the canonical velocity v ≈ ε − x0 down the
// family's σ schedule, x ← x + (σ_next − σ)·v, with classifier-free guidance in the standard form
// v = v_neg + w·(v_pos − v_neg) (each family's own guidance g maps to w = g + guidance_offset).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "models/family.h"

namespace dt {

// One Euler step of the flow ODE: x + (σ_next − σ)·v, in float32.
at::Tensor euler_step(const at::Tensor& x, const at::Tensor& velocity, double sigma, double sigma_next);

// Standard CFG: v_neg + w·(v_pos − v_neg). w = 1 gives v_pos exactly.
at::Tensor guided_velocity(const at::Tensor& v_pos, const at::Tensor& v_neg, double weight);

// The standard CFG weight of a guidance value in the family's own convention (sample.guidance);
// CFG runs iff it is > 1.
double cfg_weight(const Family& family, double guidance);

// The initial latent: N(0, I) of `shape` from `seed` on the CPU (the plan's counter-based
// generator), so the same seed gives the same image on every device.
at::Tensor sample_noise(uint64_t seed, const std::vector<int64_t>& shape);

struct SamplerInput {
  at::Tensor noise;          // [C, h, w] float32, the latent at σ = 1
  std::vector<double> sigmas;  // steps + 1 values from the family, ending with 0
  TextFeatures positive;
  TextFeatures negative;     // used only when cfg > 1
  double cfg = 1;            // standard CFG weight
};

// Runs every step on `model` (no gradients; the model's LoRA state as the caller set it) and
// returns the final latent x0 [C, h, w] in float32 on the CPU. The denoiser sees x in `dtype` on
// `device`; x itself is carried in float32. `on_step` (optional) is called after each step.
at::Tensor sample_latent(Denoiser& model, const SamplerInput& input, c10::Device device, c10::ScalarType dtype,
                         const std::function<void()>& on_step = {});

}  // namespace dt
