#include "run/demo.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <unistd.h>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "models/zimage/family.h"
#include "run/train_run.h"
#include "sample/generate.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

// Column `c` of a three-column grid of square tiles (gap 4).
Image tile(const Image& grid, int c) {
  Image t;
  t.width = t.height = grid.height;
  for (int64_t y = 0; y < t.height; ++y) {
    const uint8_t* row = grid.at(c * (t.width + 4), y);
    t.pixels.insert(t.pixels.end(), row, row + t.width * 3);
  }
  return t;
}

int max_difference(const Image& a, const Image& b) {
  int m = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
  return m;
}

// The demo pipeline at reduced size; then each grid column is checked against `deltatrain sample`'s
// pipeline on the written models and LoRA files, and the trained LoRA against a run without samples.
TEST(Demo, PipelineAtReducedSize) {
  const fs::path dir = fs::temp_directory_path() / ("dt_demo_" + std::to_string(getpid()));
  fs::remove_all(dir);
  DemoOptions o;
  o.workdir = dir.string();
  o.images = 2;
  o.resolution = 32;
  o.train_epochs = 2;
  o.learn_passes = 1;
  o.sample_every = 1;
  o.prompts = {"a red circle on a blue background"};
  const DemoResult r = run_demo(o);

  ASSERT_EQ(r.grids.size(), 1u);
  const Image grid = read_image(r.grids[0]);
  ASSERT_EQ(grid.width, 3 * 32 + 2 * 4);
  ASSERT_EQ(grid.height, 32);
  const RunConfig transfer = load_run_config(r.transfer_config);
  ASSERT_FALSE(transfer.sample.prompts.empty());

  SamplePrompt p;
  p.prompt = o.prompts[0];
  p.seed = static_cast<uint64_t>(transfer.sample.seed);
  p.width = p.height = 32;
  const Family& family = zimage_family();
  auto models = [&](const std::string& pipeline) {
    return SamplingModels{&family, (fs::path(r.world) / pipeline).string(), (fs::path(r.world) / pipeline).string(),
                          (fs::path(r.world) / pipeline).string(), LoadOptions{}};
  };
  const SamplePrompt base = resolve(p, family, Variant::base, 0, -1), turbo = resolve(p, family, Variant::distilled, 0, -1);
  EXPECT_EQ(base.steps, 50);
  EXPECT_EQ(turbo.steps, 8);

  // Column 1: Base + the teacher LoRA with CFG; column 2: Turbo alone; column 3: Turbo + the
  // student's LoRA (merged from the saved file here, an adapter in the grid: rounding apart).
  const Image teacher = generate(models("base"), {{r.teacher_lora, 1.0}}, {base})[0];
  const Image plain = generate(models("turbo"), {}, {turbo})[0];
  const Image student = generate(models("turbo"), {{r.student_lora, 1.0}}, {turbo})[0];
  EXPECT_TRUE(tile(grid, 0).pixels == teacher.pixels) << "teacher column differs by " << max_difference(tile(grid, 0), teacher);
  EXPECT_TRUE(tile(grid, 1).pixels == plain.pixels) << "Turbo column differs by " << max_difference(tile(grid, 1), plain);
  EXPECT_LE(max_difference(tile(grid, 2), student), 1);
  EXPECT_GT(max_difference(teacher, plain), 0);  // two different models
  EXPECT_GT(max_difference(student, plain), 0);  // the student's LoRA acts

  // Artefacts the summary names.
  for (const std::string& path : {r.teacher_lora, r.student_lora, r.store + "/manifest.json", r.train_samples + "/step-000000/00.png",
                                  r.train_samples + "/step-000001/00.png", r.train_samples + "/step-000002/00.png",
                                  r.transfer_samples + "/step-000001/grid-00.png", r.transfer_samples + "/no-lora/00.png"})
    EXPECT_TRUE(fs::exists(path)) << path;
  bool tensorboard_images = false;
  for (const auto& e : fs::directory_iterator(transfer.resolve(transfer.output.run_dir) + "/tensorboard/samples"))
    tensorboard_images |= fs::file_size(e.path()) > 1000;
  EXPECT_TRUE(tensorboard_images);

  // Sampling during training does not change what is trained: the same run without [sample] ends
  // with the same LoRA, bit for bit.
  RunConfig quiet = load_run_config(r.train_config);
  quiet.sample = {};
  quiet.output.run_dir = "run-without-samples";
  train(quiet, false);
  const auto with = load_safetensors(r.teacher_lora);
  const auto without = load_safetensors(quiet.resolve("run-without-samples/lora.safetensors"));
  ASSERT_EQ(with.size(), without.size());
  for (const auto& [name, tensor] : with) EXPECT_TRUE(torch::equal(tensor, without.at(name))) << name;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dt
