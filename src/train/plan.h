// The training plan (DESIGN §2): a pure function of the dataset manifest and the training settings
// that lists, batch by batch, every item a run will see — which sample, which of its captions, the
// exact noise level σ and the seed of its noise. No model is involved, so two runs (a record on
// Base and a learn on Turbo) that share a plan see the same x_σ = (1 − σ)·x0 + σ·ε bit for bit.
//
// σ is the one number the noise and the model input both use (no OneTrainer off-by-one between
// the noise level and the time input; see specs/training.md §2).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace dt {

// One dataset entry as the plan sees it (built from the data manifest).
struct PlanSample {
  std::string key;          // stable sample key (concept + relative path)
  int64_t captions = 1;     // how many captions it has; an item picks one by index
  double repeats = 1;       // times per epoch (whole numbers unless PlanOptions::epoch_samples is given)
  int64_t width = 0;        // bucket size in pixels
  int64_t height = 0;
  double loss_weight = 1.0;      // the concept's loss weight
  double caption_dropout = 0.0;  // probability that an item uses the empty caption
};

constexpr int32_t kEmptyCaption = -1;

struct PlanItem {
  int32_t sample = 0;       // index into Plan::samples
  int32_t caption = 0;      // index into that sample's captions; kEmptyCaption = the empty caption
  float sigma = 0;          // noise level in (0, 1): x_σ = (1 − σ)·x0 + σ·ε, model time input σ
  uint64_t noise_seed = 0;  // ε = plan_noise(noise_seed, ...) on the CPU
};

struct PlanBatch {
  int32_t epoch = 0;
  std::vector<PlanItem> items;  // same bucket size (their latents stack)
};

// How σ is drawn (specs/training.md §3–4). Every distribution draws t in [min_sigma, max_sigma)
// and then applies the shift map σ = s·t / (1 + (s − 1)·t), so "shifted" is any distribution
// with shift ≠ 1 or the family's resolution-dependent shift.
struct TimestepOptions {
  std::string distribution = "logit_normal";  // uniform | logit_normal | sigmoid
  double logit_mean = 0.0;   // logit_normal: t = sigmoid(z), z ~ N(mean, std)
  double logit_std = 1.0;
  double sigmoid_scale = 1.0;  // sigmoid: density ∝ sigmoid(scale·(t − 0.5 − bias)) on [0, 1)
  double sigmoid_bias = 0.0;
  double min_sigma = 0.0;
  double max_sigma = 1.0;
  double shift = 1.0;          // static shift s (1 = none)
  bool dynamic_shift = false;  // s from the family's rule at each bucket's resolution instead
};

// Extra noise (specs/training.md §2 step 4), drawn from the item's own stream after ε.
struct NoiseOptions {
  double offset = 0.0;        // ε += offset · n, n ~ N(0, 1) per channel
  double perturbation = 0.0;  // ε += perturbation · n, n ~ N(0, I)
};

struct PlanOptions {
  uint64_t seed = 42;
  int64_t epochs = 1;
  int64_t batch_size = 1;
  TimestepOptions timesteps;
  NoiseOptions noise;
  // The family's shift at a bucket (width, height) in pixels; needed when dynamic_shift is set.
  std::function<double(int64_t width, int64_t height)> family_shift;
  // The sample indices of one epoch (repeats applied, any order; the plan shuffles them). Unset:
  // each sample PlanSample::repeats times. The data pipeline's epoch_samples() handles
  // fractional repeats and samples_per_epoch.
  std::function<std::vector<int64_t>(int64_t epoch)> epoch_samples;
};

struct Plan {
  std::vector<PlanSample> samples;
  std::vector<PlanBatch> batches;
  NoiseOptions noise;
  std::string manifest_hash;  // of the dataset manifest the samples came from
  std::string hash;           // SHA-256 over every input and every item

  int64_t item_count() const;
};

struct Manifest;
// The plan's view of a scanned dataset (repeats via epoch_samples(manifest, seed, epoch)).
std::vector<PlanSample> plan_samples(const Manifest& manifest);
void use_manifest_epochs(const Manifest& manifest, PlanOptions& options);

// The plan of a run. `manifest_hash` identifies the dataset content (images, captions) beyond
// what `samples` says. Throws dt::Error on settings that cannot give a plan.
Plan make_plan(const std::vector<PlanSample>& samples, const std::string& manifest_hash, const PlanOptions& options);

// A plan over given batches (e.g. the records of a delta store in another order); hashed the same way.
Plan plan_from_batches(std::vector<PlanSample> samples, std::string manifest_hash, std::vector<PlanBatch> batches,
                       NoiseOptions noise);

// ε for one item, float32 on the CPU, identical on every machine: a counter-based stream of the
// seed (Box–Muller over SplitMix64), independent of LibTorch's generators and thread count.
at::Tensor plan_noise(uint64_t noise_seed, const std::vector<int64_t>& shape, const NoiseOptions& options);

// x_σ = (1 − σ)·x0 + σ·ε, in float32.
at::Tensor noised(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& sigma);

}  // namespace dt
