// 8-bit weights against the format's definition and the layer they replace.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <tuple>

#include "core/error.h"
#include "nn/linear.h"
#include "nn/load_state.h"
#include "nn/weights_8bit.h"
#include "testing/fp8.h"

namespace dt::nn {
namespace {

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / b.to(at::kDouble).abs().max().item<double>();
}

// The 254 finite codes (every code but the NaNs 0x7F and 0xFF).
at::Tensor finite_codes() {
  const at::Tensor all = at::arange(256, at::kInt);
  return all.index({all.bitwise_and(0x7F).ne(0x7F)}).to(at::kByte);
}

TEST(E4m3, DecodeGivesEveryCodesValue) {
  const at::Tensor codes = finite_codes();
  const at::Tensor want = testing::e4m3_values().index_select(0, codes.to(at::kLong));
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor got = e4m3_decode(codes, dtype);
    EXPECT_EQ(got.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(got.to(at::kFloat), want));
    EXPECT_TRUE(torch::equal(got.to(at::kFloat).signbit(), want.signbit()));  // −0 stays −0
  }
  // Subnormals, the smallest normal and the largest value, by the definition.
  const at::Tensor some = e4m3_decode(torch::tensor({0x01, 0x07, 0x08, 0x7E, 0xFE}, at::kByte), at::kFloat);
  EXPECT_TRUE(torch::equal(some, torch::tensor({std::ldexp(1.0f, -9), 7 * std::ldexp(1.0f, -9), std::ldexp(1.0f, -6), 448.0f, -448.0f})));
}

TEST(E4m3, EncodeIsNearestWithTiesToEvenAndSaturates) {
  const at::Tensor codes = finite_codes();
  const at::Tensor values = e4m3_decode(codes, at::kFloat);
  // Every value encodes to its own code (−0 to +0).
  at::Tensor own = codes.clone();
  own.index_put_({codes.eq(0x80)}, 0);
  EXPECT_TRUE(torch::equal(e4m3_encode(values), own));
  // Random values against the brute-force nearest code, compared as values (which of ±0 a tiny
  // negative value gets is the only freedom; ties have probability zero here).
  torch::manual_seed(3);
  const at::Tensor x = torch::randn({4000}) * torch::pow(2.0, torch::randint(-12, 10, {4000}).to(at::kFloat));
  const at::Tensor clamped = x.clamp(-448, 448);
  EXPECT_TRUE(torch::equal(e4m3_decode(e4m3_encode(clamped), at::kFloat), e4m3_decode(testing::e4m3_encode(clamped), at::kFloat)));
  // Midpoints: 1.0 (0x38) and 1.125 (0x39) → the even 0x38; 1.125 and 1.25 (0x3A) → 0x3A;
  // just above a midpoint → the upper code; the subnormal midpoint 2⁻¹⁰ → 0x00 and 3·2⁻¹⁰ → 0x02.
  const at::Tensor probes = torch::tensor({1.0625f, 1.1875f, std::nextafter(1.0625f, 2.0f), -1.0625f, std::ldexp(1.0f, -10),
                                           3 * std::ldexp(1.0f, -10), 460.0f, 1e9f, -1e9f});
  EXPECT_TRUE(torch::equal(e4m3_encode(probes), torch::tensor({0x38, 0x3A, 0x39, 0xB8, 0x00, 0x02, 0x7E, 0x7E, 0xFE}, at::kByte)));
  EXPECT_THROW(e4m3_encode(torch::tensor({1.0f, NAN})), Error);
  EXPECT_THROW(e4m3_encode(torch::tensor({INFINITY})), Error);
}

TEST(RowQuantized, ErrorsStayWithinHalfAStepOfEachRow) {
  torch::manual_seed(5);
  at::Tensor w = torch::randn({12, 40}) * torch::linspace(0.01, 3.0, 12).unsqueeze(1);
  w[3].zero_();
  w[5][7] = 50;  // an outlier sets its row's scale alone
  {
    const RowQuantized q = quantize_rows(w, WeightFormat::int8);
    EXPECT_EQ(q.codes.scalar_type(), at::kChar);
    EXPECT_TRUE(torch::equal(q.scale.index({torch::tensor({3})}), torch::ones({1})));  // a zero row keeps scale 1, codes 0
    EXPECT_TRUE(q.codes.abs().amax(1).index({torch::tensor({0, 1, 5, 11})}).eq(127).all().item<bool>());
    const at::Tensor err = (dequantize_rows(q.codes, q.scale) - w).abs();
    EXPECT_TRUE(err.le(q.scale.unsqueeze(1) * 0.5 * (1 + 1e-6)).all().item<bool>());
  }
  {
    const RowQuantized q = quantize_rows(w.to(at::kBFloat16), WeightFormat::fp8);
    EXPECT_EQ(q.codes.scalar_type(), at::kByte);
    const at::Tensor wb = w.to(at::kBFloat16).to(at::kFloat);
    const at::Tensor amax = wb.abs().amax(1), rows = amax.gt(0);
    EXPECT_TRUE(torch::allclose(q.scale.index({rows}), amax.index({rows}) / 448));
    // E4M3 steps are 2^(e−3) for values in [2^e, 2^(e+1)) and 2⁻⁹ below 2⁻⁶: half a step is at most
    // 2⁻⁴ of the value or 2⁻¹⁰.
    const at::Tensor scaled = wb / q.scale.unsqueeze(1);
    const at::Tensor err = (e4m3_decode(q.codes, at::kFloat) - scaled).abs();
    EXPECT_TRUE(err.le(torch::maximum(scaled.abs() * std::ldexp(1.0, -4), torch::full_like(scaled, std::ldexp(1.0, -10)))).all().item<bool>());
  }
  EXPECT_THROW(quantize_rows(torch::tensor({{1.0f, NAN}}), WeightFormat::int8), Error);
  EXPECT_THROW(weight_format_by_name("int4", "model.weight_dtype"), Error);
  EXPECT_EQ(weight_format_by_name("", "model.weight_dtype"), WeightFormat::dense);
}

// An 8-bit layer computes what a full-precision layer with its dequantized weight computes, in fp32
// to rounding and in bf16 to bf16's bound; its input and LoRA gradients likewise.
TEST(Linear8bit, EqualsTheDenseLayerOfItsDequantizedWeight) {
  for (const WeightFormat format : {WeightFormat::int8, WeightFormat::fp8}) {
    torch::manual_seed(9);
    Linear eight(24, 16, true), dense(24, 16, true);
    {
      torch::NoGradGuard no_grad;
      eight->weight.copy_(torch::randn({16, 24}) * 0.2);
      eight->bias.copy_(torch::randn({16}));
      dense->bias.copy_(eight->bias);
    }
    eight->store_8bit(format);
    EXPECT_TRUE(eight->is_8bit());
    EXPECT_FALSE(eight->weight.requires_grad());
    EXPECT_EQ(eight->weight.sizes(), (c10::IntArrayRef{16, 24}));
    EXPECT_EQ(eight->named_buffers().size(), 1u);  // weight_scale
    EXPECT_THROW(eight->store_8bit(format), Error);
    {
      torch::NoGradGuard no_grad;
      dense->weight.copy_(dequantize_rows(eight->weight, eight->weight_scale));
    }
    auto state = std::make_shared<LoraState>();
    for (Linear* l : {&eight, &dense}) {
      torch::manual_seed(2);
      (*l)->lora = std::make_shared<LoraAdapter>();
      (*l)->lora->down = (torch::randn({4, 24}) * 0.1).requires_grad_(true);
      (*l)->lora->up = (torch::randn({16, 4}) * 0.1).requires_grad_(true);
      (*l)->lora->state = state;
    }
    dense->weight.requires_grad_(false);
    dense->bias.requires_grad_(false);
    eight->bias.requires_grad_(false);
    const at::Tensor x = torch::randn({3, 5, 24});
    auto run = [&](Linear& l, c10::ScalarType dtype) {
      l->lora->down.mutable_grad() = at::Tensor();
      l->lora->up.mutable_grad() = at::Tensor();
      if (dtype != at::kFloat) l->bias.set_data(l->bias.to(dtype));
      if (dtype != at::kFloat && !l->is_8bit()) l->weight.set_data(l->weight.to(dtype));
      const at::Tensor xi = x.to(dtype).detach().clone().requires_grad_(true);
      const at::Tensor y = l->forward(xi);
      EXPECT_EQ(y.scalar_type(), dtype);
      y.to(at::kFloat).pow(2).sum().backward();
      return std::vector<at::Tensor>{y.detach().to(at::kFloat), xi.grad().to(at::kFloat), l->lora->down.grad(), l->lora->up.grad()};
    };
    const auto want = run(dense, at::kFloat), got = run(eight, at::kFloat);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_LT(max_rel_diff(got[i], want[i]), 1e-5) << weight_format_name(format) << " " << i;
    const auto got16 = run(eight, at::kBFloat16);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_LT(max_rel_diff(got16[i], want[i]), 0.03) << weight_format_name(format) << " bf16 " << i;
  }
}

TEST(Linear8bit, StoreNamesTheLayerWithNonFiniteWeights) {
  torch::nn::Sequential root;
  Linear good(4, 4, false), bad(4, 4, false);
  {
    torch::NoGradGuard no_grad;
    good->weight.fill_(1);
    bad->weight.fill_(NAN);
  }
  root->push_back("good", good);
  root->push_back("bad", bad);
  try {
    store_linears_8bit(*root, WeightFormat::int8);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'bad'"), std::string::npos) << e.what();
  }
}

// Layers declared 8-bit before a load take their codes from load_state: E4M3 codes and row scales
// as they are into an fp8 layer, the values quantized into an int8 one (as store_8bit would), and
// the scales are not looked for in the file. NaN codes and non-finite scales name the tensor.
TEST(Linear8bit, DeclaredLayersLoadTheirCodes) {
  Linear plain(5, 3, false);
  EXPECT_THROW(plain->load_8bit(at::zeros({3, 5})), Error);  // nothing declared
  plain->expect_8bit(WeightFormat::int8);
  EXPECT_THROW(plain->expect_8bit(WeightFormat::int8), Error);

  torch::nn::Sequential mixed;
  Linear a(5, 3, true), b(5, 3, false);
  mixed->push_back("a", a);
  mixed->push_back("b", b);
  a->expect_8bit(WeightFormat::fp8);
  b->expect_8bit(WeightFormat::int8);
  const at::Tensor codes = finite_codes().narrow(0, 40, 15).reshape({3, 5}), scale = at::tensor({0.5f, 2.0f, 0.125f});
  const at::Tensor values = at::randn({3, 5}), bias = at::randn({3});
  std::map<std::string, StoredTensor> tensors = {{"a.weight", {codes, scale}}, {"a.bias", bias}, {"b.weight", values}};
  load_state(*mixed, tensors, "file.safetensors", c10::kCPU, at::kFloat);
  EXPECT_TRUE(torch::equal(a->weight, codes));
  EXPECT_TRUE(torch::equal(a->weight_scale, scale));
  EXPECT_TRUE(torch::equal(a->bias, bias));
  const RowQuantized q = quantize_rows(values, WeightFormat::int8);
  EXPECT_TRUE(torch::equal(b->weight, q.codes));
  EXPECT_TRUE(torch::equal(b->weight_scale, q.scale));
  // An E4M3 weight into an int8 layer: its values (code value × row scale) quantized.
  tensors["b.weight"] = StoredTensor(codes, scale);
  load_state(*mixed, tensors, "file.safetensors", c10::kCPU, at::kFloat);
  // Codes alone would not notice a lost row scale (quantizing a row is scale-invariant); its scale does.
  const RowQuantized from_e4m3 = quantize_rows(e4m3_decode(codes, at::kFloat) * scale.unsqueeze(1), WeightFormat::int8);
  EXPECT_TRUE(torch::equal(b->weight, from_e4m3.codes));
  EXPECT_TRUE(torch::equal(b->weight_scale, from_e4m3.scale));

  for (const auto& [bad_codes, bad_scale, what] :
       {std::tuple{codes.clone().index_fill_(1, at::tensor({int64_t{2}}), 0x7F), scale, "NaN codes"},
        {codes, at::tensor({0.5f, NAN, 1.0f}), "scale is not finite"}}) {
    tensors["a.weight"] = StoredTensor(bad_codes, bad_scale);
    try {
      load_state(*mixed, tensors, "file.safetensors", c10::kCPU, at::kFloat);
      FAIL() << what;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("file.safetensors"), std::string::npos) << m;
      EXPECT_NE(m.find("'a.weight'"), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  }
}

}  // namespace
}  // namespace dt::nn
