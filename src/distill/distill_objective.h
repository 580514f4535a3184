// Guidance- and step-distillation on the trainer loop (docs/distill.md). A plan item (trajectory i,
// σ = σ_k of the student grid) asks the student, without CFG, for the velocity that carries the
// teacher's guided trajectory i from x_k to x_{k+1} in one Euler step:
//   loss = L(S(x_k, σ_k, c_i), (x_{k+1} − x_k) / (σ_{k+1} − σ_k))
// At its own K steps the student then retraces the teacher's K·substeps guided steps.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "distill/trajectories.h"
#include "train/objective.h"

namespace dt {

class DistillObjective : public Objective {
 public:
  DistillObjective(std::vector<at::Tensor> paths, std::vector<double> sigmas, LossFunction loss);
  std::string name() const override { return "distill"; }
  StepResult step(Denoiser& model, const Batch& batch) override;

 private:
  std::vector<at::Tensor> paths_;  // [K+1, C, h, w] per trajectory
  std::vector<double> sigmas_;
  std::map<float, int> step_of_;   // σ_k as the plan carries it (float) → k
  LossFunction loss_;
};

// The dataset seen through the trajectories: trajectory i is a plan sample whose one caption is
// its caption in `data`, and whose latent is the teacher's end point x_K.
class TrajectorySource : public SampleSource {
 public:
  TrajectorySource(SampleSource& data, std::vector<TrajectorySpec> specs, std::vector<at::Tensor> paths);
  at::Tensor latent(int32_t sample) override;
  TextFeatures text(int32_t sample, int32_t caption) override;
  std::string caption(int32_t sample, int32_t caption) override;

 private:
  SampleSource& data_;
  std::vector<TrajectorySpec> specs_;
  std::vector<at::Tensor> paths_;
};

// Every (trajectory, student step k < K) once per epoch, shuffled by `seed` (new each epoch), in
// batches of `batch_size` items of one image size. `data` holds the
// dataset's plan samples the specs point into.
Plan distill_plan(const std::vector<TrajectorySpec>& specs, const std::vector<PlanSample>& data,
                  const std::vector<double>& sigmas, const std::string& manifest_hash, int64_t epochs,
                  int64_t batch_size, uint64_t seed);

}  // namespace dt
