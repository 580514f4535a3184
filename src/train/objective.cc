#include "train/objective.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"

namespace dt {

LossFunction LossFunction::from_settings(const std::string& name, double huber_delta) {
  LossFunction f;
  if (name == "mse") f.kind = Kind::mse;
  else if (name == "mae") f.kind = Kind::mae;
  else if (name == "huber") f.kind = Kind::huber;
  else throw Error("train.loss '" + name + "' is not one of mse, mae, huber");
  if (!(huber_delta > 0) || !std::isfinite(huber_delta))
    throw Error("train.huber_delta must be a positive number, not " + std::to_string(huber_delta));
  f.huber_delta = huber_delta;
  return f;
}

at::Tensor weighted_loss(const LossFunction& loss, const at::Tensor& prediction, const at::Tensor& target,
                         const at::Tensor& loss_weight) {
  const at::Tensor d = prediction.to(torch::kFloat) - target.to(torch::kFloat);
  at::Tensor element;
  switch (loss.kind) {
    case LossFunction::Kind::mse: element = d.square(); break;
    case LossFunction::Kind::mae: element = d.abs(); break;
    case LossFunction::Kind::huber: {
      const at::Tensor a = d.abs();
      const double delta = loss.huber_delta;
      element = torch::where(a <= delta, 0.5 * d.square(), delta * (a - 0.5 * delta));
      break;
    }
  }
  const at::Tensor per_sample = element.flatten(1).mean(1);  // [B]
  return (per_sample * loss_weight.to(per_sample.device())).mean();
}

StepResult FlowObjective::step(Denoiser& model, const Batch& batch) {
  const at::Tensor v = model.velocity(batch.x_t, batch.sigma, batch.text);
  const at::Tensor target = batch.noise.to(torch::kFloat) - batch.x0.to(torch::kFloat);
  return {weighted_loss(loss_, v, target, batch.loss_weight), {}};
}

}  // namespace dt
