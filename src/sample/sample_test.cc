#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "io/atomic_file.h"
#include "lora/adapters.h"
#include "lora/file.h"
#include "models/flux2/family.h"
#include "models/flux2/tiny.h"
#include "models/zimage/config.h"
#include "models/zimage/family.h"
#include "models/zimage/weights.h"
#include "sample/generate.h"
#include "sample/sampler.h"
#include "testing/device.h"
#include "testing/families.h"
#include "testing/tiny_models.h"
#include "train/tensorboard.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("dt_sample_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A tiny real Z-Image transformer on disk (the golden's sizes).
struct TinyTransformer {
  fs::path dir;
  std::unique_ptr<Denoiser> model;
  explicit TinyTransformer(const std::string& name) : dir(temp_dir(name)) {
    zimage::write_random_checkpoint((dir / "transformer").string(), testing::golden_sized_zimage(), 3);
    model = zimage_family().load_transformer(dir.string(), testing::test_load_options());
  }
  ~TinyTransformer() { fs::remove_all(dir); }
};

// Caption features of the tiny model, one per "prompt".
PromptFeatures features(std::initializer_list<std::string> prompts) {
  PromptFeatures out;
  uint64_t seed = 7;
  for (const std::string& p : prompts) out[p] = sample_noise(seed++, {5, 48});
  return out;
}

SamplePrompt prompt(const std::string& text, int64_t steps, double cfg, const std::string& negative = "") {
  SamplePrompt p;
  p.prompt = text;
  p.negative_prompt = negative;
  p.seed = 11;
  p.width = p.height = 64;
  p.steps = steps;
  p.cfg = cfg;
  return p;
}

TEST(Sampler, EulerStepIsHandComputed) {
  const at::Tensor x = torch::tensor({1.0f, 2.0f, -3.0f}), v = torch::tensor({4.0f, -8.0f, 0.5f});
  // x + (σ_next − σ)·v with σ = 0.75 → 0.5: 1 − 1, 2 + 2, −3 − 0.125.
  EXPECT_TRUE(torch::equal(euler_step(x, v, 0.75, 0.5), torch::tensor({0.0f, 4.0f, -3.125f})));
  // Standard CFG: w = 1 is the conditional prediction, w = 0 the unconditional one, w = 3 extrapolates.
  const at::Tensor pos = torch::tensor({1.0f, -2.0f}), neg = torch::tensor({0.5f, 1.0f});
  EXPECT_TRUE(torch::allclose(guided_velocity(pos, neg, 1.0), pos, 0, 1e-7));
  EXPECT_TRUE(torch::allclose(guided_velocity(pos, neg, 0.0), neg, 0, 1e-7));
  EXPECT_TRUE(torch::allclose(guided_velocity(pos, neg, 3.0), torch::tensor({2.0f, -8.0f}), 0, 1e-6));
  // Each family's own convention: Z-Image g ↦ w = 1 + g (CFG iff g > 0), FLUX.2 w as is.
  EXPECT_EQ(cfg_weight(zimage_family(), 0.0), 1.0);
  EXPECT_EQ(cfg_weight(zimage_family(), 4.0), 5.0);
  EXPECT_EQ(cfg_weight(flux2_family(), 4.0), 4.0);
}

// The first Turbo step on the real tiny transformer, against the spec's conventions applied by
// hand to its raw output: τ = 1 − σ, v = −o, x ← x + (σ1 − σ0)·v with σ1 = 3·(7/8) / (1 + 2·(7/8)).
TEST(Sampler, FirstTurboStepMatchesHandComputedEuler) {
  TinyTransformer tiny("step");
  const std::vector<double> sigmas = zimage_family().sigmas(8, 64, 64);
  ASSERT_EQ(sigmas.size(), 9u);
  EXPECT_DOUBLE_EQ(sigmas[0], 1.0);
  EXPECT_NEAR(sigmas[1], 21.0 / 22.0, 1e-15);
  EXPECT_EQ(sigmas[8], 0.0);

  const PromptFeatures f = features({"a"});
  const at::Tensor noise = sample_noise(11, zimage_family().latent_shape(64, 64));  // [16, 8, 8]
  SamplerInput in{noise, {sigmas[0], sigmas[1]}, f.at("a"), {}, 1.0};
  const at::Tensor x1 = sample_latent(*tiny.model, in, testing::test_device(), c10::kFloat).cpu();

  auto& transformer = dynamic_cast<zimage::ZImageDenoiser&>(*tiny.model).transformer();
  torch::NoGradGuard no_grad;
  const at::Tensor o = transformer->forward({noise.unsqueeze(1)}, torch::tensor({0.0f}), {f.at("a")})[0].squeeze(1).cpu();
  const at::Tensor expected = noise + static_cast<float>(21.0 / 22.0 - 1.0) * -o;
  EXPECT_TRUE(torch::allclose(x1, expected, 1e-6, 1e-6)) << (x1 - expected).abs().max().item<float>();
  EXPECT_GT((x1 - noise).abs().max().item<float>(), 1e-3);  // the step moved x
}

// Guidance that makes CFG the conditional prediction (negative = positive prompt, any w) gives the
// unguided result; a different negative prompt does not.
TEST(Sampler, CfgReducingToConditionalEqualsNoCfg) {
  TinyTransformer tiny("cfg");
  const PromptFeatures f = features({"a", "b"});
  const at::Tensor plain = sample_prompt(*tiny.model, zimage_family(), prompt("a", 3, 1.0), f, testing::test_load_options());
  const at::Tensor same_negative = sample_prompt(*tiny.model, zimage_family(), prompt("a", 3, 5.0, "a"), f, testing::test_load_options());
  const at::Tensor other_negative = sample_prompt(*tiny.model, zimage_family(), prompt("a", 3, 5.0, "b"), f, testing::test_load_options());
  EXPECT_TRUE(torch::equal(plain, same_negative)) << (plain - same_negative).abs().max().item<float>();
  EXPECT_GT((plain - other_negative).abs().max().item<float>(), 1e-2);
}

TEST(Sampler, SameSeedSameLatentBitwise) {
  TinyTransformer tiny("seed");
  const PromptFeatures f = features({"a"});
  SamplePrompt p = prompt("a", 2, 1.0);
  const at::Tensor first = sample_prompt(*tiny.model, zimage_family(), p, f, testing::test_load_options());
  EXPECT_TRUE(torch::equal(first, sample_prompt(*tiny.model, zimage_family(), p, f, testing::test_load_options())));
  p.seed = 12;
  EXPECT_FALSE(torch::equal(first, sample_prompt(*tiny.model, zimage_family(), p, f, testing::test_load_options())));
}

// A LoRA file at strength 0 gives exactly the image of no LoRA; at strength 1 it changes it, and two
// files at 0.5 each equal one at 1.
TEST(Sampler, LoraStrengthZeroEqualsNoLora) {
  TinyTransformer tiny("lora");
  torch::nn::Module& module = tiny.model->module();
  const auto layers = lora::select_layers(module, {"attn-only", {}, {}}, zimage_family().lora_presets());
  lora::AdapterOptions o;
  o.rank = 4;
  o.alpha = 4;
  lora::Adapters adapters = lora::Adapters::create(module, tiny.model->lora_state(), layers, o);
  {
    torch::NoGradGuard no_grad;
    for (at::Tensor& p : adapters.parameters()) p.normal_(0, 0.2);
  }
  const std::string file = (tiny.dir / "lora.safetensors").string();
  lora::write_lora(file, adapters.weights("zimage"), dt::testing::key_map("zimage"));
  adapters.detach();

  const PromptFeatures f = features({"a"});
  const SamplePrompt p = prompt("a", 2, 1.0);
  auto with = [&](const std::vector<std::pair<std::string, double>>& files) {
    auto model = zimage_family().load_transformer(tiny.dir.string(), testing::test_load_options());
    if (!files.empty()) lora::merge_lora_files(model->module(), dt::testing::key_map("zimage"), files);
    return sample_prompt(*model, zimage_family(), p, f, testing::test_load_options());
  };
  const at::Tensor none = with({});
  EXPECT_TRUE(torch::equal(with({{file, 0.0}}), none));
  const at::Tensor full = with({{file, 1.0}});
  EXPECT_GT((full - none).abs().max().item<float>(), 1e-2);
  EXPECT_TRUE(torch::allclose(with({{file, 0.5}, {file, 0.5}}), full, 1e-5, 1e-5));
}

// The whole pipeline on tiny FLUX.2 klein folders: variant from model_index.json, text encoder →
// transformer → VAE, CFG that reduces to the conditional prediction, seeds that matter.
TEST(Sampler, Flux2KleinPipeline) {
  const fs::path dir = temp_dir("klein");
  flux2::write_tiny_pipeline((dir / "base").string(), 1, false);
  flux2::write_tiny_pipeline((dir / "distilled").string(), 1, true);
  const Family& family = flux2_family();
  EXPECT_EQ(variant_by_name("auto", family, (dir / "base").string()), Variant::base);
  EXPECT_EQ(variant_by_name("auto", family, (dir / "distilled").string()), Variant::distilled);

  const std::string base = (dir / "base").string();
  SamplingModels models{&family, base, base, base, testing::test_load_options()};
  SamplePrompt p = prompt("a red circle", 0, NAN);
  p.width = p.height = 32;
  const SamplePrompt plain = resolve(p, family, Variant::distilled, 0, -1);
  EXPECT_EQ(plain.steps, 4);
  EXPECT_EQ(plain.cfg, 1.0);
  SamplePrompt guided = resolve(p, family, Variant::base, 4, 3.0);
  guided.negative_prompt = guided.prompt;
  SamplePrompt other_seed = plain;
  other_seed.seed = 12;
  const std::vector<Image> images = generate(models, {}, {plain, guided, other_seed});
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(images[0].width, 32);
  int cfg_difference = 0, seed_difference = 0;
  for (size_t i = 0; i < images[0].pixels.size(); ++i) {
    cfg_difference = std::max(cfg_difference, std::abs(int(images[0].pixels[i]) - int(images[1].pixels[i])));
    seed_difference = std::max(seed_difference, std::abs(int(images[0].pixels[i]) - int(images[2].pixels[i])));
  }
  EXPECT_EQ(cfg_difference, 0);
  EXPECT_GT(seed_difference, 0);

  // Offloading both of the tiny model's blocks (model.offload_blocks) draws the same images.
  models.offload_blocks = 2;
  const std::vector<Image> offloaded = generate(models, {}, {plain, guided, other_seed});
  for (size_t i = 0; i < images.size(); ++i) EXPECT_EQ(offloaded[i].pixels, images[i].pixels) << "image " << i;
  // The warm-up step keeps nothing: without it the images are the same.
  models.offload_blocks = 0;
  const std::vector<Image> cold = generate(models, {}, {plain, guided, other_seed}, /*warm_up=*/false);
  for (size_t i = 0; i < images.size(); ++i) EXPECT_EQ(cold[i].pixels, images[i].pixels) << "image " << i;
  fs::remove_all(dir);
}

TEST(SampleOutput, PngParametersRoundTrip) {
  const fs::path dir = temp_dir("png");
  Image image;
  image.width = 5;
  image.height = 3;
  for (int i = 0; i < 45; ++i) image.pixels.push_back(static_cast<uint8_t>(i * 5));
  SampleInfo info;
  info.prompt = prompt("a \"quoted\" prompt,\nover two lines — ünïcode", 28, 5.0, "blurry");
  info.prompt.seed = 18446744073709551615ull;
  info.family = "zimage";
  info.model = "models/Z-Image";
  info.loras = {{"a.safetensors", 0.75}, {"b:c.safetensors", -1.5}};
  info.step = 120;
  const std::string path = (dir / "s.png").string();
  write_sample_png(path, image, info);

  const std::string bytes = read_file(path);
  const SampleInfo back = read_parameters(bytes, path);
  EXPECT_EQ(back.prompt.prompt, info.prompt.prompt);
  EXPECT_EQ(back.prompt.negative_prompt, "blurry");
  EXPECT_EQ(back.prompt.seed, info.prompt.seed);
  EXPECT_EQ(back.prompt.width, 64);
  EXPECT_EQ(back.prompt.height, 64);
  EXPECT_EQ(back.prompt.steps, 28);
  EXPECT_EQ(back.prompt.cfg, 5.0);
  EXPECT_EQ(back.family, "zimage");
  EXPECT_EQ(back.model, "models/Z-Image");
  ASSERT_EQ(back.loras.size(), 2u);
  EXPECT_EQ(back.loras[1].path, "b:c.safetensors");
  EXPECT_EQ(back.loras[1].strength, -1.5);
  EXPECT_EQ(back.step, 120);
  const auto text = png_text(bytes, path);
  ASSERT_EQ(text.size(), 2u);
  EXPECT_EQ(text[0].first, "parameters");
  EXPECT_EQ(text[0].second, parameters_text(info));
  EXPECT_NE(text[0].second.find("Steps: 28, Sampler: Euler (flow matching), CFG scale: 5, Seed: 18446744073709551615, Size: 64x64"),
            std::string::npos);
  EXPECT_EQ(decode_image(bytes, path).pixels, image.pixels);

  // A PNG without the chunk is not a sample.
  write_png(path, image);
  EXPECT_THROW(read_parameters(read_file(path), path), Error);
  fs::remove_all(dir);
}

TEST(SampleOutput, GridPlacesTilesRowByRow) {
  std::vector<Image> tiles;
  for (uint8_t v : {10, 20, 30}) {
    Image t;
    t.width = 2;
    t.height = 2;
    t.pixels.assign(12, v);
    tiles.push_back(t);
  }
  const Image g = make_grid(tiles, 2, 1, {255, 0, 0});
  EXPECT_EQ(g.width, 5);
  EXPECT_EQ(g.height, 5);
  EXPECT_EQ(g.at(0, 0)[0], 10);
  EXPECT_EQ(g.at(3, 1)[0], 20);
  EXPECT_EQ(g.at(1, 4)[2], 30);
  EXPECT_EQ(g.at(2, 0)[0], 255);  // the gap
  EXPECT_EQ(g.at(4, 4)[1], 0);    // the empty cell is background
  tiles[1].width = 3;
  EXPECT_THROW(make_grid(tiles, 2), Error);
}

// Tiles land scaled below their row's label, every label is drawn in its own strip (ink where there
// is text, none where the label is empty), and a ragged row is refused.
TEST(SampleOutput, LabelledGridDrawsTextAboveScaledTiles) {
  auto tile = [](uint8_t v) {
    Image t;
    t.width = 3;
    t.height = 2;
    t.pixels.assign(18, v);
    return t;
  };
  std::vector<std::vector<Image>> rows = {{tile(10), tile(20)}, {tile(30), tile(40)}};
  const Image g = labelled_grid(rows, {"Turbo", ""}, {"a red circle", ""}, 2);
  const int64_t gap = 6, w = 6, h = 4, columns = 2;
  ASSERT_EQ(g.width, columns * (w + gap) + gap);
  const int64_t line = (g.height - gap - 2 * (h + gap)) / 3;  // the header and one label line per row
  ASSERT_EQ(g.height, line + 2 * (line + h + gap) + gap);
  ASSERT_GT(line, 10);
  auto tile_origin = [&](int64_t r, int64_t c) { return std::pair{gap + c * (w + gap), line + r * (line + h + gap) + gap + line}; };
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 2; ++c) {
      const auto [x, y] = tile_origin(r, c);
      for (int64_t dy = 0; dy < h; ++dy)
        for (int64_t dx = 0; dx < w; ++dx) ASSERT_EQ(g.at(x + dx, y + dy)[1], 10 * (1 + 2 * r + c)) << r << " " << c;
      EXPECT_EQ(g.at(x + w, y)[0], 255);  // the gap beside
    }
  auto ink = [&](int64_t x0, int64_t x1, int64_t y0, int64_t y1) {
    int64_t dark = 0;
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = x0; x < x1; ++x) dark += g.at(x, y)[0] < 128;
    return dark;
  };
  EXPECT_GT(ink(gap, gap + w, 0, line), 0);                        // "Turbo", clipped to its column
  EXPECT_EQ(ink(gap + w + gap, g.width, 0, line), 0);              // the empty column label
  EXPECT_GT(ink(0, g.width, line + gap, 2 * line + gap), 10);      // the first row's label
  EXPECT_EQ(ink(0, g.width, 2 * line + 2 * gap + h, 3 * line + 2 * gap + h), 0);  // the second's is empty
  rows[1].pop_back();
  EXPECT_THROW(labelled_grid(rows, {}, {}), Error);
}

TEST(SampleConfig, OneTrainerSamplesJson) {
  const fs::path dir = temp_dir("json");
  const std::string path = (dir / "samples.json").string();
  write_file_atomic(path, R"([
    {"enabled": true, "prompt": "a cat", "negative_prompt": "dog", "height": 768, "width": 512, "seed": 7,
     "random_seed": false, "diffusion_steps": 30, "cfg_scale": 4.5, "noise_scheduler": "EULER"},
    {"enabled": false, "prompt": "skipped"},
    {"prompt": "defaults"}])");
  const std::vector<SamplePrompt> p = read_onetrainer_samples(path);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].prompt, "a cat");
  EXPECT_EQ(p[0].negative_prompt, "dog");
  EXPECT_EQ(p[0].width, 512);
  EXPECT_EQ(p[0].height, 768);
  EXPECT_EQ(p[0].seed, 7u);
  EXPECT_EQ(p[0].steps, 30);
  EXPECT_EQ(p[0].cfg, 4.5);  // a standard CFG weight already: Z-Image g = 3.5
  EXPECT_EQ(p[1].width, 512);
  EXPECT_EQ(p[1].steps, 20);

  // A [sample] section: prompts first (seed, seed + 1, ...), then the file's.
  SampleConfig c;
  c.prompts = {"x", "y"};
  c.seed = 100;
  c.file = "samples.json";
  const std::vector<SamplePrompt> all = sample_prompts(c, dir.string(), 256);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[1].seed, 101u);
  EXPECT_EQ(all[1].width, 256);
  EXPECT_EQ(all[2].prompt, "a cat");

  // Variant defaults fill what is left open.
  const SamplePrompt base = resolve(all[0], zimage_family(), Variant::base, 0, -1);
  EXPECT_EQ(base.steps, 50);
  EXPECT_EQ(base.cfg, 5.0);  // g = 4
  const SamplePrompt turbo = resolve(all[0], zimage_family(), Variant::distilled, 0, -1);
  EXPECT_EQ(turbo.steps, 8);
  EXPECT_EQ(turbo.cfg, 1.0);
  EXPECT_EQ(resolve(all[2], zimage_family(), Variant::distilled, 0, -1).cfg, 4.5);
  SamplePrompt odd = all[0];
  odd.width = 72;
  EXPECT_THROW(resolve(odd, zimage_family(), Variant::base, 0, -1), Error);

  write_file_atomic(path, R"({"prompt": "not a list"})");
  try {
    read_onetrainer_samples(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  write_file_atomic(path, R"([{"prompt": 3}])");
  EXPECT_THROW(read_onetrainer_samples(path), Error);
  fs::remove_all(dir);
}

TEST(SampleConfig, VariantFromModelIndexNeverFromTheName) {
  const fs::path dir = temp_dir("variant");
  fs::create_directories(dir / "Z-Image-Turbo");
  fs::create_directories(dir / "klein");
  write_file_atomic((dir / "klein" / "model_index.json").string(), R"({"is_distilled": true})");
  const Family& family = zimage_family();
  // Base and Turbo share one architecture: a name proves nothing, so "auto" asks for the variant.
  EXPECT_THROW(variant_by_name("auto", family, (dir / "Z-Image-Turbo").string()), Error);
  std::string why;
  EXPECT_EQ(variant_by_name("auto", family, (dir / "klein").string(), &why), Variant::distilled);
  EXPECT_NE(why.find("is_distilled"), std::string::npos);
  EXPECT_EQ(variant_by_name("auto", family, (dir / "klein" / "transformer").string()), Variant::distilled);
  EXPECT_EQ(variant_by_name("base", family, (dir / "klein").string()), Variant::base);
  EXPECT_EQ(variant_by_name("turbo", family, (dir / "Z-Image-Turbo").string()), Variant::distilled);
  EXPECT_THROW(variant_by_name("fast", family, ""), Error);
  fs::remove_all(dir);
}

// Image summaries read back by the independent protobuf reader of tests/tensorboard.
TEST(SampleOutput, TensorBoardImageSummary) {
  const fs::path dir = temp_dir("tb");
  Image image;
  image.width = 4;
  image.height = 2;
  image.pixels.assign(24, 99);
  const std::string png = encode_png(image);
  std::string path;
  {
    TensorBoardWriter w(dir.string());
    w.image(12, "sample/00", png, 4, 2, 3, 1000.5);
    path = w.path();
  }
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(
      popen(("/usr/bin/python3 " DT_SOURCE_DIR "/tests/tensorboard/read_events.py " + path).c_str(), "r"), pclose);
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe.get())) out.append(buffer, n);
  ASSERT_EQ(pclose(pipe.release()), 0) << out;
  std::istringstream lines(out);
  std::string line;
  std::getline(lines, line);  // file_version
  ASSERT_TRUE(std::getline(lines, line)) << out;
  const nlohmann::json e = nlohmann::json::parse(line);
  EXPECT_EQ(e["step"], 12);
  const nlohmann::json& im = e["images"]["sample/00"];
  EXPECT_EQ(im["width"], 4);
  EXPECT_EQ(im["height"], 2);
  EXPECT_EQ(im["colorspace"], 3);
  EXPECT_EQ(im["sha256"], sha256_hex(png));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dt
