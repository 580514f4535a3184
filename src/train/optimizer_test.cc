#include "train/optimizer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "train/tensorboard.h"

namespace dt {
namespace {

// Same updates as LibTorch's own AdamW over several steps with changing gradients.
TEST(Optimizer, AdamWMatchesLibTorch) {
  torch::manual_seed(3);
  at::Tensor a = torch::randn({5, 7}).requires_grad_(), b = a.detach().clone().requires_grad_();
  AdamW ours({a}, {0.9, 0.99, 1e-8, 0.05});
  torch::optim::AdamW theirs({b}, torch::optim::AdamWOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.05));
  for (int step = 0; step < 5; ++step) {
    const at::Tensor g = torch::randn({5, 7});
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    ours.step(1e-2);
    theirs.step();
  }
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(ours.steps(), 5);
}

TEST(Optimizer, StateRestoresExactly) {
  torch::manual_seed(4);
  at::Tensor a = torch::randn({4}).requires_grad_(), b = a.detach().clone().requires_grad_();
  AdamW first({a}, {}), second({b}, {});
  a.mutable_grad() = torch::randn({4});
  first.step(0.1);
  std::map<std::string, at::Tensor> state;
  for (const auto& [k, v] : first.state()) state[k] = v.clone();
  {
    torch::NoGradGuard no_grad;
    b.copy_(a);
  }
  second.load_state(state);
  const at::Tensor g = torch::randn({4});
  a.mutable_grad() = g.clone();
  b.mutable_grad() = g.clone();
  first.step(0.1);
  second.step(0.1);
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(Optimizer, LearningRateSchedules) {
  LearningRateSchedule t;
  t.learning_rate = 1.0;
  t.warmup_steps = 4;
  t.min_lr_factor = 0.1;
  // Warm-up: 1/4, 2/4, 3/4, 1 over the first four steps for every schedule.
  for (const char* s : {"constant", "linear", "cosine"}) {
    t.lr_schedule = s;
    EXPECT_DOUBLE_EQ(learning_rate_at(t, 0, 14), 0.25);
    EXPECT_DOUBLE_EQ(learning_rate_at(t, 3, 14), 1.0);
  }
  t.lr_schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate_at(t, 13, 14), 1.0);
  t.lr_schedule = "linear";  // steps 4..13 go from 1 to 0.1
  EXPECT_DOUBLE_EQ(learning_rate_at(t, 13, 14), 0.1);
  EXPECT_NEAR(learning_rate_at(t, 8, 14), 1 - 0.9 * 4.0 / 9.0, 1e-12);
  t.lr_schedule = "cosine";
  EXPECT_NEAR(learning_rate_at(t, 13, 14), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate_at(t, 4, 14), 1.0, 1e-12);
  EXPECT_NEAR(learning_rate_at(t, 8, 14), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 4.0 / 9.0)), 1e-12);
  t.lr_schedule = "exponential";
  EXPECT_THROW(learning_rate_at(t, 5, 14), Error);
}

TEST(Optimizer, ClippingScalesToTheMaximumNorm) {
  at::Tensor a = torch::zeros({2}).requires_grad_(), b = torch::zeros({1}).requires_grad_();
  a.mutable_grad() = torch::tensor({3.f, 0.f});
  b.mutable_grad() = torch::tensor({4.f});
  const double norm = gradient_norm({a, b});
  EXPECT_DOUBLE_EQ(norm, 5.0);
  clip_gradients({a, b}, norm, 1.0);
  EXPECT_NEAR(gradient_norm({a, b}), 1.0, 1e-6);
}

TEST(TensorBoard, Crc32cKnownValues) {
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);  // the CRC-32C check value
  EXPECT_EQ(crc32c(""), 0u);
}

}  // namespace
}  // namespace dt
