#include "run/distill_run.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "distill/distill_objective.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "models/family.h"
#include "run/tiny_world.h"
#include "run/train_run.h"
#include "sample/sampler.h"
#include "testing/support.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

// A tiny Z-Image world distilled: 2 student steps, the teacher at CFG 3 in 2 × 3 steps.
struct TinyDistill {
  testing::ScratchDir dir{"distill"};
  RunConfig run;
  TinyDistill() {
    TinyWorldOptions o;
    o.family = "zimage";
    o.images = 3;
    o.resolution = 32;
    make_tiny_world(dir.str(), o);
    run = load_run_config(dir / "train.toml");
    run.model.dtype = "fp32";
    run.train.method = "full";
    run.train.epochs = 30;
    run.train.batch_size = 2;
    run.train.learning_rate = 3e-3;
    run.train.warmup_steps = 0;
    run.train.checkpoint_every = 10;
    run.output.tensorboard = false;
    run.sample.prompts.clear();
    run.distill.steps = 2;
    run.distill.substeps = 3;
    run.distill.cfg = 3;
    run.distill.seeds_per_caption = 2;
    run.distill.record_batch_size = 4;
  }
};

// The mean distillation loss of a model over every (trajectory, step).
double distill_loss(Denoiser& model, const std::vector<at::Tensor>& paths, const std::vector<double>& sigmas,
                    SampleSource& source) {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (size_t i = 0; i < paths.size(); ++i)
    for (size_t k = 0; k + 1 < sigmas.size(); ++k) {
      const at::Tensor v = model.velocity(paths[i][k].unsqueeze(0), torch::tensor({static_cast<float>(sigmas[k])}),
                                          {source.text(static_cast<int32_t>(i), 0)});
      const at::Tensor target = (paths[i][k + 1] - paths[i][k]) / (sigmas[k + 1] - sigmas[k]);
      total += (v[0] - target).square().mean().item<double>();
    }
  return total / static_cast<double>(paths.size() * (sigmas.size() - 1));
}

// The recorded trajectories are the Base's guided Euler walk on the subdivided grid (checked
// against the sampler run on that grid, one trajectory at a time), kept at the student's grid; a
// lost shard is recorded again to the same bytes, and a changed recipe replaces the old shards.
TEST(Distill, TrajectoriesAreTheBasesGuidedWalk) {
  TinyDistill d;
  d.run.distill.seeds_per_caption = 50;  // 300 trajectories: two shards
  const std::string dir = record_trajectories(d.run);
  const fs::path first = fs::path(dir) / "shard-00000.safetensors", second = fs::path(dir) / "shard-00001.safetensors";
  ASSERT_TRUE(fs::exists(second));
  const std::string bytes = read_file(second.string());

  const Family& family = family_by_name("zimage");
  const std::unique_ptr<RunData> data = prepare_data(d.run, d.run.model);
  const auto teacher = family.load_transformer(d.run.resolve(d.run.model.base), load_options(d.run.model));
  const std::vector<double> grid = family.sigmas(2, 32, 32);
  std::vector<double> fine;
  for (size_t k = 0; k + 1 < grid.size(); ++k)
    for (int j = 0; j < 3; ++j) fine.push_back(grid[k] + (grid[k + 1] - grid[k]) * j / 3.0);
  fine.push_back(0);
  const auto tensors = load_safetensors(first.string());
  for (int i : {0, 57, 120, 255}) {  // each image has two captions (tiny_world.h): i = (2·sample + caption)·50 + k
    const int32_t sample = i / 100, caption = (i / 50) % 2;
    SamplerInput in;
    in.noise = sample_noise(static_cast<uint64_t>(d.run.train.seed) * 1'000'003ULL + static_cast<uint64_t>(i), family.latent_shape(32, 32));
    in.sigmas = fine;
    in.positive = data->source->text(sample, caption);
    in.negative = data->source->text(sample, kEmptyCaption);
    in.cfg = 3;
    const at::Tensor end = sample_latent(*teacher, in, c10::kCPU, c10::kFloat);
    const at::Tensor path = tensors.at("x." + std::to_string(i));
    ASSERT_EQ(path.size(0), 3);
    EXPECT_TRUE(torch::equal(path[0], in.noise)) << i;
    EXPECT_TRUE(torch::allclose(path[2], end, 1e-4, 1e-4)) << i << ": " << (path[2] - end).abs().max().item<double>();
  }

  fs::remove(second);
  record_trajectories(d.run);
  EXPECT_EQ(read_file(second.string()), bytes);
  d.run.distill.cfg = 2;
  record_trajectories(d.run);
  EXPECT_NE(read_file(second.string()), bytes);
}

// The student starts as the Base and learns to retrace the trajectories at its own steps: its
// distillation loss falls well below the Base's, it is saved as a distilled pipeline, and a run
// killed midway and resumed saves the same bits.
TEST(Distill, StudentLearnsTheTrajectoriesAndResumesBitwise) {
  TinyDistill d;
  distill(d.run, false);
  const fs::path out = d.run.resolve("run/model");
  EXPECT_EQ(read_json_file((out / "model_index.json").string())["is_distilled"], true);
  EXPECT_EQ(read_json_file(d.run.resolve("base/model_index.json"))["is_distilled"], false);  // the link was not written through

  const Family& family = family_by_name("zimage");
  const std::unique_ptr<RunData> data = prepare_data(d.run, d.run.model);
  const auto shard = load_safetensors(d.run.resolve("run/trajectories/shard-00000.safetensors"));
  std::vector<at::Tensor> paths;
  std::vector<TrajectorySpec> specs;
  for (int i = 0; i < 12; ++i) {  // 3 samples × 2 captions × 2 seeds
    paths.push_back(shard.at("x." + std::to_string(i)));
    specs.push_back({i / 4, (i / 2) % 2, 0});
  }
  TrajectorySource source(*data->source, specs, paths);
  const std::vector<double> grid = family.sigmas(2, 32, 32);
  const auto base = family.load_transformer(d.run.resolve("base"), load_options(d.run.model));
  const auto student = family.load_transformer(out.string(), load_options(d.run.model));
  const double before = distill_loss(*base, paths, grid, source), after = distill_loss(*student, paths, grid, source);
  EXPECT_LT(after, 0.5 * before) << "Base " << before << ", student " << after;

  RunConfig killed = d.run;
  killed.output.run_dir = "killed";
  killed.distill.trajectories = "run/trajectories";
  killed.train.max_steps = 14;  // stops after the checkpoint at step 10, as a kill would
  distill(killed, false);
  killed.train.max_steps = 0;
  distill(killed, true);
  const auto a = load_safetensors((out / "transformer/diffusion_pytorch_model.safetensors").string());
  const auto b = load_safetensors(d.run.resolve("killed/model/transformer/diffusion_pytorch_model.safetensors"));
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
}

TEST(Distill, RefusesALoraRunAndBf16WeightsBeforeRecording) {
  TinyDistill d;
  d.run.train.method = "lora";
  EXPECT_EQ(testing::error_of([&] { distill(d.run, false); }), "train.method 'lora' is not one of full for this command");
  d.run.train.method = "full";
  d.run.model.dtype = "bf16";
  EXPECT_EQ(testing::error_of([&] { distill(d.run, false); }),
            "train.method = full needs model.dtype = \"fp32\" (AdamW's small updates vanish in bf16 weights)");
  EXPECT_FALSE(fs::exists(d.run.resolve("run/trajectories")));
}

}  // namespace
}  // namespace dt
