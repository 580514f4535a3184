// What one step of the loop computes. The loop (trainer.h) turns plan items into a Batch and hands
// it to an Objective; the plain flow objective, transfer-record and transfer-learn are three
// objectives on the same loop (DESIGN §3):
//   flow:   loss = L(v̂, ε − x0)                       trains, no side output
//   record: δc = T(c) − P(c) [, δu] written to a store  no gradients, no optimizer
//   learn:  loss = L(S(c), S0(c) + g·δc [+ (1−g)·δu])  trains; an extra LoRA-off forward
// L is the run's loss function (train.loss: MSE by default).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "models/family.h"
#include "train/plan.h"

namespace dt {

// Where the loop gets a sample's clean latent and caption features (the data caches implement it).
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  // x0 of plan.samples[sample]: [C, h, w] float32 on the CPU, in the family's normalized layout.
  virtual at::Tensor latent(int32_t sample) = 0;
  // Features of caption `caption` of plan.samples[sample] (on the CPU).
  virtual TextFeatures text(int32_t sample, int32_t caption) = 0;
  // The text of that caption ("" for kEmptyCaption): what the features were encoded from.
  virtual std::string caption(int32_t sample, int32_t caption) = 0;
};

// One micro-batch, materialized on the compute device.
struct Batch {
  const Plan* plan = nullptr;
  int64_t index = 0;            // position in plan->batches
  // B items: plan->batches[index].items from position `first` on (all of them, or in a
  // data-parallel run this rank's share).
  std::vector<PlanItem> items;
  int64_t first = 0;
  at::Tensor x0;                // [B, C, h, w] float32
  at::Tensor noise;             // ε, [B, C, h, w] float32 (generated on the CPU, then moved)
  at::Tensor x_t;               // (1 − σ)·x0 + σ·ε computed in float32 on the CPU, then compute dtype
  at::Tensor sigma;             // [B] float32
  at::Tensor loss_weight;       // [B] float32, the samples' concept weights
  std::vector<TextFeatures> text;  // B features, compute dtype, on the device
};

struct StepResult {
  // Scalar float32. Carries gradients when the objective trains; the loop divides it by the
  // accumulation count before backward. Undefined when there is no loss (record).
  at::Tensor loss;
  std::map<std::string, double> metrics;  // extra scalars to log (name → value)
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  // False: the loop runs steps under no-grad and has no optimizer, LoRA output or LoRA checkpoints.
  virtual bool trains() const { return true; }
  // Called once before the first step (after a resume too).
  virtual void begin(Denoiser& model, const Plan& plan) {}
  virtual StepResult step(Denoiser& model, const Batch& batch) = 0;
  // The step's computation on `batch` with none of its side effects (the loop's warm-up pass; the
  // loop drops the gradients and puts the generators back): step() itself unless it has some.
  virtual StepResult warm_up(Denoiser& model, const Batch& batch) { return step(model, batch); }
  // Makes the objective's own output durable (called before the loop writes a checkpoint).
  virtual void flush() {}
  // For an objective whose output is its own durable progress (a record store): how many plan
  // batches are already done, so a resumed run starts there. nullopt: the loop's checkpoint decides.
  virtual std::optional<int64_t> completed_batches() { return std::nullopt; }
  virtual void end() {}
};

// The element-wise loss of train.loss (OneTrainer's three, specs/training.md §5), d = prediction − target:
//   mse    d²
//   mae    |d|
//   huber  d²/2 where |d| ≤ δ, else δ·(|d| − δ/2)   (torch.nn.functional.huber_loss; δ = huber_delta)
struct LossFunction {
  enum class Kind { mse, mae, huber };
  Kind kind = Kind::mse;
  double huber_delta = 1.0;
  // Throws dt::Error for any other name or a δ that is not positive.
  static LossFunction from_settings(const std::string& name, double huber_delta);
};

// Per-sample mean of the element-wise loss over every non-batch dimension, in float32, weighted by
// the samples' loss weights and averaged over the batch.
at::Tensor weighted_loss(const LossFunction& loss, const at::Tensor& prediction, const at::Tensor& target,
                         const at::Tensor& loss_weight);

// The plain flow-matching objective: v̂(x_σ, σ, c) regressed on ε − x0.
class FlowObjective : public Objective {
 public:
  explicit FlowObjective(LossFunction loss = {}) : loss_(loss) {}
  std::string name() const override { return "flow"; }
  StepResult step(Denoiser& model, const Batch& batch) override;

 private:
  LossFunction loss_;
};

}  // namespace dt
