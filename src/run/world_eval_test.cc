#include "run/world_eval.h"

#include <gtest/gtest.h>

namespace dt {
namespace {

// Clean renderings of the prompted scenes score 1 on every attribute; renderings of other scenes
// score by hand count: with every second image's colour changed, colour and all are one half.
TEST(WorldEval, ScoresCleanRenderingsAgainstThePromptedScenes) {
  const world::World w = world::load_world(std::string(DT_SOURCE_DIR) + "/worlds/shapes.toml");
  WorldEvalOptions o;
  o.prompts = 20;
  const std::vector<world::Scene> scenes = eval_scenes(w, o);
  ASSERT_EQ(scenes.size(), 20u);
  EXPECT_EQ(scenes[3].shape, w.base_scene(o.seed + 3).shape);
  std::vector<Image> images;
  for (const auto& s : scenes) images.push_back(w.render(s));
  const WorldScore clean = score_images(w, scenes, images);
  for (const char* attribute : {"shape", "colour", "size", "position", "background", "pattern", "style", "all"})
    EXPECT_EQ(clean.accuracy.at(attribute), 1.0) << attribute;
  EXPECT_EQ(clean.accuracy.count("concept"), 0u);
  EXPECT_LT(clean.invalid, 0.05);

  std::vector<Image> other;
  for (size_t i = 0; i < scenes.size(); ++i) {
    world::Scene s = scenes[i];
    if (i % 2) s.colour = (s.colour + 1) % w.base_colours();
    other.push_back(w.render(s));
  }
  const WorldScore half = score_images(w, scenes, other);
  EXPECT_EQ(half.accuracy.at("colour"), 0.5);
  EXPECT_EQ(half.accuracy.at("all"), 0.5);
  EXPECT_EQ(half.accuracy.at("shape"), 1.0);

  o.concept_index = 0;  // vexil, a colour
  const std::vector<world::Scene> concept_scenes = eval_scenes(w, o);
  std::vector<Image> drawn, not_drawn;
  for (const auto& s : concept_scenes) {
    drawn.push_back(w.render(s));
    not_drawn.push_back(w.render(w.base_scene(o.seed)));
  }
  EXPECT_EQ(score_images(w, concept_scenes, drawn).accuracy.at("concept"), 1.0);
  EXPECT_EQ(score_images(w, concept_scenes, not_drawn).accuracy.at("concept"), 0.0);
}

}  // namespace
}  // namespace dt
