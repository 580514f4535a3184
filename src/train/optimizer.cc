#include "train/optimizer.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"

namespace dt {

AdamW::AdamW(std::vector<at::Tensor> parameters, AdamWOptions options) : params_(std::move(parameters)), o_(options) {
  for (const auto& p : params_) {
    if (p.scalar_type() != torch::kFloat) throw Error("AdamW trains float32 parameters only");
    m_.push_back(torch::zeros_like(p));
    v_.push_back(torch::zeros_like(p));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1 - std::pow(o_.beta1, static_cast<double>(steps_));
  const double bc2 = 1 - std::pow(o_.beta2, static_cast<double>(steps_));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    p.mul_(1 - lr * o_.weight_decay);
    m_[i].mul_(o_.beta1).add_(g, 1 - o_.beta1);
    v_[i].mul_(o_.beta2).addcmul_(g, g, 1 - o_.beta2);
    const at::Tensor denom = (v_[i].sqrt() / std::sqrt(bc2)).add_(o_.epsilon);
    p.addcdiv_(m_[i], denom, -lr / bc1);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

NamedTensors AdamW::state() const {
  NamedTensors out{{"adamw.step", torch::tensor({steps_}, torch::kLong)}};
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("adamw.m." + std::to_string(i), m_[i]);
    out.emplace_back("adamw.v." + std::to_string(i), v_[i]);
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, at::Tensor>& state) {
  auto get = [&](const std::string& name, const at::Tensor& like) {
    auto it = state.find(name);
    if (it == state.end()) throw Error("optimizer state lacks '" + name + "'");
    if (like.defined() && it->second.sizes() != like.sizes()) throw Error("optimizer state '" + name + "' has the wrong shape");
    return it->second;
  };
  torch::NoGradGuard no_grad;
  steps_ = get("adamw.step", at::Tensor()).item<int64_t>();
  for (size_t i = 0; i < params_.size(); ++i) {
    m_[i].copy_(get("adamw.m." + std::to_string(i), m_[i]));
    v_[i].copy_(get("adamw.v." + std::to_string(i), v_[i]));
  }
}

double learning_rate_at(const LearningRateSchedule& t, int64_t step, int64_t total) {
  if (step < t.warmup_steps) return t.learning_rate * static_cast<double>(step + 1) / static_cast<double>(t.warmup_steps);
  const double span = static_cast<double>(std::max<int64_t>(1, total - 1 - t.warmup_steps));
  const double p = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
  const double lo = t.min_lr_factor;
  if (t.lr_schedule == "constant") return t.learning_rate;
  if (t.lr_schedule == "linear") return t.learning_rate * (1 - (1 - lo) * p);
  if (t.lr_schedule == "cosine") return t.learning_rate * (lo + (1 - lo) * 0.5 * (1 + std::cos(M_PI * p)));
  throw Error("train.lr_schedule '" + t.lr_schedule + "' is not one of constant, linear, cosine");
}

double gradient_norm(const std::vector<at::Tensor>& parameters) {
  double sum = 0;
  for (const auto& p : parameters)
    if (p.grad().defined()) sum += p.grad().to(torch::kDouble).square().sum().item<double>();
  return std::sqrt(sum);
}

void clip_gradients(const std::vector<at::Tensor>& parameters, double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return;
  torch::NoGradGuard no_grad;
  const double factor = max_norm / (norm + 1e-6);
  for (const auto& p : parameters)
    if (p.grad().defined()) p.grad().mul_(factor);
}

}  // namespace dt
