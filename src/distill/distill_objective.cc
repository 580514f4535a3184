#include "distill/distill_objective.h"

#include <torch/torch.h>

#include <random>

#include "core/error.h"
#include "train/batching.h"

namespace dt {

DistillObjective::DistillObjective(std::vector<at::Tensor> paths, std::vector<double> sigmas, LossFunction loss)
    : paths_(std::move(paths)), sigmas_(std::move(sigmas)), loss_(loss) {
  for (size_t k = 0; k + 1 < sigmas_.size(); ++k) step_of_[static_cast<float>(sigmas_[k])] = static_cast<int>(k);
}

StepResult DistillObjective::step(Denoiser& model, const Batch& batch) {
  std::vector<at::Tensor> from, to;
  std::vector<float> rate;
  for (const PlanItem& item : batch.items) {
    auto it = step_of_.find(item.sigma);
    if (it == step_of_.end()) throw Error("distill: σ " + std::to_string(item.sigma) + " is not on the student grid");
    const int k = it->second;
    const at::Tensor& path = paths_.at(item.sample);
    from.push_back(path[k]);
    to.push_back(path[k + 1]);
    rate.push_back(static_cast<float>(1.0 / (sigmas_[k + 1] - sigmas_[k])));
  }
  const auto device = batch.x0.device();
  const at::Tensor x_k = torch::stack(from).to(device);
  const at::Tensor target = (torch::stack(to).to(device) - x_k) * torch::tensor(rate).to(device).view({-1, 1, 1, 1});
  const at::Tensor v = model.velocity(x_k.to(batch.x_t.scalar_type()), batch.sigma, batch.text);
  StepResult r;
  r.loss = weighted_loss(loss_, v, target, batch.loss_weight);
  return r;
}

TrajectorySource::TrajectorySource(SampleSource& data, std::vector<TrajectorySpec> specs, std::vector<at::Tensor> paths)
    : data_(data), specs_(std::move(specs)), paths_(std::move(paths)) {}

at::Tensor TrajectorySource::latent(int32_t sample) { return paths_.at(sample)[-1]; }

TextFeatures TrajectorySource::text(int32_t sample, int32_t caption) {
  const TrajectorySpec& s = specs_.at(sample);
  return data_.text(s.sample, caption == kEmptyCaption ? kEmptyCaption : s.caption);
}

std::string TrajectorySource::caption(int32_t sample, int32_t caption) {
  const TrajectorySpec& s = specs_.at(sample);
  return data_.caption(s.sample, caption == kEmptyCaption ? kEmptyCaption : s.caption);
}

Plan distill_plan(const std::vector<TrajectorySpec>& specs, const std::vector<PlanSample>& data,
                  const std::vector<double>& sigmas, const std::string& manifest_hash, int64_t epochs,
                  int64_t batch_size, uint64_t seed) {
  if (batch_size < 1) throw Error("train.batch_size must be at least 1");
  if (epochs < 1) throw Error("train.epochs must be at least 1");
  std::vector<PlanSample> samples;
  for (size_t i = 0; i < specs.size(); ++i) {
    PlanSample s = data.at(specs[i].sample);
    s.key += "#" + std::to_string(specs[i].caption) + "#" + std::to_string(specs[i].seed);
    s.captions = 1;
    s.repeats = 1;
    s.caption_dropout = 0;
    samples.push_back(std::move(s));
  }
  std::mt19937_64 rng(seed);
  std::vector<PlanBatch> batches;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    std::vector<PlanItem> items;
    for (size_t i = 0; i < specs.size(); ++i)
      for (size_t k = 0; k + 1 < sigmas.size(); ++k)
        items.push_back({static_cast<int32_t>(i), 0, static_cast<float>(sigmas[k]), specs[i].seed});
    seeded_shuffle(items, rng);
    append_bucket_batches(items, samples, batch_size, static_cast<int32_t>(epoch), batches);
  }
  return plan_from_batches(std::move(samples), manifest_hash, std::move(batches), {});
}

}  // namespace dt
