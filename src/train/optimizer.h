// AdamW with fp32 states (decoupled weight decay, bias-corrected moments, as torch.optim.AdamW),
// and the learning-rate schedules. The state is plain named tensors so a checkpoint restores it
// exactly.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "io/safetensors.h"

namespace dt {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, weight_decay = 0.01;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> parameters, AdamWOptions options);
  // One update of every parameter from its .grad() (parameters without a gradient are skipped).
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return steps_; }

  NamedTensors state() const;  // "adamw.step", "adamw.m.<i>", "adamw.v.<i>"
  // Restores state(); dt::Error when names or shapes do not fit these parameters.
  void load_state(const std::map<std::string, at::Tensor>& state);

 private:
  std::vector<at::Tensor> params_, m_, v_;
  AdamWOptions o_;
  int64_t steps_ = 0;
};

struct LearningRateSchedule {
  double learning_rate = 1e-4;             // peak
  std::string lr_schedule = "constant";    // constant, linear or cosine
  int64_t warmup_steps = 0;
  double min_lr_factor = 0.0;              // final rate of linear and cosine, × learning_rate
};

// The learning rate of optimizer step `step` (0-based) of `total`: linear warm-up over
// warmup_steps, then constant, linear or cosine decay to min_lr_factor · learning_rate at the last step.
double learning_rate_at(const LearningRateSchedule& schedule, int64_t step, int64_t total);

// √(Σ‖g‖²) over the parameters' gradients, in float64 (a NaN or inf shows through).
double gradient_norm(const std::vector<at::Tensor>& parameters);
// Scales every gradient by max_norm / (norm + 1e-6) when norm exceeds max_norm.
void clip_gradients(const std::vector<at::Tensor>& parameters, double norm, double max_norm);

}  // namespace dt
