#include "train/plan.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <set>

#include "core/error.h"

namespace dt {
namespace {

std::vector<PlanSample> dataset() {
  return {{"a/1.png", 2, 1, 64, 64, 1.0},
          {"a/2.png", 1, 2, 64, 64, 1.0},
          {"b/1.png", 3, 1, 96, 64, 0.5},
          {"b/2.png", 1, 1, 96, 64, 0.5},
          {"b/3.png", 1, 1, 64, 64, 0.5}};
}

PlanOptions options() {
  PlanOptions o;
  o.seed = 7;
  o.epochs = 3;
  o.batch_size = 2;
  o.family_shift = [](int64_t w, int64_t h) { return 1.0 + static_cast<double>(w * h) / 4096.0; };
  return o;
}

TEST(Plan, DeterministicAndCoversEveryRepeat) {
  const Plan a = make_plan(dataset(), "m", options()), b = make_plan(dataset(), "m", options());
  EXPECT_EQ(a.hash, b.hash);
  ASSERT_EQ(a.batches.size(), b.batches.size());
  for (size_t i = 0; i < a.batches.size(); ++i)
    for (size_t j = 0; j < a.batches[i].items.size(); ++j) {
      EXPECT_EQ(a.batches[i].items[j].sigma, b.batches[i].items[j].sigma);
      EXPECT_EQ(a.batches[i].items[j].noise_seed, b.batches[i].items[j].noise_seed);
    }
  // 6 uses per epoch (one sample repeats twice), every batch a single bucket.
  EXPECT_EQ(a.item_count(), 18);
  std::vector<int> uses(5, 0);
  for (const auto& batch : a.batches) {
    ASSERT_LE(batch.items.size(), 2u);
    for (const auto& it : batch.items) {
      ++uses[it.sample];
      EXPECT_EQ(a.samples[it.sample].width, a.samples[batch.items[0].sample].width);
      EXPECT_LT(it.caption, a.samples[it.sample].captions);
      EXPECT_GT(it.sigma, 0.f);
      EXPECT_LT(it.sigma, 1.f);
    }
  }
  EXPECT_EQ(uses, (std::vector<int>{3, 6, 3, 3, 3}));
}

TEST(Plan, HashChangesWithEveryInput) {
  const std::string base = make_plan(dataset(), "m", options()).hash;
  std::set<std::string> seen{base};
  auto expect_new = [&](const std::string& what, const std::function<void(std::vector<PlanSample>&, std::string&, PlanOptions&)>& change) {
    auto samples = dataset();
    std::string manifest = "m";
    PlanOptions o = options();
    change(samples, manifest, o);
    const std::string h = make_plan(samples, manifest, o).hash;
    EXPECT_TRUE(seen.insert(h).second) << what << " did not change the plan hash";
  };
  using S = std::vector<PlanSample>;
  expect_new("manifest hash", [](S&, std::string& m, PlanOptions&) { m = "n"; });
  expect_new("sample key", [](S& s, std::string&, PlanOptions&) { s[0].key = "a/0.png"; });
  expect_new("captions", [](S& s, std::string&, PlanOptions&) { s[3].captions = 2; });
  expect_new("repeats", [](S& s, std::string&, PlanOptions&) { s[4].repeats = 2; });
  expect_new("bucket", [](S& s, std::string&, PlanOptions&) { s[4].width = 128; });
  expect_new("loss weight", [](S& s, std::string&, PlanOptions&) { s[0].loss_weight = 2; });
  expect_new("seed", [](S&, std::string&, PlanOptions& o) { o.seed = 8; });
  expect_new("epochs", [](S&, std::string&, PlanOptions& o) { o.epochs = 4; });
  expect_new("batch size", [](S&, std::string&, PlanOptions& o) { o.batch_size = 3; });
  expect_new("distribution", [](S&, std::string&, PlanOptions& o) { o.timesteps.distribution = "uniform"; });
  expect_new("sigmoid", [](S&, std::string&, PlanOptions& o) { o.timesteps.distribution = "sigmoid"; });
  expect_new("logit mean", [](S&, std::string&, PlanOptions& o) { o.timesteps.logit_mean = 0.1; });
  expect_new("logit std", [](S&, std::string&, PlanOptions& o) { o.timesteps.logit_std = 1.1; });
  expect_new("sigmoid scale", [](S&, std::string&, PlanOptions& o) { o.timesteps.sigmoid_scale = 2; });
  expect_new("sigmoid bias", [](S&, std::string&, PlanOptions& o) { o.timesteps.sigmoid_bias = 0.1; });
  expect_new("min sigma", [](S&, std::string&, PlanOptions& o) { o.timesteps.min_sigma = 0.1; });
  expect_new("max sigma", [](S&, std::string&, PlanOptions& o) { o.timesteps.max_sigma = 0.9; });
  expect_new("shift", [](S&, std::string&, PlanOptions& o) { o.timesteps.shift = 3; });
  expect_new("dynamic shift", [](S&, std::string&, PlanOptions& o) { o.timesteps.dynamic_shift = true; });
  expect_new("offset noise", [](S&, std::string&, PlanOptions& o) { o.noise.offset = 0.1; });
  expect_new("perturbation noise", [](S&, std::string&, PlanOptions& o) { o.noise.perturbation = 0.1; });
}

// The sample-level moments of each distribution match their definition.
TEST(Plan, TimestepDistributions) {
  std::vector<PlanSample> one{{"x", 1, 4000, 64, 64, 1.0}};
  auto sigmas = [&](const std::function<void(PlanOptions&)>& set) {
    PlanOptions o = options();
    o.epochs = 1;
    set(o);
    std::vector<double> s;
    for (const auto& b : make_plan(one, "m", o).batches)
      for (const auto& it : b.items) s.push_back(it.sigma);
    return s;
  };
  auto mean = [](const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m += x;
    return m / static_cast<double>(v.size());
  };
  auto u = sigmas([](PlanOptions& o) { o.timesteps.distribution = "uniform"; });
  EXPECT_NEAR(mean(u), 0.5, 0.02);
  // Logit-normal: the logits have the configured mean and std.
  auto ln = sigmas([](PlanOptions& o) { o.timesteps.logit_mean = 0.5; o.timesteps.logit_std = 0.7; });
  std::vector<double> logits;
  for (double s : ln) logits.push_back(std::log(s / (1 - s)));
  const double lm = mean(logits);
  double var = 0;
  for (double z : logits) var += (z - lm) * (z - lm);
  EXPECT_NEAR(lm, 0.5, 0.05);
  EXPECT_NEAR(std::sqrt(var / logits.size()), 0.7, 0.05);
  // Sigmoid with scale 8: density ∝ sigmoid(8(x − 0.5)) has mean ≈ 0.6246 (numerical integral).
  auto sg = sigmas([](PlanOptions& o) { o.timesteps.distribution = "sigmoid"; o.timesteps.sigmoid_scale = 8; });
  double num = 0, den = 0;
  for (int i = 0; i < 100000; ++i) {
    const double x = (i + 0.5) / 100000, f = 1 / (1 + std::exp(-8 * (x - 0.5)));
    num += x * f;
    den += f;
  }
  EXPECT_NEAR(mean(sg), num / den, 0.02);
  // Shift 3 applied to uniform: σ = 3t / (1 + 2t), so t = σ / (3 − 2σ) is uniform again.
  auto sh = sigmas([](PlanOptions& o) { o.timesteps.distribution = "uniform"; o.timesteps.shift = 3; });
  std::vector<double> back;
  for (double s : sh) back.push_back(s / (3 - 2 * s));
  EXPECT_NEAR(mean(back), 0.5, 0.02);
  EXPECT_GT(mean(sh), 0.6);
  // Dynamic shift takes the family's value at the bucket size (here 2 at 64×64).
  auto dy = sigmas([](PlanOptions& o) { o.timesteps.distribution = "uniform"; o.timesteps.dynamic_shift = true; });
  std::vector<double> dy_back;
  for (double s : dy) dy_back.push_back(s / (2 - s));
  EXPECT_NEAR(mean(dy_back), 0.5, 0.02);
}

TEST(Plan, NoiseIsStandardNormalAndSeeded) {
  const at::Tensor a = plan_noise(123, {4, 32, 32}, {}), b = plan_noise(123, {4, 32, 32}, {});
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, plan_noise(124, {4, 32, 32}, {})));
  EXPECT_NEAR(a.mean().item<double>(), 0.0, 0.05);
  EXPECT_NEAR(a.std().item<double>(), 1.0, 0.05);
  // The same stream whatever the thread count: a tensor of 16 grains (64 Ki values, 8 × the
  // parallel grain of 4096 pairs) is split between the threads, one thread or four.
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const at::Tensor one_thread = plan_noise(321, {16, 64, 64}, {});
  at::set_num_threads(4);
  std::atomic<int> chunks{0};  // the loop really is split (our code is built with OpenMP)
  at::parallel_for(0, 16 * 64 * 64 / 2, 4096, [&](int64_t, int64_t) { ++chunks; });
  EXPECT_EQ(chunks.load(), 4);
  const at::Tensor four_threads = plan_noise(321, {16, 64, 64}, {});
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one_thread, four_threads));
  // Offset noise adds one constant per channel.
  const at::Tensor off = plan_noise(123, {4, 32, 32}, {0.5, 0.0}) - a;
  EXPECT_LT((off - off.flatten(1).mean(1).view({4, 1, 1})).abs().max().item<double>(), 1e-6);
  EXPECT_GT(off.abs().max().item<double>(), 0.0);
}

TEST(Plan, BadSettingsAreErrors) {
  PlanOptions o = options();
  o.timesteps.distribution = "cosmic";
  EXPECT_THROW(make_plan(dataset(), "m", o), Error);
  o = options();
  o.batch_size = 0;
  EXPECT_THROW(make_plan(dataset(), "m", o), Error);
  o = options();
  o.timesteps.dynamic_shift = true;
  o.family_shift = nullptr;
  EXPECT_THROW(make_plan(dataset(), "m", o), Error);
  EXPECT_THROW(make_plan({}, "m", options()), Error);
}

}  // namespace
}  // namespace dt
