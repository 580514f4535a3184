#include "lora/file.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "lora/adapters.h"
#include "models/zimage/weights.h"
#include "testing/families.h"
#include "testing/lora_model.h"
#include "testing/support.h"

namespace dt::lora {
namespace {

const std::string kDir = std::string(DT_SHARED_DIR) + "/golden/zimage_lora/";

std::string temp(const std::string& name) { return (std::filesystem::temp_directory_path() / ("dt_lora_" + name)).string(); }

// Module name → weight delta.
std::map<std::string, at::Tensor> deltas(const LoraWeights& w) {
  std::map<std::string, at::Tensor> out;
  for (const auto& m : w.modules) out[m.name] = delta(m);
  return out;
}

void expect_same_deltas(const LoraWeights& a, const LoraWeights& b, double tol, const std::string& what) {
  auto da = deltas(a), db = deltas(b);
  ASSERT_EQ(da.size(), db.size()) << what;
  for (const auto& [name, d] : da) {
    ASSERT_TRUE(db.count(name)) << what << ": " << name;
    EXPECT_LE((d - db.at(name)).abs().max().item<double>(), tol) << what << ": " << name;
  }
}

const char* const kGoldenFiles[] = {"onetrainer", "onetrainer-diffusers", "peft",          "kohya",      "comfyui",
                                    "aitoolkit",  "original",             "comfyui-fused", "kohya-fused"};

// The golden files all encode one delta; read through each layout's rules they must agree.
TEST(LoraFiles, GoldenLayoutsReadToTheSameDelta) {
  const auto& keys = dt::testing::key_map("zimage");
  testing::TinyZImage model;
  LoraWeights reference = read_lora(kDir + "lora.original.safetensors", keys, &model);
  ASSERT_EQ(reference.modules.size(), 16u);
  EXPECT_DOUBLE_EQ(reference.find("layers.0.attention.to_q")->scale(), 0.5);
  EXPECT_DOUBLE_EQ(reference.find("layers.0.feed_forward.w2")->scale(), 0.25);
  EXPECT_DOUBLE_EQ(reference.find("noise_refiner.0.feed_forward.w2")->scale(), 2);
  const std::map<std::string, std::string> layout = {
      {"onetrainer", "onetrainer"}, {"onetrainer-diffusers", "peft"}, {"peft", "peft"},
      {"kohya", "kohya"},           {"comfyui", "comfyui"},           {"aitoolkit", "aitoolkit"},
      {"original", "original"},     {"comfyui-fused", "comfyui-native"}, {"kohya-fused", "kohya"}};
  for (const char* name : kGoldenFiles) {
    LoraWeights w = read_lora(kDir + "lora." + name + ".safetensors", keys, &model);
    EXPECT_EQ(w.format, layout.at(name)) << name;
    expect_same_deltas(w, reference, 1e-6, name);
    // The family is found from the names alone.
    EXPECT_EQ(read_lora(kDir + "lora." + name + ".safetensors", dt::testing::all_key_maps()).family, "zimage") << name;
  }
  // The compact split of a block-diagonal fused qkv restores rank 4 and alpha 2.
  LoraWeights fused = read_lora(kDir + "lora.kohya-fused.safetensors", keys);
  EXPECT_EQ(fused.find("layers.1.attention.to_v")->rank(), 4);
  EXPECT_DOUBLE_EQ(fused.find("layers.1.attention.to_v")->alpha, 2);
  LoraWeights second = read_lora(kDir + "second.peft.safetensors", keys, &model);
  EXPECT_EQ(second.modules.size(), 16u);
  for (const auto& m : second.modules) EXPECT_DOUBLE_EQ(m.scale(), 0.5) << m.name;
}

// A random LoRA with mixed ranks and alphas, q/k/v partly covered, on the tiny model's layers.
LoraWeights random_lora() {
  torch::manual_seed(11);
  LoraWeights w;
  w.family = "zimage";
  auto add = [&](const std::string& name, int64_t in, int64_t out, int64_t rank, double alpha) {
    w.modules.push_back({name, torch::randn({rank, in}), torch::randn({out, rank}) * 0.1, alpha});
  };
  add("layers.0.attention.to_q", 64, 64, 4, 2);
  add("layers.0.attention.to_k", 64, 64, 4, 2);
  add("layers.0.attention.to_v", 64, 64, 4, 2);
  add("layers.1.attention.to_q", 64, 64, 2, 8);  // alone in its qkv, other scale
  add("layers.1.attention.to_v", 64, 64, 3, 1);
  add("layers.1.attention.to_out.0", 64, 64, 4, 4);
  add("layers.1.feed_forward.w2", 170, 64, 5, 3);
  add("all_x_embedder.2-1", 64, 64, 4, 4);
  add("all_final_layer.2-1.adaLN_modulation.1", 64, 64, 2, 1);
  add("noise_refiner.0.adaLN_modulation.0", 64, 256, 4, 16);
  std::sort(w.modules.begin(), w.modules.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return w;
}

TEST(LoraFiles, EveryFormatRoundTrips) {
  const auto& keys = dt::testing::key_map("zimage");
  testing::TinyZImage model;
  LoraWeights lora = random_lora();
  for (Format f : {Format::comfyui, Format::comfyui_native, Format::peft, Format::kohya, Format::onetrainer,
                   Format::original, Format::aitoolkit}) {
    const std::string path = temp(std::string(format_name(f)) + ".safetensors");
    write_lora(path, lora, keys, {.format = f, .base_model = "tiny"});
    LoraWeights back = read_lora(path, keys, &model);
    EXPECT_EQ(back.format, format_name(f));
    expect_same_deltas(back, lora, 1e-6, format_name(f));
    EXPECT_EQ(back.metadata.at("deltatrain.base_model"), "tiny");
    EXPECT_EQ(back.metadata.at("modelspec.architecture"), "Z-Image/lora");
    // bf16 storage keeps the delta to bf16 precision.
    write_lora(path, lora, keys, {.format = f, .dtype = at::kBFloat16});
    auto file = SafetensorsFile::open(path);
    for (const auto& info : file->tensors())
      EXPECT_EQ(info.dtype, info.name.find(".alpha") == std::string::npos ? "BF16" : "F32") << info.name;
    expect_same_deltas(read_lora(path, keys, &model), lora, 2e-2, std::string(format_name(f)) + " bf16");
    std::filesystem::remove(path);
  }
}

// Conversion between layouts (read one, write another) keeps what the LoRA does to the model.
TEST(LoraFiles, ConversionPreservesTheMergedDelta) {
  const auto& keys = dt::testing::key_map("zimage");
  testing::TinyZImage direct(3), converted(3);
  const std::string source = kDir + "lora.kohya.safetensors";
  merge_lora_files(direct, keys, {{source, 0.75}});
  LoraWeights w = read_lora(source, keys);
  const std::string a = temp("conv_a.safetensors"), b = temp("conv_b.safetensors");
  write_lora(a, w, keys, {.format = Format::comfyui_native});  // fuses q/k/v into rank-12 qkv
  write_lora(b, read_lora(a, keys), keys, {.format = Format::peft});
  merge_lora_files(converted, keys, {{b, 0.75}});
  for (auto& [path, layer] : linear_layers(direct))
    EXPECT_TRUE(torch::allclose(layer->weight, converted.linear(path)->weight, 0, 1e-6)) << path;
  at::Tensor x = torch::randn({1, 3, 64});
  EXPECT_TRUE(torch::allclose(direct.forward(x), converted.forward(x), 1e-5, 1e-5));
  std::filesystem::remove(a);
  std::filesystem::remove(b);
}

TEST(LoraFiles, PeftPatternsAndRslora) {
  const std::string path = temp("pattern.safetensors");
  torch::manual_seed(1);
  NamedTensors t = {{"transformer.layers.0.attention.to_q.lora_A.weight", torch::randn({4, 64})},
                    {"transformer.layers.0.attention.to_q.lora_B.weight", torch::randn({64, 4})},
                    {"transformer.layers.1.attention.to_q.lora_A.weight", torch::randn({2, 64})},
                    {"transformer.layers.1.attention.to_q.lora_B.weight", torch::randn({64, 2})}};
  // The first matching key wins, in the JSON's order (not sorted): "to_q" before "layers.0.attention.to_q".
  write_safetensors(path, t, {{"lora_adapter_metadata", R"({"r": 4, "lora_alpha": 8, "rank_pattern": {"layers.1.attention.to_q": 2},
      "alpha_pattern": {"to_q": 2, "layers.0.attention.to_q": 16}})"}});
  LoraWeights w = read_lora(path, dt::testing::key_map("zimage"));
  EXPECT_DOUBLE_EQ(w.find("layers.0.attention.to_q")->scale(), 0.5);
  EXPECT_DOUBLE_EQ(w.find("layers.1.attention.to_q")->scale(), 1.0);
  write_safetensors(path, t, {{"lora_adapter_metadata", R"({"r": 4, "lora_alpha": 8, "use_rslora": true, "rank_pattern": {"layers.1.attention.to_q": 2}})"}});
  w = read_lora(path, dt::testing::key_map("zimage"));
  EXPECT_DOUBLE_EQ(w.find("layers.0.attention.to_q")->scale(), 4.0);
  EXPECT_DOUBLE_EQ(w.find("layers.1.attention.to_q")->scale(), 8 / std::sqrt(2.0));
  write_safetensors(path, t, {{"lora_adapter_metadata", R"({"r": 4, "lora_alpha": 8, "alpha_pattern": {"to_q(": 1}})"}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, dt::testing::key_map("zimage")); }).find(path + ": lora_adapter_metadata: bad regular expression"), std::string::npos);
  write_safetensors(path, t, {{"lora_adapter_metadata", R"({"r": 4, "lora_alpha": 8})"}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, dt::testing::key_map("zimage")); }).find("layers.1.attention.to_q: rank 2 in the tensors but 4"), std::string::npos);
  std::filesystem::remove(path);
}

// A PEFT adapter folder (adapter_model.safetensors + adapter_config.json, as PEFT's save_pretrained
// writes it): rank, alpha and target modules come from the config; a file whose own alpha
// conflicts with it, a module outside target_modules or another rank is an error, not a guess.
TEST(LoraFiles, PeftAdapterConfigBesideTheFile) {
  const std::filesystem::path dir = temp("adapter_folder");
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "adapter_model.safetensors").string(), config = (dir / "adapter_config.json").string();
  torch::manual_seed(2);
  NamedTensors t = {{"base_model.model.layers.0.attention.to_q.lora_A.weight", torch::randn({4, 64})},
                    {"base_model.model.layers.0.attention.to_q.lora_B.weight", torch::randn({64, 4})},
                    {"base_model.model.layers.1.feed_forward.w2.lora_A.weight", torch::randn({4, 170})},
                    {"base_model.model.layers.1.feed_forward.w2.lora_B.weight", torch::randn({64, 4})}};
  write_safetensors(path, t);
  testing::TinyZImage model;
  EXPECT_DOUBLE_EQ(read_lora(path, dt::testing::key_map("zimage"), &model).find("layers.0.attention.to_q")->scale(), 1.0);  // no config: scale 1
  write_file_atomic(config, R"({"peft_type": "LORA", "r": 4, "lora_alpha": 2, "target_modules": ["to_q", "w2", "to_k"]})");
  LoraWeights w = read_lora(path, dt::testing::key_map("zimage"), &model);
  EXPECT_EQ(w.format, "peft");
  ASSERT_EQ(w.modules.size(), 2u);
  for (const auto& m : w.modules) EXPECT_DOUBLE_EQ(m.scale(), 0.5) << m.name;
  const at::Tensor want = torch::mm(t[1].second, t[0].second) * 0.5;
  EXPECT_TRUE(torch::allclose(delta(*w.find("layers.0.attention.to_q")), want, 1e-6, 1e-6));
  // target_modules as a regex over the whole name.
  write_file_atomic(config, R"json({"r": 4, "lora_alpha": 8, "target_modules": "layers\\.\\d+\\.(attention\\.to_q|feed_forward\\.w2)"})json");
  EXPECT_DOUBLE_EQ(read_lora(path, dt::testing::key_map("zimage")).find("layers.1.feed_forward.w2")->scale(), 2.0);
  // A module the config does not target.
  write_file_atomic(config, R"({"r": 4, "lora_alpha": 2, "target_modules": ["to_q"]})");
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, dt::testing::key_map("zimage")); })
                .find(path + ": layers.1.feed_forward.w2 is not among the target_modules of the adapter_config.json beside it"),
            std::string::npos);
  // Another rank.
  write_file_atomic(config, R"({"r": 8, "lora_alpha": 2})");
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, dt::testing::key_map("zimage")); }).find("rank 4 in the tensors but 8 in adapter_config.json"),
            std::string::npos);
  // The file's own alpha (tensors, or lora_adapter_metadata) must agree with the config's.
  NamedTensors with_alpha = t;
  with_alpha.push_back({"base_model.model.layers.0.attention.to_q.alpha", torch::tensor(2.0f)});
  with_alpha.push_back({"base_model.model.layers.1.feed_forward.w2.alpha", torch::tensor(2.0f)});
  write_safetensors(path, with_alpha);
  write_file_atomic(config, R"({"r": 4, "lora_alpha": 2})");
  EXPECT_DOUBLE_EQ(read_lora(path, dt::testing::key_map("zimage")).find("layers.0.attention.to_q")->scale(), 0.5);
  write_file_atomic(config, R"({"r": 4, "lora_alpha": 8})");
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, dt::testing::key_map("zimage")); })
                .find("layers.0.attention.to_q: the file gives alpha 2 (scale 0.5), the adapter_config.json beside it 8 (scale 2)"),
            std::string::npos);
  write_safetensors(path, t, {{"lora_adapter_metadata", R"({"r": 4, "lora_alpha": 4})"}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, dt::testing::key_map("zimage")); }).find("the file gives alpha 4 (scale 1)"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(LoraFiles, UnknownKeysAndWrongShapesAreListed) {
  const auto& keys = dt::testing::key_map("zimage");
  testing::TinyZImage model;
  const std::string path = temp("bad.safetensors");
  NamedTensors t = {{"diffusion_model.layers.0.attention.to_q.lora_A.weight", torch::randn({4, 64})},
                    {"diffusion_model.layers.0.attention.to_q.lora_B.weight", torch::randn({64, 4})},
                    {"diffusion_model.layers.0.attention.to_z.lora_A.weight", torch::randn({4, 64})},
                    {"diffusion_model.layers.0.attention.to_z.lora_B.weight", torch::randn({64, 4})},
                    {"lora_unet_layers_0_feed_forward_w9.lora_down.weight", torch::randn({4, 64})},
                    {"lora_unet_layers_0_feed_forward_w9.lora_up.weight", torch::randn({64, 4})}};
  write_safetensors(path, t);
  std::string e = dt::testing::error_of([&] { read_lora(path, keys, &model); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("diffusion_model.layers.0.attention.to_z.lora_A.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("lora_unet_layers_0_feed_forward_w9.lora_down.weight"), std::string::npos) << e;
  EXPECT_EQ(e.find("to_q"), std::string::npos) << e;
  // Right names, wrong shapes (w1 is 64 → 170).
  write_safetensors(path, {{"layers.0.feed_forward.w1.lora_A.weight", torch::randn({4, 64})},
                           {"layers.0.feed_forward.w1.lora_B.weight", torch::randn({64, 4})},
                           {"layers.0.attention.to_k.lora_A.weight", torch::randn({4, 63})},
                           {"layers.0.attention.to_k.lora_B.weight", torch::randn({64, 4})}});
  e = dt::testing::error_of([&] { read_lora(path, keys, &model); });
  EXPECT_NE(e.find("layers.0.feed_forward.w1 (LoRA 64x64, layer 170x64)"), std::string::npos) << e;
  EXPECT_NE(e.find("layers.0.attention.to_k (LoRA 64x63, layer 64x64)"), std::string::npos) << e;
  // A refused file changes nothing.
  at::Tensor before = model.linear("layers.0.feed_forward.w1")->weight.clone();
  EXPECT_THROW(merge_lora_files(model, keys, {{path, 1.0}}), Error);
  EXPECT_TRUE(torch::equal(model.linear("layers.0.feed_forward.w1")->weight, before));
  // Other adapter kinds, half modules, stray tensors.
  write_safetensors(path, {{"layers.0.attention.to_q.lora_A.weight", torch::randn({4, 64})},
                           {"layers.0.attention.to_q.lora_B.weight", torch::randn({64, 4})},
                           {"layers.0.attention.to_q.dora_scale", torch::randn({64, 1})}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, keys); }).find("not supported: layers.0.attention.to_q.dora_scale"), std::string::npos);
  write_safetensors(path, {{"layers.0.attention.to_q.lora_A.weight", torch::randn({4, 64})}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, keys); }).find("layers.0.attention.to_q (no up/lora_B)"), std::string::npos);
  write_safetensors(path, {{"layers.0.attention.to_q.weight", torch::randn({64, 64})}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, keys); }).find("not part of a LoRA: layers.0.attention.to_q.weight"), std::string::npos);
  write_safetensors(path, {{"layers.0.attention.to_q.lora_A.weight", torch::randn({4, 64})},
                           {"layers.0.attention.to_q.lora_B.weight", torch::randn({64, 3})}});
  EXPECT_NE(dt::testing::error_of([&] { read_lora(path, keys); }).find("malformed"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(LoraFiles, DescribeSaysFormatRankAlphaTargetsFamily) {
  std::string text = describe_lora(Checkpoint::open(kDir + "lora.kohya-fused.safetensors"), dt::testing::all_key_maps());
  EXPECT_EQ(text, "kohya format, fits zimage, 16 targets, rank 4, alpha 1, 2, 8");
  text = describe_lora(Checkpoint::open(kDir + "lora.aitoolkit.safetensors"), dt::testing::all_key_maps());
  EXPECT_NE(text.find("aitoolkit format"), std::string::npos) << text;
  EXPECT_NE(text.find("none stored"), std::string::npos) << text;
  text = describe_lora(Checkpoint::open(kDir + "second.peft.safetensors"), dt::testing::all_key_maps());
  EXPECT_EQ(text, "peft format, fits zimage, 16 targets, rank 6, alpha 3 (from lora_adapter_metadata)");
  EXPECT_EQ(describe_lora(Checkpoint::open(std::string(DT_SHARED_DIR) + "/golden/zimage_transformer/weights"), dt::testing::all_key_maps()), "");
}

// The real Z-Image model exposes each Linear once, under its diffusers name.
TEST(LoraFiles, ZImageModelLayersAreTheKeyMapNames) {
  auto model = zimage::load_transformer(std::string(DT_SHARED_DIR) + "/golden/zimage_transformer/weights", LoadOptions{});
  testing::TinyZImage tiny;
  std::vector<std::string> real, expected;
  for (auto& [path, layer] : linear_layers(*model)) real.push_back(path);
  for (auto& [path, layer] : linear_layers(tiny)) expected.push_back(path);
  std::sort(real.begin(), real.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(real, expected);
  for (const auto& path : real) EXPECT_TRUE(resolve(dt::testing::key_map("zimage"), path, false)) << path;
}

}  // namespace
}  // namespace dt::lora
