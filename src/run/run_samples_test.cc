#include "run/run_samples.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "io/safetensors.h"
#include "models/zimage/family.h"
#include "run/tiny_world.h"
#include "run/train_run.h"
#include "run/transfer_run.h"
#include "sample/generate.h"
#include "testing/support.h"

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

// The newest step-N folder of a samples folder.
std::string newest_step(const std::string& samples) {
  std::string best;
  for (const auto& e : fs::directory_iterator(samples))
    if (e.path().filename().string().rfind("step-", 0) == 0 && e.path().string() > best) best = e.path().string();
  return best;
}

// Samples during train and learn on the tiny world: each column of learn's side-by-side grid is
// checked against `deltatrain sample`'s pipeline on the written models and LoRA files, and the
// trained LoRA against a run without samples.
TEST(RunSamples, GridsMatchTheSamplerAndLeaveTheLoraUnchanged) {
  const testing::ScratchDir dir("run_samples");
  make_tiny_world(dir.str(), {"zimage", 2, 32});
  const std::string prompt = "a red circle on a blue background";
  RunConfig train_run = load_run_config(dir / "train.toml");
  train_run.train.epochs = 2;
  train_run.sample.prompts = {prompt};
  train_run.sample.at_start = true;
  train_run.sample.every_steps = 1;
  train(train_run, false);
  RunConfig transfer = load_run_config(dir / "transfer.toml");
  transfer.transfer.learn_passes = 1;
  transfer.transfer.exact = true;
  transfer.sample = train_run.sample;
  transfer.sample.at_start = false;
  record(transfer, false);
  learn(transfer, false);
  const std::string teacher_lora = train_run.resolve(train_run.output.run_dir + "/lora.safetensors");
  const std::string student_lora = transfer.resolve(transfer.output.run_dir + "/lora.safetensors");
  const std::string train_samples = train_run.resolve(train_run.output.run_dir) + "/samples";
  const std::string transfer_samples = transfer.resolve(transfer.output.run_dir) + "/samples";

  const Image grid = read_image(newest_step(transfer_samples) + "/grid-00.png");
  ASSERT_EQ(grid.width, 3 * 32 + 2 * 4);
  ASSERT_EQ(grid.height, 32);
  ASSERT_FALSE(transfer.sample.prompts.empty());

  SamplePrompt p;
  p.prompt = prompt;
  p.seed = static_cast<uint64_t>(transfer.sample.seed);
  p.width = p.height = 32;
  const Family& family = zimage_family();
  auto models = [&](const std::string& pipeline) {
    return SamplingModels{&family, dir / pipeline, dir / pipeline, dir / pipeline, LoadOptions{}};
  };
  const SamplePrompt base = resolve(p, family, Variant::base, 0, -1), turbo = resolve(p, family, Variant::distilled, 0, -1);
  EXPECT_EQ(base.steps, 50);
  EXPECT_EQ(turbo.steps, 8);

  // Column 1: Base + the teacher LoRA with CFG; column 2: Turbo alone; column 3: Turbo + the
  // student's LoRA (merged from the saved file here, an adapter in the grid: rounding apart).
  const Image teacher = generate(models("base"), {{teacher_lora, 1.0}}, {base})[0];
  const Image plain = generate(models("turbo"), {}, {turbo})[0];
  const Image student = generate(models("turbo"), {{student_lora, 1.0}}, {turbo})[0];
  EXPECT_TRUE(tile(grid, 0).pixels == teacher.pixels) << "teacher column differs by " << max_difference(tile(grid, 0), teacher);
  EXPECT_TRUE(tile(grid, 1).pixels == plain.pixels) << "Turbo column differs by " << max_difference(tile(grid, 1), plain);
  EXPECT_LE(max_difference(tile(grid, 2), student), 1);
  EXPECT_GT(max_difference(teacher, plain), 0);  // two different models
  EXPECT_GT(max_difference(student, plain), 0);  // the student's LoRA acts

  // Artefacts the summary names.
  for (const std::string& path : {teacher_lora, student_lora, store_dir(transfer) + "/manifest.json", train_samples + "/step-000000/00.png",
                                  train_samples + "/step-000001/00.png", train_samples + "/step-000002/00.png",
                                  transfer_samples + "/step-000001/grid-00.png", transfer_samples + "/no-lora/00.png"})
    EXPECT_TRUE(fs::exists(path)) << path;
  bool tensorboard_images = false;
  for (const auto& e : fs::directory_iterator(transfer.resolve(transfer.output.run_dir) + "/tensorboard/samples"))
    tensorboard_images |= fs::file_size(e.path()) > 1000;
  EXPECT_TRUE(tensorboard_images);

  // Sampling during training does not change what is trained: the same run without [sample] ends
  // with the same LoRA, bit for bit.
  RunConfig quiet = train_run;
  quiet.sample = {};
  quiet.output.run_dir = "run-without-samples";
  train(quiet, false);
  const auto with = load_safetensors(teacher_lora);
  const auto without = load_safetensors(quiet.resolve("run-without-samples/lora.safetensors"));
  ASSERT_EQ(with.size(), without.size());
  for (const auto& [name, tensor] : with) EXPECT_TRUE(torch::equal(tensor, without.at(name))) << name;
}

}  // namespace
}  // namespace dt
