#include "run/world_eval.h"

#include "world/score.h"

namespace dt {

WorldEvalOptions world_eval_options(const Family& family, const std::string& model, const std::vector<std::string>& loras,
                                    int64_t steps, double cfg, int64_t prompts, int concept_index, uint64_t seed) {
  WorldEvalOptions e;
  e.models = {&family, model, model, model, {}};
  for (const std::string& lora : loras) e.loras.push_back({lora, 1.0});
  e.steps = steps;
  e.cfg = cfg;
  e.prompts = prompts;
  e.concept_index = concept_index;
  e.seed = seed;
  return e;
}

std::vector<world::Scene> eval_scenes(const world::World& world, const WorldEvalOptions& o) {
  std::vector<world::Scene> scenes;
  for (int64_t i = 0; i < o.prompts; ++i) {
    const uint64_t seed = o.seed + static_cast<uint64_t>(i);
    scenes.push_back(o.concept_index >= 0 ? world.concept_scene(o.concept_index, seed) : world.base_scene(seed));
  }
  return scenes;
}

WorldScore score_images(const world::World& world, const std::vector<world::Scene>& prompted,
                        const std::vector<Image>& images) {
  WorldScore score;
  score.images = static_cast<int64_t>(images.size());
  const bool with_concept = !prompted.empty() && world.concept_of(prompted[0]) >= 0;
  std::map<std::string, int64_t> right;
  for (size_t i = 0; i < images.size(); ++i) {
    const world::Scene& want = prompted.at(i);
    const world::Scene got = world::read_scene(world, images[i]);
    bool all = true;
    for (const auto& [name, hit] : world::compare_attributes(want, got)) {
      right[name] += hit;
      all = all && hit;
    }
    right["all"] += all;
    if (with_concept) right["concept"] += world.concept_of(got) == world.concept_of(want);
    score.invalid += world::invalid_fraction(world, images[i]);
  }
  const double n = std::max<double>(1, static_cast<double>(images.size()));
  for (const auto& [name, count] : right) score.accuracy[name] = static_cast<double>(count) / n;
  score.invalid /= n;
  return score;
}

WorldScore evaluate_world(const world::World& world, const WorldEvalOptions& o, std::vector<Image>* images) {
  const std::vector<world::Scene> scenes = eval_scenes(world, o);
  std::vector<SamplePrompt> prompts;
  for (size_t i = 0; i < scenes.size(); ++i) {
    SamplePrompt p;
    p.prompt = world.caption(scenes[i]);
    p.seed = o.seed + i;
    p.width = p.height = world.config().size;
    p.steps = o.steps;
    p.cfg = o.cfg;
    prompts.push_back(p);
  }
  std::vector<Image> drawn = generate(o.models, o.loras, prompts);
  WorldScore score = score_images(world, scenes, drawn);
  if (images) *images = std::move(drawn);
  return score;
}

double mean_pixel_distance(const std::vector<Image>& a, const std::vector<Image>& b) {
  double total = 0;
  int64_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    for (size_t p = 0; p + 2 < a[i].pixels.size(); p += 3, ++n) total += world::colour_distance(&a[i].pixels[p], &b[i].pixels[p]);
  return n ? total / static_cast<double>(n) : 0;
}

}  // namespace dt
