#include "run/run_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "run/onetrainer_config.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

TEST(RunConfig, DefaultsAreDocumentedAndReadBack) {
  const std::string text = default_run_config_toml();
  for (const char* section : {"[model]", "[data]", "[lora]", "[train]", "[output]"})
    EXPECT_NE(text.find(section), std::string::npos) << section;
  // Every setting line follows its documentation line.
  std::istringstream lines(text);
  std::string previous;
  for (std::string line; std::getline(lines, line); previous = line) {
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    EXPECT_EQ(previous.rfind("# ", 0), 0u) << "undocumented: " << line;
    EXPECT_GT(previous.size(), 4u) << "empty documentation for: " << line;
  }
  RunConfig back;
  read_config_text(text, "defaults.toml", {}, back);
  RunConfig defaults;
  EXPECT_EQ(config_to_toml(back), config_to_toml(defaults));
  EXPECT_EQ(back.train.learning_rate, 1e-4);
  EXPECT_EQ(back.lora.preset, "attn-mlp");
  EXPECT_EQ(back.output.format, "comfyui");
}

TEST(RunConfig, FileOverridesAndRelativePaths) {
  const fs::path dir = fs::temp_directory_path() / ("dt_runconfig_" + std::to_string(getpid()));
  fs::create_directories(dir / "sub");
  write_file_atomic((dir / "sub" / "run.toml").string(),
                    "[model]\nbase = 'models/base'\ndtype = 'fp32'\n[train]\nepochs = 3\nlearning_rate = 2e-4\n"
                    "[lora]\ninclude = ['to_q$']\n");
  const RunConfig run = load_run_config((dir / "sub" / "run.toml").string(),
                                        {"train.learning_rate=5e-5", "lora.rank=8", "output.run_dir=/abs/run",
                                         "lora.exclude=['refiner', 'to_k']", "model.gradient_checkpointing=true"});
  EXPECT_EQ(run.train.epochs, 3);
  EXPECT_EQ(run.train.learning_rate, 5e-5);
  EXPECT_EQ(run.lora.rank, 8);
  EXPECT_EQ(run.lora.include, (std::vector<std::string>{"to_q$"}));
  EXPECT_EQ(run.lora.exclude, (std::vector<std::string>{"refiner", "to_k"}));
  EXPECT_TRUE(run.model.gradient_checkpointing);
  EXPECT_EQ(run.model.dtype, "fp32");
  EXPECT_EQ(run.train.batch_size, 1);  // untouched default
  EXPECT_EQ(run.resolve(run.model.base), (dir / "sub" / "models" / "base").string());
  EXPECT_EQ(run.resolve(run.output.run_dir), "/abs/run");
  try {
    load_run_config((dir / "sub" / "run.toml").string(), {"train.learning_rat=1"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "sub" / "run.toml").string() + ": unknown setting 'train.learning_rat'");
  }
  fs::remove_all(dir);
}

TEST(RunConfig, PlanOptionsCarryEveryTimestepAndNoiseSetting) {
  TrainConfig t;
  t.seed = 9;
  t.epochs = 4;
  t.batch_size = 3;
  t.timestep_distribution = "sigmoid";
  t.sigmoid_scale = 2;
  t.sigmoid_bias = 0.1;
  t.logit_mean = 0.3;
  t.logit_std = 0.8;
  t.min_sigma = 0.1;
  t.max_sigma = 0.9;
  t.shift = 3;
  t.dynamic_shift = true;
  t.offset_noise = 0.05;
  t.perturbation_noise = 0.02;
  const PlanOptions o = t.plan_options();
  EXPECT_EQ(o.seed, 9u);
  EXPECT_EQ(o.epochs, 4);
  EXPECT_EQ(o.batch_size, 3);
  EXPECT_EQ(o.timesteps.distribution, "sigmoid");
  EXPECT_EQ(o.timesteps.sigmoid_scale, 2);
  EXPECT_EQ(o.timesteps.sigmoid_bias, 0.1);
  EXPECT_EQ(o.timesteps.logit_mean, 0.3);
  EXPECT_EQ(o.timesteps.logit_std, 0.8);
  EXPECT_EQ(o.timesteps.min_sigma, 0.1);
  EXPECT_EQ(o.timesteps.max_sigma, 0.9);
  EXPECT_EQ(o.timesteps.shift, 3);
  EXPECT_TRUE(o.timesteps.dynamic_shift);
  EXPECT_EQ(o.noise.offset, 0.05);
  EXPECT_EQ(o.noise.perturbation, 0.02);
}

// A config of the shape OneTrainer's UI saves for its Z-Image LoRA preset, with its concepts file.
TEST(RunConfig, OneTrainerImport) {
  const std::string dir = DT_SOURCE_DIR "/tests/fixtures/onetrainer";
  std::vector<std::string> warnings;
  const RunConfig run = import_onetrainer_config(dir + "/zimage_lora.json", "", warnings);
  EXPECT_EQ(run.model.family, "zimage");
  EXPECT_EQ(run.model.base, "Tongyi-MAI/Z-Image");
  EXPECT_EQ(run.model.dtype, "bf16");
  EXPECT_EQ(run.model.device, "cuda");
  EXPECT_TRUE(run.model.gradient_checkpointing);
  EXPECT_EQ(run.lora.rank, 32);
  EXPECT_EQ(run.lora.alpha, 16.0);
  EXPECT_EQ(run.lora.preset, "attn-mlp");
  EXPECT_EQ(run.train.learning_rate, 3e-4);
  EXPECT_EQ(run.train.lr_schedule, "cosine");
  EXPECT_EQ(run.train.warmup_steps, 200);
  EXPECT_EQ(run.train.epochs, 100);
  EXPECT_EQ(run.train.batch_size, 2);
  EXPECT_EQ(run.train.beta2, 0.99);
  EXPECT_EQ(run.train.weight_decay, 0.02);
  EXPECT_EQ(run.train.timestep_distribution, "logit_normal");
  EXPECT_EQ(run.train.logit_mean, 0.0);
  EXPECT_EQ(run.train.logit_std, 1.0);  // noising_weight + 1
  EXPECT_EQ(run.train.save_every, 250);
  EXPECT_EQ(run.train.checkpoint_every, 500);
  EXPECT_EQ(run.train.keep_checkpoints, 3);
  EXPECT_EQ(run.output.save_dtype, "bf16");
  EXPECT_EQ(run.output.format, "comfyui");
  EXPECT_EQ(run.output.lora, dir + "/models/zimage_lora.safetensors");
  EXPECT_EQ(run.data.resolutions, (std::vector<int64_t>{512}));
  ASSERT_EQ(run.data.concepts.size(), 2u);
  EXPECT_EQ(run.data.concepts[0].name, "mychar");
  EXPECT_EQ(run.data.concepts[0].repeats, 2.0);
  EXPECT_EQ(run.data.concepts[0].path, dir + "/images/mychar");
  EXPECT_EQ(run.data.concepts[1].samples_per_epoch, 40);
  EXPECT_EQ(run.data.concepts[1].loss_weight, 0.5);
  EXPECT_EQ(run.sample.every_minutes, 10.0);
  EXPECT_EQ(run.sample.file, dir + "/training_samples/samples.json");
  const std::vector<SamplePrompt> samples = sample_prompts(run.sample, ".", 1024);
  ASSERT_EQ(samples.size(), 1u);  // the disabled one left out
  EXPECT_EQ(samples[0].steps, 28);
  EXPECT_EQ(samples[0].cfg, 5.0);
  // The unmapped fields are listed, the mapped ones are not.
  std::string all;
  for (const auto& w : warnings) all += w + "\n";
  EXPECT_NE(all.find("OneTrainer fields not imported: "), std::string::npos) << all;
  for (const char* unmapped : {"ema", "compile", "quantization", "text_encoder", "masked_training", "samples"})
    EXPECT_NE(all.find(std::string(" ") + unmapped + ","), std::string::npos) << unmapped << "\n" << all;
  for (const char* mapped : {" lora_rank", " learning_rate,", " epochs", " timestep_distribution"})
    EXPECT_EQ(all.find(mapped), std::string::npos) << mapped << "\n" << all;
  EXPECT_NE(all.find("not a local folder"), std::string::npos);
  EXPECT_NE(all.find("enable_crop_jitter"), std::string::npos);  // the concepts reader's warning
  // The result is a valid config that prints and reads back.
  RunConfig copy = run, back;
  read_config_text(config_to_toml(copy), "imported.toml", {}, back);
  EXPECT_EQ(config_to_toml(back), config_to_toml(copy));
}

TEST(RunConfig, OneTrainerImportRefusesOtherModels) {
  const fs::path file = fs::temp_directory_path() / ("dt_ot_" + std::to_string(getpid()) + ".json");
  write_file_atomic(file.string(), R"({"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"})");
  std::vector<std::string> warnings;
  EXPECT_THROW(import_onetrainer_config(file.string(), "", warnings), Error);
  write_file_atomic(file.string(), R"({"model_type": "Z_IMAGE", "training_method": "FINE_TUNE"})");
  EXPECT_THROW(import_onetrainer_config(file.string(), "", warnings), Error);
  write_file_atomic(file.string(), "{not json");
  EXPECT_THROW(import_onetrainer_config(file.string(), "", warnings), Error);
  fs::remove(file);
}

}  // namespace
}  // namespace dt
