#include "train/objective.h"

#include <torch/torch.h>

namespace dt {

at::Tensor weighted_mse(const at::Tensor& prediction, const at::Tensor& target, const at::Tensor& loss_weight) {
  const at::Tensor d = prediction.to(torch::kFloat) - target.to(torch::kFloat);
  const at::Tensor per_sample = d.square().flatten(1).mean(1);  // [B]
  return (per_sample * loss_weight.to(per_sample.device())).mean();
}

StepResult FlowObjective::step(Denoiser& model, const Batch& batch) {
  const at::Tensor v = model.velocity(batch.x_t, batch.sigma, batch.text);
  const at::Tensor target = batch.noise.to(torch::kFloat) - batch.x0.to(torch::kFloat);
  return {weighted_mse(v, target, batch.loss_weight), {}};
}

}  // namespace dt
