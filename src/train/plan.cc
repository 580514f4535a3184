#include "train/plan.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <map>
#include <utility>

#include "core/error.h"
#include "core/hash.h"
#include "data/dataset.h"

namespace dt {
namespace {

// SplitMix64: the k-th output depends only on (seed, k), which gives both a sequential generator
// for the plan and random access for the noise of one item.
constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ull;
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t stream_at(uint64_t seed, uint64_t k) { return mix64(seed + (k + 1) * kGamma); }
double unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }  // [0, 1)

class Rng {
 public:
  explicit Rng(uint64_t seed) : seed_(seed) {}
  uint64_t next() { return stream_at(seed_, k_++); }
  double uniform() { return unit(next()); }
  int64_t below(int64_t n) { return static_cast<int64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
  double normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }

 private:
  uint64_t seed_, k_ = 0;
};

double softplus(double x) { return x > 30 ? x : std::log1p(std::exp(x)); }

// Inverse CDF of the density ∝ sigmoid(a·(x − c)) on [0, 1), by bisection (monotone, exact to 1e-15).
double sigmoid_draw(double u, double a, double c) {
  if (std::abs(a) < 1e-12) return u;
  auto cdf = [&](double x) { return (softplus(a * (x - c)) - softplus(-a * c)) / a; };
  const double total = cdf(1.0);
  double lo = 0, hi = 1;
  for (int i = 0; i < 60; ++i) {
    const double mid = 0.5 * (lo + hi);
    (cdf(mid) < u * total ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double draw_t(Rng& rng, const TimestepOptions& o) {
  double t01;
  if (o.distribution == "uniform") t01 = rng.uniform();
  else if (o.distribution == "logit_normal") t01 = 1.0 / (1.0 + std::exp(-(o.logit_mean + o.logit_std * rng.normal())));
  else t01 = sigmoid_draw(rng.uniform(), o.sigmoid_scale, 0.5 + o.sigmoid_bias);
  return o.min_sigma + (o.max_sigma - o.min_sigma) * t01;
}

double shifted(double t, double s) { return s * t / (1.0 + (s - 1.0) * t); }

void validate(const std::vector<PlanSample>& samples, const PlanOptions& o) {
  const auto& t = o.timesteps;
  if (samples.empty()) throw Error("the dataset has no samples");
  if (o.epochs < 1) throw Error("train.epochs must be at least 1");
  if (o.batch_size < 1) throw Error("train.batch_size must be at least 1");
  if (t.distribution != "uniform" && t.distribution != "logit_normal" && t.distribution != "sigmoid")
    throw Error("train.timestep_distribution '" + t.distribution + "' is not one of uniform, logit_normal, sigmoid");
  if (!(t.logit_std > 0)) throw Error("train.logit_std must be positive");
  if (!(0 <= t.min_sigma && t.min_sigma < t.max_sigma && t.max_sigma <= 1))
    throw Error("train.min_sigma and train.max_sigma must satisfy 0 <= min < max <= 1");
  if (!(t.shift > 0)) throw Error("train.shift must be positive");
  if (t.dynamic_shift && !o.family_shift) throw Error("train.dynamic_shift needs a model family with a shift rule");
  for (const auto& s : samples) {
    if (s.captions < 1) throw Error("sample '" + s.key + "' has no caption");
    if (s.repeats < 0 || (!o.epoch_samples && s.repeats != std::floor(s.repeats)))
      throw Error("sample '" + s.key + "' has repeats that are not a whole number >= 0");
    if (s.width <= 0 || s.height <= 0) throw Error("sample '" + s.key + "' has no bucket size");
  }
}

// Feeds values to SHA-256 in a fixed little-endian form; strings carry their length.
class Digest {
 public:
  Digest& u64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    sha_.update(b, 8);
    return *this;
  }
  Digest& i64(int64_t v) { return u64(static_cast<uint64_t>(v)); }
  Digest& f64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    return u64(bits);
  }
  Digest& str(const std::string& s) {
    u64(s.size());
    sha_.update(s);
    return *this;
  }
  std::string hex() { return sha_.hex(); }

 private:
  Sha256 sha_;
};

void hash_common(Digest& h, const Plan& p) {
  h.str("deltatrain-plan-1").str(p.manifest_hash).f64(p.noise.offset).f64(p.noise.perturbation).u64(p.samples.size());
  for (const auto& s : p.samples) 
    h.str(s.key).i64(s.captions).f64(s.repeats).i64(s.width).i64(s.height).f64(s.loss_weight).f64(s.caption_dropout);
  h.u64(p.batches.size());
  for (const auto& b : p.batches) {
    h.i64(b.epoch).u64(b.items.size());
    for (const auto& it : b.items) h.i64(it.sample).i64(it.caption).f64(it.sigma).u64(it.noise_seed);
  }
}

}  // namespace

std::vector<PlanSample> plan_samples(const Manifest& manifest) {
  std::vector<PlanSample> out;
  for (const Sample& s : manifest.samples) {
    const Concept& c = manifest.concept_of(s);
    out.push_back({s.key, static_cast<int64_t>(s.captions.size()), c.repeats, s.bucket.width,
                   s.bucket.height, c.loss_weight, c.caption_dropout});
  }
  return out;
}

void use_manifest_epochs(const Manifest& manifest, PlanOptions& options) {
  const uint64_t seed = options.seed;
  options.epoch_samples = [&manifest, seed](int64_t epoch) { return epoch_samples(manifest, seed, epoch); };
}

int64_t Plan::item_count() const {
  int64_t n = 0;
  for (const auto& b : batches) n += static_cast<int64_t>(b.items.size());
  return n;
}

Plan make_plan(const std::vector<PlanSample>& samples, const std::string& manifest_hash, const PlanOptions& o) {
  validate(samples, o);
  Plan plan;
  plan.samples = samples;
  plan.manifest_hash = manifest_hash;
  plan.noise = o.noise;
  std::map<std::pair<int64_t, int64_t>, double> bucket_shift;  // (w, h) → s
  for (const auto& s : samples)
    bucket_shift[{s.width, s.height}] = o.timesteps.dynamic_shift ? o.family_shift(s.width, s.height) : o.timesteps.shift;

  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    Rng rng(mix64(o.seed ^ mix64(static_cast<uint64_t>(epoch) + 1)));
    std::vector<int32_t> order;
    if (o.epoch_samples) {
      for (int64_t i : o.epoch_samples(epoch)) {
        if (i < 0 || i >= static_cast<int64_t>(samples.size())) throw Error("epoch sample index out of range");
        order.push_back(static_cast<int32_t>(i));
      }
    } else {
      for (size_t i = 0; i < samples.size(); ++i)
        for (int64_t r = 0; r < samples[i].repeats; ++r) order.push_back(static_cast<int32_t>(i));
    }
    for (int64_t i = static_cast<int64_t>(order.size()) - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);

    // Fill one pending batch per bucket in shuffled order; leftovers close the epoch in the
    // order their buckets first appeared.
    std::vector<std::pair<std::pair<int64_t, int64_t>, PlanBatch>> pending;
    for (int32_t index : order) {
      const PlanSample& s = samples[index];
      const std::pair<int64_t, int64_t> bucket{s.width, s.height};
      size_t slot = 0;
      while (slot < pending.size() && pending[slot].first != bucket) ++slot;
      if (slot == pending.size()) pending.push_back({bucket, PlanBatch{static_cast<int32_t>(epoch), {}}});
      PlanItem item;
      item.sample = index;
      item.caption = static_cast<int32_t>(rng.below(s.captions));
      if (rng.uniform() < s.caption_dropout) item.caption = kEmptyCaption;
      item.sigma = static_cast<float>(shifted(draw_t(rng, o.timesteps), bucket_shift.at(bucket)));
      item.noise_seed = rng.next();
      auto& batch = pending[slot].second;
      batch.items.push_back(item);
      if (static_cast<int64_t>(batch.items.size()) == o.batch_size) {
        plan.batches.push_back(std::move(batch));
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(slot));
      }
    }
    for (auto& [bucket, batch] : pending) plan.batches.push_back(std::move(batch));
  }
  if (plan.batches.empty()) throw Error("the plan is empty (every sample has repeats = 0)");

  Digest h;
  hash_common(h, plan);
  const auto& t = o.timesteps;
  h.u64(o.seed).i64(o.epochs).i64(o.batch_size).str(t.distribution).f64(t.logit_mean).f64(t.logit_std);
  h.f64(t.sigmoid_scale).f64(t.sigmoid_bias).f64(t.min_sigma).f64(t.max_sigma).f64(t.shift).u64(t.dynamic_shift);
  for (const auto& [bucket, s] : bucket_shift) h.i64(bucket.first).i64(bucket.second).f64(s);
  plan.hash = h.hex();
  return plan;
}

Plan plan_from_batches(std::vector<PlanSample> samples, std::string manifest_hash, std::vector<PlanBatch> batches,
                       NoiseOptions noise) {
  Plan plan;
  plan.samples = std::move(samples);
  plan.manifest_hash = std::move(manifest_hash);
  plan.batches = std::move(batches);
  plan.noise = noise;
  for (const auto& b : plan.batches)
    for (const auto& it : b.items)
      if (it.sample < 0 || it.sample >= static_cast<int32_t>(plan.samples.size()) ||
          it.caption < kEmptyCaption || it.caption >= plan.samples[it.sample].captions)
        throw Error("plan item refers to a sample or caption that does not exist");
  Digest h;
  hash_common(h, plan);
  plan.hash = h.hex();
  return plan;
}

at::Tensor plan_noise(uint64_t seed, const std::vector<int64_t>& shape, const NoiseOptions& o) {
  at::Tensor eps = torch::empty(shape, torch::kFloat);
  float* out = eps.data_ptr<float>();
  const int64_t n = eps.numel();
  // Element i uses outputs 2·(i/2) and 2·(i/2)+1 of the seed's stream: the cosine and sine halves
  // of one Box–Muller pair, so the result does not depend on how the loop is split.
  at::parallel_for(0, (n + 1) / 2, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const double u1 = 1.0 - unit(stream_at(seed, 2 * p)), u2 = unit(stream_at(seed, 2 * p + 1));
      const double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * M_PI * u2;
      out[2 * p] = static_cast<float>(r * std::cos(a));
      if (2 * p + 1 < n) out[2 * p + 1] = static_cast<float>(r * std::sin(a));
    }
  });
  if (o.offset != 0) {
    std::vector<int64_t> per_channel(shape.size(), 1);
    per_channel[0] = shape.at(0);
    eps += o.offset * plan_noise(mix64(seed ^ 0x6f66667365740000ull), per_channel, {});
  }
  if (o.perturbation != 0) eps += o.perturbation * plan_noise(mix64(seed ^ 0x7065727475726200ull), shape, {});
  return eps;
}

at::Tensor noised(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& sigma) {
  std::vector<int64_t> view(x0.dim(), 1);
  view[0] = sigma.size(0);
  const at::Tensor s = sigma.to(torch::kFloat).view(view);
  return (1 - s) * x0.to(torch::kFloat) + s * noise.to(torch::kFloat);
}

}  // namespace dt
