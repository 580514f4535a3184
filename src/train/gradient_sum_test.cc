// GradientSum on two ranks in one process (threads over a HashStore, Gloo over 127.0.0.1): the sum
// over the ranks in every .grad, started during the backward pass, with accumulated micro-batches,
// a parameter only one rank reaches and one no rank reaches.
#include "train/gradient_sum.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <thread>

namespace dt {
namespace {

struct RankResult {
  std::vector<at::Tensor> grads;
  double loss = 0;
  int64_t items = 0;
};

// Rank r: parameters a [3000, 400] (12 buckets' worth: more than the first bucket), b [5], c [2].
// Micro-batch 1 (before arm): loss (r + 1)·Σa. Micro-batch 2 (armed): (r + 2)·Σ(a²)/2 + Σb on rank 0
// only; c is never used.
RankResult run_rank(const c10::intrusive_ptr<c10d::Store>& store, int r, bool last_pass_empty_on_rank1) {
  dist::GroupOptions o;
  o.bind_address = "127.0.0.1";
  o.timeout = std::chrono::seconds(20);
  const dist::Group group(store, r, 2, o);
  // The same parameters on both ranks, from a generator of this thread's own (the ranks are threads).
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1);
  at::Tensor a = at::randn({3000, 400}, generator).requires_grad_(), b = at::randn({5}, generator).requires_grad_(),
             c = at::randn({2}, generator).requires_grad_();
  GradientSum sum(group, {a, b, c});
  ((r + 1) * a.sum()).backward();
  const bool runs = !(last_pass_empty_on_rank1 && r == 1);
  if (runs) {
    sum.arm(1);
    at::Tensor loss = (r + 2) * a.square().sum() / 2;
    if (r == 0) loss = loss + b.sum();
    loss.backward();
  }
  RankResult out;
  out.loss = 0.5 + r;
  out.items = 2 + r;
  sum.finish(out.loss, out.items, 1);
  out.grads = {a.grad(), b.grad(), c.grad()};
  out.grads.push_back(a.detach());
  return out;
}

void check(bool last_pass_empty_on_rank1) {
  const auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<RankResult> results(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] { results[r] = run_rank(store, r, last_pass_empty_on_rank1); });
  for (auto& t : ranks) t.join();
  const at::Tensor a = results[0].grads[3];
  // Σ over ranks of (r + 1) + (r + 2)·a (rank 1's second term absent when its last pass is empty).
  const at::Tensor expected_a = last_pass_empty_on_rank1 ? 3 + 2 * a : 3 + 5 * a;
  for (const RankResult& r : results) {
    EXPECT_TRUE(torch::allclose(r.grads[0], expected_a, 1e-6, 1e-6));
    EXPECT_TRUE(torch::equal(r.grads[1], torch::ones({5})));  // only rank 0 reached b
    EXPECT_FALSE(r.grads[2].defined());                        // no rank reached c
    EXPECT_DOUBLE_EQ(r.loss, 2.0);
    EXPECT_EQ(r.items, 5);
  }
  EXPECT_TRUE(torch::equal(results[0].grads[0], results[1].grads[0]));  // the same bits on both ranks
}

TEST(GradientSum, EveryGradHoldsTheSumOverTheRanks) { check(false); }
TEST(GradientSum, ARankWithNothingInTheLastMicroBatchStillSendsItsShare) { check(true); }

}  // namespace
}  // namespace dt
