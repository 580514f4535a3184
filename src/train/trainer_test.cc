#include "run/train_run.h"
#include "train/trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "models/zimage/config.h"
#include "models/zimage/family.h"
#include "models/zimage/weights.h"
#include "testing/support.h"
#include "testing/tiny_models.h"
#include "train/train_checkpoint.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

// A tiny real Z-Image transformer (the golden's sizes) with LoRA adapters, in a temporary folder.
struct TinyWorld {
  fs::path dir;
  RunConfig run;
  explicit TinyWorld(const std::string& name) {
    dir = fs::temp_directory_path() / ("dt_trainer_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    zimage::write_random_checkpoint((dir / "model").string(), testing::golden_sized_zimage(), 1);
    run = testing::tiny_run(dir.string(), "model", "zimage");
  }
  ~TinyWorld() { fs::remove_all(dir); }
};

// Fixed latents (8×8, i.e. 64×64 pixels) and caption features per sample.
class FixedSource : public SampleSource {
 public:
  explicit FixedSource(int n) {
    torch::manual_seed(5);
    for (int i = 0; i < n; ++i) {
      latents_.push_back(torch::randn({16, 8, 8}));
      texts_.push_back(torch::randn({3 + i, 48}));
    }
  }
  at::Tensor latent(int32_t sample) override { return latents_.at(sample); }
  TextFeatures text(int32_t sample, int32_t) override { return texts_.at(sample); }
  std::string caption(int32_t sample, int32_t) override { return "sample " + std::to_string(sample); }

 private:
  std::vector<at::Tensor> latents_, texts_;
};

Plan tiny_plan(int samples, int64_t epochs, int64_t batch_size) {
  std::vector<PlanSample> s;
  for (int i = 0; i < samples; ++i) s.push_back({"s" + std::to_string(i), 1, 1, 64, 64, 1.0, 0.0});
  PlanOptions o;
  o.epochs = epochs;
  o.batch_size = batch_size;
  return make_plan(s, "fixed", o);
}

// Fails once at a chosen batch (a crash in the middle of a run).
class CrashingObjective : public FlowObjective {
 public:
  explicit CrashingObjective(int64_t crash_at) : crash_at_(crash_at) {}
  StepResult step(Denoiser& model, const Batch& batch) override {
    if (batch.index == crash_at_) throw std::runtime_error("crash");
    return FlowObjective::step(model, batch);
  }

 private:
  int64_t crash_at_;
};

class NanObjective : public FlowObjective {
 public:
  StepResult step(Denoiser& model, const Batch& batch) override {
    StepResult r = FlowObjective::step(model, batch);
    if (batch.index == 3) r.loss = r.loss * std::numeric_limits<double>::quiet_NaN();
    return r;
  }
};

// Counts its steps and notes the batch of each warm-up pass; with `out_of_memory`, its warm-up
// asks LibTorch's allocator for more than any machine has.
class WarmUpWatcher : public FlowObjective {
 public:
  explicit WarmUpWatcher(bool out_of_memory = false) : out_of_memory_(out_of_memory) {}
  StepResult warm_up(Denoiser& model, const Batch& batch) override {
    warm_ups.push_back(batch.index);
    if (out_of_memory_) at::empty({int64_t{1} << 50});  // 4 PiB
    return FlowObjective::step(model, batch);  // what the default warm_up() runs, not counted as a step
  }
  StepResult step(Denoiser& model, const Batch& batch) override {
    ++steps;
    return FlowObjective::step(model, batch);
  }
  std::vector<int64_t> warm_ups;
  int steps = 0;

 private:
  bool out_of_memory_;
};

// The allocator's own failure (whatever LibTorch's wording) is out of memory; other errors are not.
// (Here rather than beside core/error.h: the sanitizer stage, which builds core, aborts on such a
// request before LibTorch can throw.)
TEST(Error, AFailedAllocationIsOutOfMemory) {
  try {
    at::empty({int64_t{1} << 50});  // 4 PiB
    FAIL() << "the allocation succeeded";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(is_out_of_memory(e.what())) << e.what();
  }
  EXPECT_TRUE(is_out_of_memory("CUDA out of memory. Tried to allocate 20.00 MiB"));
  EXPECT_FALSE(is_out_of_memory("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"));
}

std::map<std::string, at::Tensor> read_lora_tensors(const RunConfig& run) {
  return load_safetensors((fs::path(run.resolve(run.output.run_dir)) / "lora.safetensors").string());
}

// The mean flow loss over fixed items (σ spread over (0, 1)), LoRA as it is now.
double eval_loss(LoadedModel& model, SampleSource& source) {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (int s = 0; s < 2; ++s)
    for (int k = 1; k < 8; ++k) {
      Plan p = plan_from_batches({{"s0", 1, 1, 64, 64, 1, 0}, {"s1", 1, 1, 64, 64, 1, 0}}, "e",
                                 {{0, {{s, 0, k / 8.f, static_cast<uint64_t>(100 + k)}}}}, {});
      Batch b;
      b.items = p.batches[0].items;
      b.x0 = source.latent(s).unsqueeze(0);
      b.noise = plan_noise(100 + k, {16, 8, 8}, {}).unsqueeze(0);
      b.sigma = torch::tensor({k / 8.f});
      b.x_t = noised(b.x0, b.noise, b.sigma);
      b.loss_weight = torch::ones({1});
      b.text = {source.text(s, 0)};
      FlowObjective flow;
      total += flow.step(*model.denoiser, b).loss.item<double>();
    }
  return total / 14;
}

// The three loss functions against hand computations: d = prediction − target per element, the
// per-sample mean, weighted by the samples' loss weights, averaged over the batch.
TEST(Trainer, LossFunctionsMatchHandComputations) {
  const at::Tensor target = torch::tensor({1.0f, 1.0f, 1.0f, -1.0f, -1.0f, -1.0f}).view({2, 3, 1, 1});
  const at::Tensor d = torch::tensor({0.5f, -2.0f, 1.0f, 3.0f, 0.0f, -0.25f}).view({2, 3, 1, 1});
  const at::Tensor weight = torch::tensor({1.0f, 2.0f});
  auto loss = [&](const std::string& name, double delta) {
    return weighted_loss(LossFunction::from_settings(name, delta), target + d, target, weight).item<double>();
  };
  // mse: per sample (0.25 + 4 + 1)/3 = 1.75 and (9 + 0 + 0.0625)/3; weighted mean.
  EXPECT_NEAR(loss("mse", 1), (1.75 + 2 * 9.0625 / 3) / 2, 1e-6);
  // mae: (0.5 + 2 + 1)/3 and (3 + 0 + 0.25)/3.
  EXPECT_NEAR(loss("mae", 1), (3.5 / 3 + 2 * 3.25 / 3) / 2, 1e-6);
  // huber δ = 1: 0.125, 1·(2 − 0.5), 0.5 | 1·(3 − 0.5), 0, 0.03125.
  EXPECT_NEAR(loss("huber", 1), (2.125 / 3 + 2 * 2.53125 / 3) / 2, 1e-6);
  // huber δ = 2: 0.125, 2, 0.5 | 2·(3 − 1), 0, 0.03125.
  EXPECT_NEAR(loss("huber", 2), (2.625 / 3 + 2 * 4.03125 / 3) / 2, 1e-6);
  EXPECT_THROW(LossFunction::from_settings("l2", 1), Error);
  EXPECT_THROW(LossFunction::from_settings("huber", 0), Error);
}

// The flow objective uses the configured loss (here mae, against |v̂ − (ε − x0)| by hand), and a
// run with an unknown loss is refused before anything loads.
TEST(Trainer, FlowObjectiveUsesTheConfiguredLoss) {
  TinyWorld w("loss");
  FixedSource source(1);
  LoadedModel model = load_model(w.run, w.run.model, w.run.lora);
  Batch b;
  b.x0 = source.latent(0).unsqueeze(0);
  b.noise = plan_noise(7, {16, 8, 8}, {}).unsqueeze(0);
  b.sigma = torch::tensor({0.6f});
  b.x_t = noised(b.x0, b.noise, b.sigma);
  b.loss_weight = torch::ones({1});
  b.text = {source.text(0, 0)};
  torch::NoGradGuard no_grad;
  const at::Tensor v = model.denoiser->velocity(b.x_t, b.sigma, b.text);
  const double mae = (v - (b.noise - b.x0)).abs().mean().item<double>();
  FlowObjective flow(LossFunction::from_settings("mae", 1));
  EXPECT_NEAR(flow.step(*model.denoiser, b).loss.item<double>(), mae, 1e-6 * mae);
  const double mse = (v - (b.noise - b.x0)).square().mean().item<double>();
  EXPECT_NEAR(FlowObjective().step(*model.denoiser, b).loss.item<double>(), mse, 1e-6 * mse);

  RunConfig run = w.run;
  run.train.loss = "l1";
  run.model.base = "no_such_model";
  try {
    train(run, false);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "train.loss 'l1' is not one of mse, mae, huber");
  }
}

TEST(Trainer, LossFallsOnAFittableDataset) {
  TinyWorld w("fit");
  w.run.train.learning_rate = 2e-2;
  w.run.train.checkpoint_every = 0;
  FixedSource source(2);
  LoadedModel model = load_model(w.run, w.run.model, w.run.lora);
  const double before = eval_loss(model, source);
  FlowObjective flow;
  run_loop(w.run, model, tiny_plan(2, 120, 2), source, flow, false);
  const double after = eval_loss(model, source);
  EXPECT_LT(after, 0.8 * before) << "before " << before << " after " << after;
  // The metrics file has one line per optimizer step.
  std::ifstream metrics(fs::path(w.run.resolve("run")) / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(metrics, line);) ++lines;
  EXPECT_EQ(lines, 120);
}

// A run that dies at any batch and is resumed ends with the same LoRA bits as an uninterrupted one
// (accumulation, warm-up + cosine schedule, LoRA dropout drawing from the saved RNG state).
TEST(Trainer, ResumedRunIsBitwiseIdentical) {
  TinyWorld w("resume");
  w.run.train.gradient_accumulation = 2;
  w.run.train.lr_schedule = "cosine";
  w.run.train.warmup_steps = 2;
  w.run.lora.dropout = 0.2;
  FixedSource source(3);
  const Plan plan = tiny_plan(3, 4, 1);  // 12 batches, 6 optimizer steps
  {
    LoadedModel model = load_model(w.run, w.run.model, w.run.lora);
    FlowObjective flow;
    run_loop(w.run, model, plan, source, flow, false);
  }
  const auto reference = read_lora_tensors(w.run);
  for (int64_t crash_at : {1, 4, 9}) {
    RunConfig run = w.run;
    run.output.run_dir = "run_crash_" + std::to_string(crash_at);
    {
      LoadedModel model = load_model(run, run.model, run.lora);
      CrashingObjective crashing(crash_at);
      EXPECT_THROW(run_loop(run, model, plan, source, crashing, false), std::runtime_error);
    }
    LoadedModel model = load_model(run, run.model, run.lora);
    FlowObjective flow;
    run_loop(run, model, plan, source, flow, true);
    const auto resumed = read_lora_tensors(run);
    ASSERT_EQ(resumed.size(), reference.size());
    for (const auto& [name, t] : reference) EXPECT_TRUE(torch::equal(t, resumed.at(name))) << name << " crash at " << crash_at;
  }
}

// The warm-up pass runs the largest batch still to run and keeps nothing: the LoRA is bit for bit
// that of a run without it (LoRA dropout's draws, accumulated gradients), and a largest batch that
// does not fit stops the run before the first step, saying so.
TEST(Trainer, WarmUpPassRunsTheLargestBatchAndKeepsNothing) {
  TinyWorld w("warm_up");
  w.run.train.gradient_accumulation = 2;
  w.run.train.checkpoint_every = 0;
  w.run.lora.dropout = 0.2;
  FixedSource source(2);
  // Pixels per batch 4096, 8192, 8192, 16384 (sample 1 is listed at 128×64), 8192.
  const Plan plan = plan_from_batches({{"s0", 1, 1, 64, 64, 1.0, 0.0}, {"s1", 1, 1, 128, 64, 1.0, 0.0}}, "w",
                                      {{0, {{0, 0, 0.5f, 1}}},
                                       {0, {{0, 0, 0.3f, 2}, {1, 0, 0.6f, 3}}},
                                       {0, {{1, 0, 0.7f, 4}}},
                                       {0, {{1, 0, 0.4f, 5}, {1, 0, 0.2f, 6}}},
                                       {0, {{0, 0, 0.8f, 7}, {1, 0, 0.9f, 8}}}},
                                      {});
  std::map<std::string, at::Tensor> without;
  for (const bool warm_up : {false, true}) {
    RunConfig run = w.run;
    run.train.warm_up_pass = warm_up;
    LoadedModel model = load_model(run, run.model, run.lora);
    WarmUpWatcher watcher;
    run_loop(run, model, plan, source, watcher, false);
    EXPECT_EQ(watcher.warm_ups, warm_up ? std::vector<int64_t>{3} : std::vector<int64_t>{});
    EXPECT_EQ(watcher.steps, 5);
    const auto lora = read_lora_tensors(run);
    if (!warm_up) without = lora;
    else
      for (const auto& [name, t] : without) EXPECT_TRUE(torch::equal(t, lora.at(name))) << name;
  }

  LoadedModel model = load_model(w.run, w.run.model, w.run.lora);
  WarmUpWatcher too_large(true);
  const std::string why = testing::error_of([&] { run_loop(w.run, model, plan, source, too_large, false); });
  EXPECT_EQ(why.rfind("out of memory in the warm-up pass (batch_size ", 0), 0u) << why;
  EXPECT_EQ(too_large.steps, 0);
}

std::map<std::string, at::Tensor> read_model_tensors(const fs::path& folder) {
  return load_safetensors((folder / "diffusion_pytorch_model.safetensors").string());
}

// train.method = "full": every transformer weight changes, the saved folder is a diffusers model
// that loads back to the same predictions, and a run that dies at any batch and is resumed saves the
// same bits as an uninterrupted one.
TEST(Trainer, FullTrainingSavesALoadableModelAndResumesBitwise) {
  TinyWorld w("full");
  w.run.train.method = "full";
  w.run.train.gradient_accumulation = 2;
  w.run.train.lr_schedule = "cosine";
  w.run.train.warmup_steps = 1;
  FixedSource source(3);
  const Plan plan = tiny_plan(3, 2, 1);  // 6 batches, 3 optimizer steps
  LoadedModel model = load_model_full(w.run, w.run.model);
  FlowObjective flow;
  run_loop(w.run, model, plan, source, flow, false);
  const fs::path saved = w.run.resolve("run/model");
  const auto reference = read_model_tensors(saved);
  const auto base = read_model_tensors(w.dir / "model");
  ASSERT_EQ(reference.size(), base.size());
  for (const auto& [name, t] : base) EXPECT_FALSE(torch::equal(t, reference.at(name))) << name << " did not train";
  EXPECT_EQ(read_json_file((saved / "config.json").string()), read_json_file((w.dir / "model" / "config.json").string()));

  {
    const auto reloaded = zimage_family().load_transformer(saved.string(), load_options(w.run.model));
    torch::NoGradGuard no_grad;
    const at::Tensor x = torch::randn({1, 16, 8, 8}), sigma = torch::tensor({0.4f});
    EXPECT_TRUE(torch::equal(model.denoiser->velocity(x, sigma, {source.text(0, 0)}),
                             reloaded->velocity(x, sigma, {source.text(0, 0)})));
  }

  for (int64_t crash_at : {1, 4}) {
    RunConfig run = w.run;
    run.output.run_dir = "run_crash_" + std::to_string(crash_at);
    {
      LoadedModel crashed = load_model_full(run, run.model);
      CrashingObjective crashing(crash_at);
      EXPECT_THROW(run_loop(run, crashed, plan, source, crashing, false), std::runtime_error);
    }
    LoadedModel resumed = load_model_full(run, run.model);
    run_loop(run, resumed, plan, source, flow, true);
    const auto again = read_model_tensors(run.resolve(run.output.run_dir + "/model"));
    for (const auto& [name, t] : reference) EXPECT_TRUE(torch::equal(t, again.at(name))) << name << " crash at " << crash_at;
  }

  // A LoRA run's checkpoint does not resume a full run (nor the other way round).
  RunConfig lora_run = w.run;
  lora_run.train.method = "lora";
  LoadedModel with_lora = load_model(lora_run, lora_run.model, lora_run.lora);
  const std::string why = testing::error_of([&] { run_loop(lora_run, with_lora, plan, source, flow, true); });
  EXPECT_NE(why.find("does not hold this run's trained tensors"), std::string::npos) << why;
}

// Saved from a pipeline folder, the trained model is a pipeline folder: a new transformer/, the
// other components linked (same bytes), model_index.json kept.
TEST(Trainer, FullTrainingOfAPipelineSavesAPipeline) {
  TinyWorld w("full_pipeline");
  zimage_family().write_tiny_pipeline((w.dir / "pipe").string(), 3, false, R"({"n_layers": 1})");
  EXPECT_EQ(read_json_file((w.dir / "pipe/transformer/config.json").string())["n_layers"], 1);
  RunConfig run = w.run;
  run.model.base = "pipe";
  run.train.method = "full";
  LoadedModel model = load_model_full(run, run.model);
  const fs::path out = w.dir / "saved";
  save_model(run, model, out.string());
  save_model(run, model, out.string());  // replacing an earlier save
  for (const char* file : {"model_index.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                           "tokenizer/tokenizer.json", "scheduler/scheduler_config.json"})
    EXPECT_EQ(read_file((out / file).string()), read_file((w.dir / "pipe" / file).string())) << file;
  EXPECT_EQ(read_model_tensors(out / "transformer").size(), read_model_tensors(w.dir / "pipe/transformer").size());
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));
  EXPECT_FALSE(fs::exists(out.string() + ".previous"));

  run.model.dtype = "bf16";
  EXPECT_EQ(testing::error_of([&] { load_model_full(run, run.model); }),
            "train.method = full needs model.dtype = \"fp32\" (AdamW's small updates vanish in bf16 weights)");
  run.train.method = "dreambooth";
  EXPECT_EQ(testing::error_of([&] { check_method(run, {"lora", "full"}); }),
            "train.method 'dreambooth' is not one of lora, full for this command");
}

// model.offload_blocks is for a GPU, for LoRA runs, and needs checkpointing to train; each mistake is
// one line (the offloading itself: ZImageModel / Flux2Model.OffloadedBlocksGiveTheSameOutputsAndGradients).
TEST(Trainer, BlockOffloadingSettingsAreChecked) {
  TinyWorld w("offload_settings");
  RunConfig run = w.run;
  run.model.offload_blocks = 1;
  run.model.device = "cpu";
  EXPECT_EQ(testing::error_of([&] { load_model(run, run.model, run.lora); }),
            "model.offload_blocks keeps blocks in host memory for a GPU, but model.device is 'cpu'");
  EXPECT_EQ(testing::error_of([&] { load_model_full(run, run.model); }),
            "model.offload_blocks offloads frozen weights, and full training (train.method = full, distill) trains every "
            "weight: set it to 0");
  run.model.offload_blocks = -1;
  EXPECT_EQ(testing::error_of([&] { load_model(run, run.model, run.lora); }),
            "model.offload_blocks must be 0 (off) or a number of blocks");
  if (!torch::cuda::is_available()) return;
  run.model.device = "cuda";
  run.model.offload_blocks = 1;
  EXPECT_EQ(testing::error_of([&] { load_model(run, run.model, run.lora); }),
            "model.offload_blocks needs model.gradient_checkpointing = true: a plain backward pass would keep every "
            "offloaded block on the device");
  run.model.gradient_checkpointing = true;
  run.model.offload_blocks = 3;
  EXPECT_EQ(testing::error_of([&] { load_model(run, run.model, run.lora); }),
            "model.offload_blocks = 3: this Z-Image transformer has 2 main layers to offload");
}

TEST(Trainer, NanLossStopsNamingTheStepAndKeepsTheCheckpoint) {
  TinyWorld w("nan");
  FixedSource source(2);
  LoadedModel model = load_model(w.run, w.run.model, w.run.lora);
  NanObjective nan;
  try {
    run_loop(w.run, model, tiny_plan(2, 4, 1), source, nan, false);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the loss is NaN at step 4"), std::string::npos) << what;
    EXPECT_NE(what.find("step-000000003.safetensors"), std::string::npos) << what;
  }
  auto last = latest_train_checkpoint(w.run.resolve("run"));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->optimizer_steps, 3);
}

TEST(Trainer, UnwritableOutputIsFoundBeforeTheFirstStep) {
  TinyWorld w("unwritable");
  FixedSource source(2);
  LoadedModel model = load_model(w.run, w.run.model, w.run.lora);
  std::ofstream((w.dir / "file").string()) << "x";
  w.run.output.lora = "file/lora.safetensors";  // a folder that is a file
  CrashingObjective any_step(0);  // would throw std::runtime_error if a step ran
  EXPECT_THROW(run_loop(w.run, model, tiny_plan(2, 1, 1), source, any_step, false), Error);
}

}  // namespace
}  // namespace dt
