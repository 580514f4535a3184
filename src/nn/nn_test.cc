// Shared building blocks against their defining formulas and identities.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "nn/attention.h"
#include "nn/checkpoint.h"
#include "nn/linear.h"
#include "nn/rms_norm.h"
#include "nn/rope.h"
#include "nn/timestep.h"

namespace dt::nn {
namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>(); }

// Restores the attention switch however a test ends.
struct ExplicitAttention {
  explicit ExplicitAttention(bool on) { set_explicit_attention(on); }
  ~ExplicitAttention() { set_explicit_attention(false); }
};

// softmax(q·kᵀ·scale + mask)·v written out in float64, one head at a time.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                               bool causal, double scale) {
  auto q64 = q.to(at::kDouble), k64 = k.to(at::kDouble), v64 = v.to(at::kDouble);
  const int64_t group = q.size(1) / k.size(1);
  at::Tensor out = torch::zeros_like(q64);
  for (int64_t b = 0; b < q.size(0); ++b)
    for (int64_t h = 0; h < q.size(1); ++h) {
      at::Tensor s = torch::matmul(q64[b][h], k64[b][h / group].t()) * scale;
      for (int64_t i = 0; i < q.size(2); ++i)
        for (int64_t j = 0; j < k.size(2); ++j)
          if ((mask.defined() && !mask[b][j].item<bool>()) || (causal && j > i)) s[i][j] = -INFINITY;
      out[b][h] = torch::matmul(torch::softmax(s, -1), v64[b][h / group]);
    }
  return out;
}

TEST(Attention, BothPathsMatchTheFormulaWithMaskCausalAndGroups) {
  torch::manual_seed(0);
  at::Tensor q = torch::randn({2, 4, 5, 8}), k = torch::randn({2, 2, 5, 8}), v = torch::randn({2, 2, 5, 8});
  at::Tensor mask = torch::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kBool).view({2, 5});
  for (bool use_explicit : {false, true}) {
    ExplicitAttention guard(use_explicit);
    EXPECT_LT(max_diff(attention(q, k, v), reference_attention(q, k, v, {}, false, 1 / std::sqrt(8.0))), 1e-5);
    EXPECT_LT(max_diff(attention(q, k, v, mask, false, 0.3), reference_attention(q, k, v, mask, false, 0.3)), 1e-5);
    EXPECT_LT(max_diff(attention(q, k, v, mask, true), reference_attention(q, k, v, mask, true, 1 / std::sqrt(8.0))), 1e-5);
  }
}

// A bf16 input takes its own path (the scale on the query, the scores kept in bf16).
TEST(Attention, ExplicitBf16PathMatchesTheFormula) {
  ExplicitAttention guard(true);
  torch::manual_seed(7);
  const at::Tensor q = torch::randn({2, 3, 40, 32}), k = torch::randn({2, 3, 40, 32}), v = torch::randn({2, 3, 40, 32});
  const at::Tensor mask = (torch::arange(40) < 33).view({1, 40}).expand({2, 40});
  const at::Tensor bf16 = attention(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16), mask);
  EXPECT_EQ(bf16.scalar_type(), at::kBFloat16);
  EXPECT_LT(max_diff(bf16, reference_attention(q, k, v, mask, false, 1 / std::sqrt(32.0))), 0.05);
  EXPECT_GT(max_diff(bf16, reference_attention(q, k, v, mask, false, 0.5 / std::sqrt(32.0))), 0.05);
}

TEST(Attention, MaskedKeysDoNotMatter) {
  torch::manual_seed(1);
  at::Tensor q = torch::randn({1, 2, 4, 8}), k = torch::randn({1, 2, 6, 8}), v = torch::randn({1, 2, 6, 8});
  at::Tensor mask = torch::tensor({1, 1, 1, 1, 0, 0}, at::kBool).view({1, 6});
  at::Tensor k2 = k.clone(), v2 = v.clone();
  k2.narrow(2, 4, 2).normal_();
  v2.narrow(2, 4, 2).normal_();
  EXPECT_EQ(max_diff(attention(q, k, v, mask), attention(q, k2, v2, mask)), 0.0);
}

TEST(RMSNorm, MatchesFormulaAndKeepsDtype) {
  torch::manual_seed(2);
  RMSNorm norm(16, 1e-5);
  norm->weight.data().normal_();
  at::Tensor x = torch::randn({3, 16}) * 5;
  at::Tensor expected = x.to(at::kDouble) / torch::sqrt(x.to(at::kDouble).pow(2).mean(-1, true) + 1e-5) * norm->weight.to(at::kDouble);
  EXPECT_LT(max_diff(norm(x), expected), 1e-5);
  norm->to(at::kBFloat16);
  at::Tensor y = norm(x.to(at::kBFloat16));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_LT(max_diff(y, expected), 0.05 * expected.abs().max().item<double>());
}

// bf16 with a frozen weight runs fused (one pass per row each way); it rounds as the formula does,
// up to the order of the mean's sum: forward within one bf16 step, backward close.
TEST(RMSNorm, FusedBf16AgreesWithTheFormula) {
  torch::manual_seed(11);
  const at::Tensor w = torch::randn({1029}).to(at::kBFloat16);  // not a multiple of 8: the tail too
  const at::Tensor x0 = (torch::randn({2, 37, 1029}) * 3).to(at::kBFloat16), dy = torch::randn({2, 37, 1029}).to(at::kBFloat16);
  at::Tensor a = x0.clone().requires_grad_(true), b = x0.clone().requires_grad_(true);
  at::Tensor fused = rms_norm(a, w, 1e-6);
  ASSERT_NE(fused.grad_fn()->name().find("FusedRmsNorm"), std::string::npos) << fused.grad_fn()->name();
  const at::Tensor b32 = b.to(at::kFloat);
  at::Tensor formula = (b32 * torch::rsqrt(b32.pow(2).mean(-1, true) + 1e-6)).to(at::kBFloat16) * w;
  fused.backward(dy);
  formula.backward(dy);
  EXPECT_EQ(fused.scalar_type(), at::kBFloat16);
  const at::Tensor f = fused.detach().to(at::kFloat), r = formula.detach().to(at::kFloat);
  EXPECT_GT(f.eq(r).to(at::kFloat).mean().item<float>(), 0.98f);
  EXPECT_TRUE(((f - r).abs() <= r.abs() * (1.0f / 64)).all().item<bool>());  // two bf16 steps at most
  EXPECT_LT(max_diff(a.grad(), b.grad()), 0.02 * b.grad().abs().max().item<double>());
  EXPECT_GT(max_diff(a.grad(), torch::zeros_like(b.grad())), 0.5 * b.grad().abs().max().item<double>());
}

TEST(TimestepEmbedding, CosinesFirstWithGeometricFrequencies) {
  at::Tensor e = timestep_embedding(torch::tensor({0.0f, 500.0f}), 9);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{2, 9}));
  EXPECT_EQ(e[0].narrow(0, 0, 4).sum().item<float>(), 4.0f);  // cos(0)
  EXPECT_EQ(e[0].narrow(0, 4, 5).abs().sum().item<float>(), 0.0f);  // sin(0) and the odd pad column
  for (int j = 0; j < 4; ++j) {
    double f = std::exp(-std::log(10000.0) * j / 4);
    EXPECT_NEAR(e[1][j].item<double>(), std::cos(500 * f), 1e-4);
    EXPECT_NEAR(e[1][4 + j].item<double>(), std::sin(500 * f), 1e-4);
  }
}

TEST(Rope, AnglesPerAxisAndRelativePositionProperty) {
  at::Tensor pos = torch::tensor({3, 5}, at::kLong).view({1, 2});
  at::Tensor a = rope_angles(pos, {4, 2}, 100.0);  // planes: axis0 (2), axis1 (1)
  ASSERT_EQ(a.size(-1), 3);
  EXPECT_DOUBLE_EQ(a[0][0].item<double>(), 3.0);
  EXPECT_DOUBLE_EQ(a[0][1].item<double>(), 3.0 / 10.0);  // 100^(-2/4)
  EXPECT_DOUBLE_EQ(a[0][2].item<double>(), 5.0);
  // <R(p)q, R(p')k> depends only on p − p', in both layouts.
  torch::manual_seed(3);
  at::Tensor q = torch::randn({8}), k = torch::randn({8});
  auto rotated_dot = [&](int64_t p1, int64_t p2, bool interleaved) {
    auto at_pos = [&](const at::Tensor& x, int64_t p) {
      at::Tensor ang = rope_angles(torch::tensor({p}, at::kLong).view({1, 1}), {8}, 256.0)[0].to(at::kFloat);
      return interleaved ? apply_rope_interleaved(x, ang.cos(), ang.sin()) : apply_rope_rotate_half(x, ang.cos(), ang.sin());
    };
    return at_pos(q, p1).dot(at_pos(k, p2)).item<double>();
  };
  for (bool interleaved : {true, false}) {
    EXPECT_NEAR(rotated_dot(7, 2, interleaved), rotated_dot(15, 10, interleaved), 1e-4);
    EXPECT_GT(std::abs(rotated_dot(7, 2, interleaved) - rotated_dot(7, 3, interleaved)), 1e-3);
  }
  // The two layouts are the same rotation on a permuted head vector.
  at::Tensor ang = rope_angles(torch::tensor({4}, at::kLong).view({1, 1}), {8}, 256.0)[0].to(at::kFloat);
  at::Tensor perm = torch::tensor({0, 2, 4, 6, 1, 3, 5, 7}, at::kLong);
  EXPECT_LT(max_diff(apply_rope_interleaved(q, ang.cos(), ang.sin()).index_select(0, perm),
                     apply_rope_rotate_half(q.index_select(0, perm), ang.cos(), ang.sin())), 1e-6);
}

// The interleaved rotation is one complex product; it must round exactly as the real formula
// (re·c − im·s, re·s + im·c) in float32 does, forward and backward: the shipped worlds were trained
// with that formula and rebuild bit for bit. Head dims as the models have them (32 in the worlds,
// 128 at full size): LibTorch's complex product is exact where a row of planes fills whole pairs
// of vectors and may fuse a multiply-add in a shorter tail.
TEST(Rope, InterleavedIsTheRealFormulaBitForBit) {
  torch::manual_seed(6);
  for (int64_t head_dim : {32, 128})
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      const at::Tensor angles = torch::randn({2, 5, 1, head_dim / 2}) * 10, g = torch::randn({2, 5, 3, head_dim});
      const at::Tensor x0 = torch::randn({2, 5, 3, head_dim}).to(dtype);
      at::Tensor a = x0.clone().requires_grad_(true), b = x0.clone().requires_grad_(true);
      at::Tensor ya = apply_rope_interleaved(a, angles.cos(), angles.sin());
      const at::Tensor pairs = b.to(at::kFloat).view({2, 5, 3, head_dim / 2, 2});
      const at::Tensor re = pairs.select(-1, 0), im = pairs.select(-1, 1), c = angles.cos(), s = angles.sin();
      at::Tensor yb = torch::stack({re * c - im * s, re * s + im * c}, -1).flatten(-2).to(dtype);
      ya.backward(g.to(dtype));
      yb.backward(g.to(dtype));
      EXPECT_TRUE(torch::equal(ya, yb)) << dtype << " head dim " << head_dim;
      EXPECT_TRUE(torch::equal(a.grad(), b.grad())) << dtype << " head dim " << head_dim;
    }
}

// A block with a frozen Linear carrying a trainable LoRA with dropout: checkpointing must give the
// same output and the same gradients for the input, the parameters and the adapter.
TEST(GradientCheckpoint, SameGradientsAsWithout) {
  torch::manual_seed(4);
  Linear fc1(6, 12, true), fc2(12, 6, false);
  for (auto& p : fc1->parameters()) p.data().normal_();
  for (auto& p : fc2->parameters()) p.data().normal_();
  fc1->weight.requires_grad_(false);
  auto state = std::make_shared<LoraState>();
  fc1->lora = std::make_shared<LoraAdapter>();
  fc1->lora->down = torch::randn({2, 6}).requires_grad_(true);
  fc1->lora->up = torch::randn({12, 2}).requires_grad_(true);
  fc1->lora->dropout = 0.3;
  fc1->lora->state = state;
  torch::nn::Sequential block(fc1, torch::nn::Functional(torch::gelu, "none"), fc2);
  BlockFn fn = [&](const std::vector<at::Tensor>& in) { return block->forward(in[0]) * in[1]; };
  auto run = [&](bool checkpointed, bool input_grad) {
    at::Tensor x = torch::randn({3, 6}, torch::TensorOptions().requires_grad(input_grad));
    at::Tensor gain = torch::full({1}, 1.5);
    for (auto& t : trainable_tensors(*block)) t.mutable_grad() = at::Tensor();
    torch::manual_seed(5);
    at::Tensor y = checkpointed ? checkpoint(fn, {x, gain}, trainable_tensors(*block)) : fn({x, gain});
    torch::randn({100});  // moves the generator between forward and backward
    y.pow(2).sum().backward();
    std::vector<at::Tensor> g = {y.detach(), fc1->lora->down.grad(), fc1->lora->up.grad(), fc1->bias.grad(), fc2->weight.grad()};
    if (input_grad) g.push_back(x.grad());
    return g;
  };
  for (bool input_grad : {true, false}) {
    torch::manual_seed(6);
    auto plain = run(false, input_grad);
    torch::manual_seed(6);
    auto ckpt = run(true, input_grad);
    ASSERT_EQ(plain.size(), ckpt.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_TRUE(ckpt[i].defined()) << i;
      EXPECT_TRUE(torch::equal(plain[i], ckpt[i])) << i << " max diff " << max_diff(plain[i], ckpt[i]);
    }
  }
}

}  // namespace
}  // namespace dt::nn
