#include "run/world_build.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "testing/shapes_world.h"
#include "testing/support.h"

namespace dt {
namespace {

std::string with_text_length(const testing::ScratchDir& dir, int64_t length) {
  std::string text = read_file(testing::tiny_shapes_world(dir));
  const std::string family = "family = \"zimage\"\n";
  text.insert(text.find(family) + family.size(), "text_max_length = " + std::to_string(length) + "\n");
  const std::string path = dir / ("text" + std::to_string(length) + ".toml");
  write_file_atomic(path, text);
  return path;
}

// A world that shortens the prompts writes its length into the pipelines' tokenizer, and refuses one
// that would cut a caption off (the pipelines truncate silently), naming the world file and the
// caption, before any training.
TEST(WorldBuild, ShortenedPromptsAreWrittenAndMustHoldEveryCaption) {
  testing::ScratchDir dir("world_build");
  WorldBuildOptions o;
  o.out = dir / "build";
  o.world = with_text_length(dir, 24);
  try {
    build_world(o);
    FAIL() << "24 tokens hold no caption of the shapes world with its chat template";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find(o.world), 0u) << message;
    EXPECT_NE(message.find("cuts the caption 'a "), std::string::npos) << message;
    EXPECT_FALSE(std::filesystem::exists(dir / "build/base/transformer")) << "refused before training";
  }

  o.world = with_text_length(dir, -1);
  EXPECT_THROW(build_world(o), Error);

  o.world = with_text_length(dir, 80);
  const WorldBuild built = build_world(o);
  EXPECT_EQ(read_json_file(built.base + "/tokenizer/tokenizer_config.json")["model_max_length"], 80);
  EXPECT_EQ(read_json_file(built.turbo + "/tokenizer/tokenizer_config.json")["model_max_length"], 80);
}

TEST(WorldBuild, RefusesAModelsTableWithoutAFamily) {
  testing::ScratchDir dir("world_build_family");
  std::string text = read_file(testing::tiny_shapes_world(dir));
  const std::string family = "family = \"zimage\"\n";
  text.erase(text.find(family), family.size());
  WorldBuildOptions o;
  o.world = dir / "no-family.toml";
  o.out = dir / "build";
  write_file_atomic(o.world, text);
  EXPECT_EQ(testing::error_of([&] { build_world(o); }), o.world + ": a [[models]] table has no family");
}

}  // namespace
}  // namespace dt
