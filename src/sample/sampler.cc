#include "sample/sampler.h"

#include <torch/torch.h>

#include "core/error.h"
#include "train/plan.h"

namespace dt {

at::Tensor euler_step(const at::Tensor& x, const at::Tensor& velocity, double sigma, double sigma_next) {
  return x + (sigma_next - sigma) * velocity.to(torch::kFloat);
}

at::Tensor guided_velocity(const at::Tensor& v_pos, const at::Tensor& v_neg, double weight) {
  return v_neg + weight * (v_pos - v_neg);
}

double cfg_weight(const Family& family, double guidance) { return guidance + family.defaults().guidance_offset; }

at::Tensor sample_noise(uint64_t seed, const std::vector<int64_t>& shape) { return plan_noise(seed, shape, {}); }

at::Tensor sample_latent(Denoiser& model, const SamplerInput& in, c10::Device device, c10::ScalarType dtype,
                         const std::function<void()>& on_step) {
  if (in.sigmas.size() < 2) throw Error("a sampler needs at least one step");
  torch::NoGradGuard no_grad;
  const bool cfg = in.cfg > 1;
  const std::vector<TextFeatures> positive = {in.positive.to(device, dtype)};
  const std::vector<TextFeatures> negative = {cfg ? in.negative.to(device, dtype) : at::Tensor()};

  // With CFG the two predictions are two forwards of batch 1, not one of batch 2: as fast or faster
  // on the CPU (bench/sample_bench.cc: a batch pads the shorter caption) and half the activations.
  at::Tensor x = in.noise.to(device, torch::kFloat).unsqueeze(0);  // [1, C, h, w]
  for (size_t i = 0; i + 1 < in.sigmas.size(); ++i) {
    const at::Tensor xs = x.to(dtype);
    const at::Tensor sigma = torch::full({1}, in.sigmas[i], torch::TensorOptions(device).dtype(torch::kFloat));
    at::Tensor v = model.velocity(xs, sigma, positive);  // [1, C, h, w] float32
    if (cfg) v = guided_velocity(v, model.velocity(xs, sigma, negative), in.cfg);
    x = euler_step(x, v, in.sigmas[i], in.sigmas[i + 1]);
    if (on_step) on_step();
  }
  return x.squeeze(0).cpu();
}

}  // namespace dt
