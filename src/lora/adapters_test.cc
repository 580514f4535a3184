#include "lora/adapters.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "models/family.h"
#include "testing/lora_model.h"

namespace dt::lora {
namespace {

using testing::TinyZImage;

std::map<std::string, std::string> zimage_presets() { return family_by_name("zimage").lora_presets(); }

std::vector<std::string> all_layers(TinyZImage& m) { return select_layers(m, {}, zimage_presets()); }

// Gives every adapter a random non-zero up matrix (a trained LoRA).
void randomize_up(const Adapters& adapters, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  auto params = adapters.parameters();
  for (size_t i = 1; i < params.size(); i += 2) params[i].normal_(0, 0.05);
}

TEST(LoraAdapters, PresetsAndRegexesChooseLayers) {
  TinyZImage m;
  auto attn_mlp = select_layers(m, {"attn-mlp", {}, {}}, zimage_presets());
  EXPECT_EQ(attn_mlp.size(), 14u);  // layers.{0,1} × (q, k, v, out, w1, w2, w3)
  for (const auto& p : attn_mlp) EXPECT_EQ(p.rfind("layers.", 0), 0u) << p;
  EXPECT_EQ(select_layers(m, {"attn-only", {}, {}}, zimage_presets()).size(), 8u);
  EXPECT_EQ(select_layers(m, {"blocks", {}, {}}, zimage_presets()).size(), 16u);
  EXPECT_EQ(select_layers(m, {"full", {}, {}}, zimage_presets()).size(), 37u);
  EXPECT_EQ(all_layers(m).size(), 37u);
  // include adds to the preset, exclude removes from both
  auto chosen = select_layers(m, {"attn-only", {"refiner\\.0\\.attention\\.to_q"}, {"to_v$"}}, zimage_presets());
  EXPECT_EQ(chosen.size(), 8u - 2 + 2);
  for (const auto& p : chosen) EXPECT_EQ(p.find("to_v"), std::string::npos) << p;
  EXPECT_THROW(select_layers(m, {"no-such-preset", {}, {}}, zimage_presets()), Error);
  EXPECT_THROW(select_layers(m, {"", {"("}, {}}, zimage_presets()), Error);
  EXPECT_THROW(select_layers(m, {"", {"nothing_matches"}, {}}, zimage_presets()), Error);
}

// On the real Z-Image model through the family interface: one batch whose rows have the LoRA at
// different strengths equals the separate forwards, for every preset (embedders included).
TEST(LoraAdapters, RealModelPerSampleScaleBatch) {
  const Family& family = family_by_name("zimage");
  for (const auto& [preset, regex] : family.lora_presets()) {
    auto denoiser = family.load_transformer(std::string(DT_SHARED_DIR) + "/golden/zimage_transformer/weights", {});
    auto adapters = Adapters::create(denoiser->module(), denoiser->lora_state(),
                                     select_layers(denoiser->module(), {preset, {}, {}}, family.lora_presets()),
                                     {.rank = 4, .alpha = 4, .seed = 1});
    randomize_up(adapters, 2);
    torch::manual_seed(3);
    at::Tensor x = torch::randn({2, 16, 4, 6}), sigma = torch::tensor({0.3f, 0.8f});
    std::vector<at::Tensor> text = {torch::randn({5, 48}), torch::randn({9, 48})};
    torch::NoGradGuard no_grad;
    auto& state = denoiser->lora_state();
    state.sample_scale = torch::tensor({1.0f, 0.0f});
    at::Tensor mixed = denoiser->velocity(x, sigma, text);
    state.sample_scale = at::Tensor();
    at::Tensor on = denoiser->velocity(x.slice(0, 0, 1), sigma.slice(0, 0, 1), {text[0]});
    state.enabled = false;
    at::Tensor off = denoiser->velocity(x.slice(0, 1, 2), sigma.slice(0, 1, 2), {text[1]});
    EXPECT_TRUE(torch::allclose(mixed[0], on[0], 1e-5, 1e-5)) << preset << " " << (mixed[0] - on[0]).abs().max().item<double>();
    EXPECT_TRUE(torch::allclose(mixed[1], off[0], 1e-5, 1e-5)) << preset << " " << (mixed[1] - off[0]).abs().max().item<double>();
    EXPECT_GT((on[0] - denoiser->velocity(x.slice(0, 0, 1), sigma.slice(0, 0, 1), {text[0]})[0]).abs().max().item<double>(), 1e-3)
        << preset << ": the LoRA changes nothing";
  }
}

TEST(LoraAdapters, ZeroUpEqualsNoLoraBitwise) {
  TinyZImage m;
  at::Tensor x = torch::randn({2, 5, 64});
  at::Tensor before = m.forward(x);
  auto adapters = Adapters::create(m, m.lora_state(), all_layers(m), {.rank = 4, .alpha = 8, .seed = 1});
  EXPECT_EQ(adapters.size(), 37u);
  EXPECT_TRUE(torch::equal(m.forward(x), before));
}

TEST(LoraAdapters, InitIsSeededPerLayerKaimingUniform) {
  TinyZImage a, b;
  auto one = Adapters::create(a, a.lora_state(), all_layers(a), {.rank = 4, .seed = 7});
  auto other = Adapters::create(b, b.lora_state(), {"layers.1.feed_forward.w2"}, {.rank = 4, .seed = 7});
  // The same layer gets the same init whatever else is chosen.
  EXPECT_TRUE(torch::equal(a.linear("layers.1.feed_forward.w2")->lora->down, b.linear("layers.1.feed_forward.w2")->lora->down));
  at::Tensor down = a.linear("layers.1.feed_forward.w2")->lora->down;  // [4, 170]
  EXPECT_LE(down.abs().max().item<double>(), 1 / std::sqrt(170.0));
  EXPECT_GT(down.abs().max().item<double>(), 0.9 / std::sqrt(170.0));
  EXPECT_FALSE(torch::equal(a.linear("layers.0.feed_forward.w2")->lora->down, down.slice(1, 0, 170)));
  EXPECT_EQ(a.linear("layers.0.attention.to_q")->lora->up.abs().sum().item<double>(), 0);
  TinyZImage c;
  Adapters::create(c, c.lora_state(), {"layers.1.feed_forward.w2"}, {.rank = 4, .seed = 8});
  EXPECT_FALSE(torch::equal(c.linear("layers.1.feed_forward.w2")->lora->down, down));
  EXPECT_THROW(Adapters::create(a, a.lora_state(), {"layers.0.attention.to_q"}, {.rank = 4}), Error);  // already has one
}

TEST(LoraAdapters, OffAndPerSampleScale) {
  TinyZImage m;
  at::Tensor x = torch::randn({2, 5, 64});
  at::Tensor base = m.forward(x);
  auto adapters = Adapters::create(m, m.lora_state(), all_layers(m), {.rank = 4, .alpha = 4, .seed = 1});
  randomize_up(adapters, 3);
  at::Tensor with = m.forward(x);
  EXPECT_GT((with - base).abs().max().item<double>(), 1e-2);
  m.lora_state().enabled = false;
  EXPECT_TRUE(torch::equal(m.forward(x), base));
  m.lora_state().enabled = true;
  // One batch, row 0 with the LoRA and row 1 without, equals the two separate forwards.
  m.lora_state().sample_scale = torch::tensor({1.0f, 0.0f});
  at::Tensor mixed = m.forward(x);
  m.lora_state().sample_scale = at::Tensor();
  EXPECT_TRUE(torch::allclose(mixed[0], with[0], 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(mixed[1], base[1], 1e-6, 1e-6));
  // Against the unbatched forward only up to fp32 rounding: BLAS does not promise that a row of a
  // batched GEMM is summed in the order of the unbatched product (OpenBLAS's kernels differ with
  // the batch shape and the CPU kernel set). Reordering a sum of K ≤ 170 fp32 terms moves it by at
  // most K·2⁻²⁴ ≈ 1e-5 of its terms' magnitude (Higham's γ_K), typically √K·2⁻²⁴ ≈ 8e-7; over the
  // four blocks 2e-5 of the output's scale bounds it, while a wrong per-sample scale would move
  // row 0 by more than 1e-2 (checked above).
  at::Tensor on0 = m.forward(x.slice(0, 0, 1));
  EXPECT_LE((mixed[0] - on0[0]).abs().max().item<double>(), 2e-5 * on0.abs().max().item<double>());
  // A scale of 2 is the LoRA at double alpha.
  m.lora_state().sample_scale = torch::tensor({2.0f, 2.0f});
  at::Tensor doubled = m.forward(x);
  m.lora_state().sample_scale = at::Tensor();
  for (auto& [path, layer] : linear_layers(m)) layer->lora->alpha *= 2;
  EXPECT_TRUE(torch::allclose(doubled, m.forward(x), 1e-5, 1e-5));
}

TEST(LoraAdapters, MergedEqualsUnmerged) {
  TinyZImage m;
  at::Tensor x = torch::randn({2, 5, 64});
  at::Tensor base = m.forward(x);
  auto adapters = Adapters::create(m, m.lora_state(), select_layers(m, {"attn-mlp", {}, {}}, zimage_presets()),
                                   {.rank = 4, .alpha = 2, .seed = 1});
  randomize_up(adapters, 3);
  at::Tensor original = m.linear("layers.0.attention.to_q")->weight.clone();
  at::Tensor unmerged = m.forward(x);
  adapters.merge();
  EXPECT_FALSE(torch::equal(m.linear("layers.0.attention.to_q")->weight, original));
  at::Tensor merged = m.forward(x);
  EXPECT_TRUE(torch::allclose(merged, unmerged, 1e-5, 1e-5)) << (merged - unmerged).abs().max().item<double>();
  m.lora_state().enabled = false;
  EXPECT_THROW(m.forward(x), Error);  // a merged LoRA cannot be switched off
  m.lora_state().enabled = true;
  adapters.unmerge();
  EXPECT_TRUE(torch::allclose(m.linear("layers.0.attention.to_q")->weight, original, 0, 1e-6));
  EXPECT_TRUE(torch::allclose(m.forward(x), unmerged, 1e-6, 1e-6));
  adapters.detach();
  EXPECT_FALSE(m.linear("layers.0.attention.to_q")->lora);
  EXPECT_TRUE(torch::allclose(m.forward(x), base, 1e-6, 1e-6));
}

TEST(LoraAdapters, Fp32AdaptersOnBf16Base) {
  TinyZImage m(0, at::kBFloat16);
  auto adapters = Adapters::create(m, m.lora_state(), select_layers(m, {"attn-mlp", {}, {}}, zimage_presets()),
                                   {.rank = 4, .seed = 1});
  randomize_up(adapters, 3);
  at::Tensor out = m.forward(torch::randn({2, 5, 64}).to(at::kBFloat16));
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  out.to(at::kFloat).square().sum().backward();
  for (const auto& p : adapters.parameters()) {
    EXPECT_EQ(p.scalar_type(), at::kFloat);
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
  }
}

// d loss / d (down, up) by autograd against central finite differences, all in double.
TEST(LoraAdapters, GradientsMatchFiniteDifferences) {
  TinyZImage m(0, at::kDouble);
  for (auto& p : m.parameters()) p.requires_grad_(false);
  auto adapters = Adapters::create(m, m.lora_state(), {"layers.0.attention.to_k", "layers.1.feed_forward.w2", "all_final_layer.2-1.linear"},
                                   {.rank = 3, .alpha = 6, .seed = 2});
  torch::manual_seed(5);
  for (auto& [path, layer] : linear_layers(m))
    if (layer->lora) {
      layer->lora->down = layer->lora->down.to(at::kDouble).detach().requires_grad_(true);
      layer->lora->up = (torch::randn_like(layer->lora->up, at::kDouble) * 0.1).requires_grad_(true);
    }
  at::Tensor x = torch::randn({2, 3, 64}, at::kDouble), w = torch::randn({2, 3, 64}, at::kDouble);
  m.lora_state().sample_scale = torch::tensor({1.0, 0.5}, at::kDouble);
  auto loss = [&] { return (m.forward(x) * w).sum(); };
  loss().backward();
  const double eps = 1e-6;
  for (const auto& p : adapters.parameters()) {
    at::Tensor grad = p.grad().clone();
    auto flat = p.detach().view(-1);
    for (int64_t i : {int64_t{0}, p.numel() / 2, p.numel() - 1}) {
      const double saved = flat[i].item<double>();
      torch::NoGradGuard no_grad;
      flat[i] = saved + eps;
      const double plus = loss().item<double>();
      flat[i] = saved - eps;
      const double minus = loss().item<double>();
      flat[i] = saved;
      const double numeric = (plus - minus) / (2 * eps), analytic = grad.view(-1)[i].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << "element " << i;
    }
  }
}

TEST(LoraAdapters, StateDictRoundTripAndMismatch) {
  TinyZImage a, b;
  auto layers = select_layers(a, {"attn-only", {}, {}}, zimage_presets());
  auto trained = Adapters::create(a, a.lora_state(), layers, {.rank = 4, .alpha = 3, .seed = 1});
  randomize_up(trained, 9);
  auto fresh = Adapters::create(b, b.lora_state(), layers, {.rank = 4, .alpha = 1, .seed = 2});
  NamedTensors state = trained.state_dict();
  ASSERT_EQ(state.size(), 3 * layers.size());
  EXPECT_EQ(state[0].first, "layers.0.attention.to_q.lora_down.weight");
  fresh.load_state_dict(state);
  at::Tensor x = torch::randn({1, 4, 64});
  EXPECT_TRUE(torch::equal(a.forward(x), b.forward(x)));
  state.emplace_back("layers.0.attention.to_z.lora_down.weight", torch::zeros({4, 64}));
  state[1].second = torch::zeros({64, 5});
  try {
    fresh.load_state_dict(state);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.attention.to_z.lora_down.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("layers.0.attention.to_q.lora_up.weight (shape"), std::string::npos) << e.what();
  }
}

TEST(LoraAdapters, AttachRefusesWhatDoesNotFit) {
  TinyZImage m;
  LoraWeights w;
  w.modules.push_back({"layers.0.attention.to_q", torch::randn({2, 64}), torch::randn({64, 2}), 2});
  w.modules.push_back({"layers.0.attention.to_z", torch::randn({2, 64}), torch::randn({64, 2}), 2});
  w.modules.push_back({"layers.0.feed_forward.w1", torch::randn({2, 64}), torch::randn({64, 2}), 2});
  try {
    Adapters::attach(m, m.lora_state(), w);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.attention.to_z (no such Linear layer)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("layers.0.feed_forward.w1 (LoRA 64x64, layer 170x64)"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(m.linear("layers.0.attention.to_q")->lora);  // nothing attached
  w.modules.resize(1);
  auto adapters = Adapters::attach(m, m.lora_state(), w, 0.5);
  ASSERT_EQ(adapters.size(), 1u);
  EXPECT_DOUBLE_EQ(m.linear("layers.0.attention.to_q")->lora->alpha, 1.0);
  auto back = adapters.weights("zimage");
  EXPECT_TRUE(torch::equal(back.modules[0].up, w.modules[0].up));
}

}  // namespace
}  // namespace dt::lora
