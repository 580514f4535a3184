// Split products against LibTorch's own, forward and backward.
#include "nn/split_matmul.h"

#include <dlfcn.h>

#include <cmath>

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace dt::nn {
namespace {

// Two LibTorch threads for a test, as init_runtime gives a program on this machine.
struct TwoThreads {
  int before = at::get_num_threads();
  TwoThreads() { at::set_num_threads(2); }
  ~TwoThreads() { at::set_num_threads(before); }
};

// Gradients of sum(y · r) for a fixed random r: each input's gradient through the whole graph.
std::vector<at::Tensor> outputs_and_grads(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f,
                                          const std::vector<at::Tensor>& inputs, const at::Tensor& r) {
  std::vector<at::Tensor> leaves;
  for (const auto& t : inputs) leaves.push_back(t.defined() ? t.detach().clone().requires_grad_(true) : t);
  at::Tensor y = f(leaves);
  (y * r).sum().backward();
  std::vector<at::Tensor> out = {y.detach()};
  for (const auto& t : leaves)
    if (t.defined()) out.push_back(t.grad());
  return out;
}

void expect_same_bits(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << what << ": tensor " << i;
}

// Within the rounding of sums of `terms` products (K·2⁻²⁴ of the terms' magnitudes, which for random
// inputs are about √K times the largest result): a lost or misplaced row is far outside it.
void expect_within_rounding(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, int64_t terms,
                            const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = b[i].abs().max().item<double>(), diff = (a[i] - b[i]).abs().max().item<double>();
    EXPECT_LE(diff, static_cast<double>(terms) * std::sqrt(static_cast<double>(terms)) * std::ldexp(1.0, -24) * scale)
        << what << ": tensor " << i;
  }
}

// OpenBLAS's kernel set. Its SkylakeX kernels give a row the same sum whichever rows share the
// call (checked there on many shapes and layouts); others (Haswell's) round a row's sum by where
// it falls in the call's blocks.
std::string blas_kernels() {
  auto name = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return name ? name() : "";
}

// Shapes large enough to be split; the biased cases cover at::linear's two ways of adding a
// bias (inside the product for 2-D and contiguous 3-D inputs, after it otherwise).
TEST(SplitMatmul, LinearIsTorchLinear) {
  TwoThreads threads;
  if (!products_split()) GTEST_SKIP() << "OpenBLAS runs its own threads here (OPENBLAS_NUM_THREADS is not 1): nothing is split";
  torch::manual_seed(8);
  const at::Tensor weight = torch::randn({515, 333}), bias = torch::randn({515});
  const std::vector<std::pair<std::string, at::Tensor>> inputs = {
      {"2-D", torch::randn({301, 333})},
      {"3-D", torch::randn({3, 101, 333})},
      {"3-D transposed", torch::randn({101, 3, 333}).transpose(0, 1)},
      {"4-D", torch::randn({2, 3, 50, 333})}};
  for (const auto& [name, x] : inputs)
    for (bool with_bias : {true, false}) {
      const at::Tensor r = torch::randn(at::linear(x, weight).sizes());
      const std::vector<at::Tensor> in = {x, weight, with_bias ? bias : at::Tensor()};
      const auto split = outputs_and_grads([](const auto& t) { return split_linear(t[0], t[1], t[2]); }, in, r);
      const auto whole = outputs_and_grads([](const auto& t) { return torch::nn::functional::linear(t[0], t[1], t[2]); }, in, r);
      const std::string what = name + (with_bias ? " with bias" : "");
      expect_within_rounding(split, whole, 515, what);  // the longest sum: the input's gradient, over the 515 outputs
      if (blas_kernels() == "SkylakeX") expect_same_bits(split, whole, what + " (SkylakeX kernels)");
    }
}

TEST(SplitMatmul, BatchedIsTorchBmmBitForBit) {
  TwoThreads threads;
  if (!products_split()) GTEST_SKIP() << "OpenBLAS runs its own threads here (OPENBLAS_NUM_THREADS is not 1): nothing is split";
  torch::manual_seed(9);
  // As attention makes them: heads of a [B, L, H, D] projection, scores against keys.
  const at::Tensor q = torch::randn({1, 257, 6, 64}).transpose(1, 2).reshape({6, 257, 64});
  const at::Tensor k = torch::randn({1, 257, 6, 64}).transpose(1, 2).reshape({6, 257, 64}).transpose(1, 2);
  const at::Tensor r = torch::randn({6, 257, 257});
  expect_same_bits(outputs_and_grads([](const auto& t) { return split_bmm(t[0], t[1]); }, {q, k}, r),
                   outputs_and_grads([](const auto& t) { return at::bmm(t[0], t[1]); }, {q, k}, r), "q·kᵀ");
  // Many tiny batches, which torch::bmm multiplies itself instead of calling the BLAS.
  const at::Tensor a = torch::randn({300000, 4, 7}), b = torch::randn({300000, 7, 4});
  EXPECT_TRUE(torch::equal(split_bmm(a, b), at::bmm(a, b)));
}

// Below the split's size, and for other dtypes, the calls are LibTorch's own.
TEST(SplitMatmul, SmallAndBf16ProductsAreLibTorchs) {
  torch::manual_seed(10);
  const at::Tensor x = torch::randn({4, 8}), w = torch::randn({5, 8}), b = torch::randn({5});
  EXPECT_TRUE(torch::equal(split_linear(x, w, b), torch::nn::functional::linear(x, w, b)));
  const at::Tensor xb = torch::randn({301, 333}).to(at::kBFloat16), wb = torch::randn({515, 333}).to(at::kBFloat16);
  EXPECT_TRUE(torch::equal(split_linear(xb, wb, {}), torch::nn::functional::linear(xb, wb)));
}

}  // namespace
}  // namespace dt::nn
