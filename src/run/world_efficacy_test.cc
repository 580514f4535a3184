#include "run/world_efficacy.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "io/atomic_file.h"
#include "testing/support.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

TEST(WorldEfficacy, MeanAndSpreadByHand) {
  EXPECT_EQ(mean_and_spread({0.8, 0.9, 1.0}), "0.90 ± 0.10");  // sample deviation: sqrt(0.02 / 2)
  EXPECT_EQ(mean_and_spread({2.0, 4.0}, 1), "3.0 ± 1.4");      // sqrt(2)
  EXPECT_EQ(mean_and_spread({0.5}), "0.50");
  EXPECT_EQ(mean_and_spread({}), "—");
}

// The shapes world shrunk until every stage takes a moment: 48² images (the style's frame 0.06 of
// the side is 2 pixels wide there, 1 at 32²), a VAE and a Base of a few steps, one concept, two
// seeds, two g.
std::string tiny_world(const testing::ScratchDir& dir) {
  std::string text = read_file(std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml");
  text = text.substr(0, text.find("[vae]"));
  text.replace(text.find("size = 64"), 9, "size = 48");
  for (size_t at; (at = text.find("images = 30")) != std::string::npos;) text.replace(at, 11, "images = 4");
  text += R"(
[vae]
block_out_channels = [8, 8, 8, 8]
norm_num_groups = 4
latent_channels = 16
steps = 2
warmup_steps = 0
batch_size = 2
images = 8
held_out = 2

[[models]]
family = "zimage"
transformer = '{"dim": 32, "n_heads": 2, "n_kv_heads": 2, "n_layers": 1, "n_refiner_layers": 1, "axes_dims": [4, 6, 6]}'
base_images = 8
base_steps = 3
base_batch_size = 2
base_warmup_steps = 0
base_sample_steps = 3
base_cfg = 3.0
turbo_steps = 2
distill_substeps = 2
distill_images = 2
distill_seeds = 1
distill_train_steps = 2
eval_prompts = 2

[models.efficacy]
lora_rank = 4
lora_alpha = 4
lora_steps = 4
batch_size = 2
guidances = [1.0, 2.0]
seeds = 2
curve_points = 2
prompts = 3
drift_prompts = 2
grid_prompts = 1
)";
  const std::string path = dir / "tiny.toml";
  write_file_atomic(path, text);
  return path;
}

// Every arm of the table measured per seed, the curve's last point is the best transfer itself (the
// same LoRA on the same prompts and noise), the report's section is replaced in place, and a rerun
// finds every stage cached.
TEST(WorldEfficacy, TinyWorldTableHasEveryArmAndARerunIsCached) {
  testing::ScratchDir dir("world_efficacy");
  WorldEfficacyOptions o;
  o.build.world = tiny_world(dir);
  o.build.out = dir / "build";
  o.concepts = {"vexil"};
  o.report = dir / "EFFICACY.md";
  o.command = "deltatrain world efficacy tiny.toml";
  write_file_atomic(o.report, "# Efficacy\n\nkept\n");
  const WorldEfficacy r = measure_efficacy(o);

  ASSERT_EQ(r.concepts.size(), 1u);
  const ConceptEfficacy& c = r.concepts[0];
  EXPECT_EQ(c.trigger, "vexil");
  EXPECT_EQ(c.kind, "colour");
  std::vector<std::string> ids;
  for (const ArmResult& a : c.arms) {
    ids.push_back(a.id);
    for (const auto* values : {&a.concept_score, &a.others, &a.invalid, &a.drift}) {
      ASSERT_EQ(values->size(), 2u) << a.id;
      for (double v : *values) EXPECT_TRUE(v >= 0 && v <= 255) << a.id;
    }
    for (double v : a.concept_score) EXPECT_LE(v, 1.0);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "c", "d", "e g=1.00", "e g=2.00", "f", "f g=3.00", "g"}));
  const ArmResult& alone = c.arms[1];
  EXPECT_EQ(alone.concept_score[0], alone.concept_score[1]);  // Turbo alone does not depend on the training seed
  EXPECT_EQ(alone.drift, (std::vector<double>{0, 0}));
  EXPECT_TRUE(c.best_guidance == 1.0 || c.best_guidance == 2.0);
  EXPECT_EQ(c.curve_steps, (std::vector<int64_t>{2, 4}));
  ASSERT_EQ(c.curve_concept.size(), 2u);
  const ArmResult& best = c.arms[c.best_guidance == 1.0 ? 4 : 5];
  EXPECT_EQ(c.curve_concept[1], best.concept_score);
  EXPECT_TRUE(fs::exists(c.grid));
  EXPECT_TRUE(fs::exists(dir / "efficacy-zimage-vexil.png"));

  const std::string report = read_file(o.report);
  EXPECT_EQ(report.find("# Efficacy\n\nkept\n"), 0u);
  EXPECT_NE(report.find("### vexil (colour)"), std::string::npos);
  EXPECT_NE(report.find("| (a) Base + Base LoRA (3 steps, CFG 3.0) |"), std::string::npos) << report;
  EXPECT_NE(report.find(o.command), std::string::npos);
  EXPECT_EQ(read_file(o.build.out + "/efficacy/efficacy.md"), r.markdown);

  const std::string lora = o.build.out + "/efficacy/vexil/seed2/base-lora/lora.safetensors";
  const std::string score = o.build.out + "/efficacy/vexil/seed1/f/score.json";
  const auto lora_time = fs::last_write_time(lora), score_time = fs::last_write_time(score);
  const WorldEfficacy again = measure_efficacy(o);
  EXPECT_EQ(fs::last_write_time(lora), lora_time);
  EXPECT_EQ(fs::last_write_time(score), score_time);
  ASSERT_EQ(again.concepts[0].arms.size(), c.arms.size());
  for (size_t i = 0; i < c.arms.size(); ++i) EXPECT_EQ(again.concepts[0].arms[i].concept_score, c.arms[i].concept_score);
  const std::string rewritten = read_file(o.report);
  EXPECT_EQ(rewritten.find("# Efficacy\n\nkept\n"), 0u);
  EXPECT_EQ(rewritten.find("<!-- world efficacy: zimage"), rewritten.rfind("<!-- world efficacy: zimage"));
}

}  // namespace
}  // namespace dt
