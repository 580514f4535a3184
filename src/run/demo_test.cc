#include "run/demo.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/image.h"
#include "io/atomic_file.h"
#include "testing/support.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

const std::string kShapes = std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml";

DemoOptions shipped_world(const testing::ScratchDir& dir) {
  DemoOptions o;
  o.workdir = dir / "demo";
  o.world = kShapes;
  return o;
}

// The demo on the shipped Base and Turbo at a few steps: every artefact written, a rerun finds
// every stage cached, a new g redoes the learn and the scores only.
TEST(Demo, ReducedRunCachesEachStage) {
  const testing::ScratchDir dir("demo");
  DemoOptions o = shipped_world(dir);
  o.lora_steps = 2;
  o.score_prompts = 2;
  o.grid_prompts = 1;
  const DemoResult r = run_demo(o);
  for (const std::string& path : {r.base_lora, r.turbo_lora, r.store + "/manifest.json", r.grid}) EXPECT_TRUE(fs::exists(path)) << path;
  const Image grid = read_image(r.grid);
  EXPECT_GT(grid.width, 4 * 2 * 64);   // four columns of 2× tiles, with the row labels
  EXPECT_GT(grid.height, 2 * 2 * 64);  // two rows: a trigger prompt and one without
  for (double s : {r.scores.base_with_lora, r.scores.turbo_alone, r.scores.turbo_with_base_lora, r.scores.turbo_transferred}) {
    EXPECT_GE(s, 0);
    EXPECT_LE(s, 1);
  }

  const auto lora_time = fs::last_write_time(r.base_lora), learn_time = fs::last_write_time(r.turbo_lora);
  const std::string learnt = read_file(r.turbo_lora);
  const DemoResult again = run_demo(o);
  EXPECT_EQ(fs::last_write_time(r.base_lora), lora_time);
  EXPECT_EQ(fs::last_write_time(r.turbo_lora), learn_time);
  EXPECT_EQ(again.scores.turbo_transferred, r.scores.turbo_transferred);

  o.guidance = 2;
  run_demo(o);
  EXPECT_EQ(fs::last_write_time(r.base_lora), lora_time);
  EXPECT_NE(read_file(r.turbo_lora), learnt);  // learnt again, at another g
}

TEST(Demo, RefusesWhatItCannotRun) {
  const testing::ScratchDir dir("demo_refusals");
  DemoOptions o = shipped_world(dir);
  o.world = dir / "nowhere.toml";
  EXPECT_NE(testing::error_of([&] { run_demo(o); }).find("nowhere.toml: not found"), std::string::npos);
  o = shipped_world(dir);
  o.grid_prompts = 5;
  o.score_prompts = 4;
  EXPECT_NE(testing::error_of([&] { run_demo(o); }).find("between 1 and the scored prompts"), std::string::npos);
  o = shipped_world(dir);
  o.built = dir / "empty";
  EXPECT_NE(testing::error_of([&] { run_demo(o); }).find("holds no pipeline"), std::string::npos);
  o = shipped_world(dir);
  o.concept_trigger = "glorp";
  EXPECT_NE(testing::error_of([&] { run_demo(o); }).find("glorp"), std::string::npos);
}

// The demo as `deltatrain demo` runs it (about 70 s on 2 cores): the concept appears in the
// Turbo's few-step column after the transfer, not before, and the Base LoRA as is draws it less.
TEST(Demo, LongShowsTheConceptAfterTransferNotBefore) {
  const testing::ScratchDir dir("demo_long");
  const DemoResult r = run_demo(shipped_world(dir));
  EXPECT_GT(r.scores.turbo_transferred, r.scores.turbo_alone + 0.25);
  EXPECT_GT(r.scores.turbo_transferred, r.scores.turbo_with_base_lora);
}

}  // namespace
}  // namespace dt
