#include "run/world_efficacy.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "testing/shapes_world.h"
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

// Every arm of the table measured per seed, the curve's last point is the best transfer itself (the
// same LoRA on the same prompts and noise), the report's section is replaced in place, and a rerun
// finds every stage cached.
TEST(WorldEfficacy, TinyWorldTableHasEveryArmAndARerunIsCached) {
  testing::ScratchDir dir("world_efficacy");
  WorldEfficacyOptions o;
  o.build.world = testing::tiny_shapes_world(dir);
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

// --jobs 2: two concepts measured by two worker processes give the table one process gives measuring
// them in turn; the workers' logs are kept and the parent's own pass finds every stage cached.
TEST(WorldEfficacy, WorkerProcessesGiveTheSameTable) {
  testing::ScratchDir dir("world_efficacy_jobs");
  const std::string world = testing::tiny_shapes_world(dir);
  auto efficacy = [&](const std::string& out, const std::string& extra) {
    const std::string cmd = std::string(DT_BINARY) + " world efficacy " + world + " --out " + out +
                            " --concept vexil --concept strata " + extra + " > " + out + ".log 2>&1";
    return std::system(cmd.c_str());
  };
  ASSERT_EQ(efficacy(dir / "one", ""), 0) << read_file(dir / "one.log");
  ASSERT_EQ(efficacy(dir / "two", "--jobs 2 --built " + dir / "one"), 0) << read_file(dir / "two.log");
  auto table = [](const std::string& markdown) {  // without the time and the command line
    std::istringstream lines(markdown);
    std::string out;
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("Measured", 0) != 0 && line.rfind("deltatrain world efficacy", 0) != 0) out += line + "\n";
    return out;
  };
  const std::string serial = table(read_file(dir / "one/efficacy/efficacy.md"));
  EXPECT_NE(serial.find("### strata"), std::string::npos);
  EXPECT_EQ(table(read_file(dir / "two/efficacy/efficacy.md")), serial);
  const std::string log = read_file(dir / "two.log");
  EXPECT_NE(log.find("worker 1 of 2: vexil"), std::string::npos) << log;
  EXPECT_NE(log.find("worker 2 done"), std::string::npos) << log;
  EXPECT_EQ(log.find(" done in "), std::string::npos) << "the parent ran a stage itself:\n" << log;
  EXPECT_NE(read_file(dir / "two/efficacy/worker-2.log").find("strata"), std::string::npos);
}

TEST(WorldEfficacy, RefusesABuiltFolderWithoutPipelines) {
  testing::ScratchDir dir("world_efficacy_built");
  WorldEfficacyOptions o;
  o.build.world = testing::tiny_shapes_world(dir);
  o.build.out = dir / "build";
  o.built = dir / "empty";
  fs::create_directories(o.built + "/base");
  const std::string message = testing::error_of([&] { measure_efficacy(o); });
  EXPECT_EQ(message.find(o.built + "/base: holds no pipeline"), 0u) << message;
  EXPECT_FALSE(fs::exists(o.build.out + "/vae")) << "nothing is built for a folder measured as is";
  for (const char* model : {"base", "turbo"}) fs::create_directories(o.built + "/" + model + "/transformer");
  write_file_atomic(o.built + "/stages.json", "{\"base\": \"0\"}\n");
  EXPECT_EQ(testing::error_of([&] { measure_efficacy(o); }),
            o.built + "/stages.json: has no key for the turbo stage: not a finished world build");
}

// The table's direction on the shipped Base and Turbo (worlds/shapes/zimage), for the shape concept
// at g = 2, one seed (about 5 min on 2 cores): the transferred LoRA draws the concept more often
// than the Base LoRA on Turbo (c) and than a LoRA trained on Turbo itself (d), and keeps the
// Turbo's fidelity within 10%. The claim that it also drifts less than (d) is not asserted: on this
// world it fails (bench/EFFICACY.md: above (d)'s drift at every g ≥ 2, the g that draw the concept).
TEST(WorldEfficacy, LongTransferBeatsTheBaseLoraAndTheTurbosOwnOnTheShippedWorld) {
  testing::ScratchDir dir("world_efficacy_long");
  WorldEfficacyOptions o;
  o.built = std::string(DT_SOURCE_DIR) + "/worlds/shapes/zimage";
  o.build.out = dir / "build";
  o.build.world = dir / "shapes.toml";
  std::string world = read_file(std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml");
  world = world.substr(0, world.find("[models.efficacy]"));  // its last table, replaced by a smaller one
  write_file_atomic(o.build.world, world + "[models.efficacy]\nseeds = 1\nguidances = [2.0]\ncurve_points = 1\ngrid_prompts = 1\n");
  o.concepts = {"zorbit"};
  const WorldEfficacy r = measure_efficacy(o);
  EXPECT_FALSE(fs::exists(o.build.out + "/base")) << "the shipped Base and Turbo are measured as is";
  const std::vector<ArmResult>& arms = r.concepts.at(0).arms;
  auto arm = [&](const std::string& id) -> const ArmResult& {
    for (const ArmResult& a : arms)
      if (a.id == id) return a;
    throw Error("no arm " + id);
  };
  const ArmResult &alone = arm("b"), &as_is = arm("c"), &on_turbo = arm("d"), &transferred = arm("e g=2.00");
  EXPECT_GT(transferred.concept_score[0], as_is.concept_score[0]);
  EXPECT_GT(transferred.concept_score[0], on_turbo.concept_score[0]);
  EXPECT_LE(transferred.invalid[0], 1.1 * alone.invalid[0]);
}

}  // namespace
}  // namespace dt
