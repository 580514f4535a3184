// How well a model draws a miniature world (world/world.h): images sampled from the captions of
// held-out scenes, read back by the world's scorer (world/score.h) and compared with the scenes
// they were prompted with. The efficacy measurements of delta transfer are built on it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/image.h"
#include "sample/generate.h"
#include "world/world.h"

namespace dt {

struct WorldEvalOptions {
  SamplingModels models;
  std::vector<LoraFile> loras;  // merged at their strengths
  int64_t prompts = 100;
  int64_t steps = 30;
  double cfg = 1;        // standard CFG weight (> 1: CFG with the empty negative prompt)
  int concept_index = -1;  // scenes of this concept (index in World::concepts()), or −1: the Base's world
  // Scene i is drawn from seed + i and sampled from noise seed + i. The default lies far from the
  // seeds `world render` gives datasets (1, 2, ...), so the scenes are held out.
  uint64_t seed = 1'000'000;
};

// Scorer's verdict over the sampled images.
struct WorldScore {
  int64_t images = 0;
  // Attribute → fraction of images read back as prompted (world::compare_attributes: shape,
  // colour, size, position, background, pattern, style), all (every one of those), and with a
  // concept `concept` (the image shows it).
  std::map<std::string, double> accuracy;
  double invalid = 0;  // mean invalid_fraction: how far the images are from clean renderings
};

// Options sampling `model` (a pipeline folder: its transformer, text encoder and VAE) with `loras`
// at strength 1, `steps` steps at CFG weight `cfg`, on `prompts` scenes of `concept_index` from `seed`.
WorldEvalOptions world_eval_options(const Family& family, const std::string& model, const std::vector<std::string>& loras,
                                    int64_t steps, double cfg, int64_t prompts, int concept_index = -1,
                                    uint64_t seed = WorldEvalOptions{}.seed);

// The prompted scenes of `options` (their captions are the prompts).
std::vector<world::Scene> eval_scenes(const world::World& world, const WorldEvalOptions& options);

// Scores images against the scenes they were prompted with.
WorldScore score_images(const world::World& world, const std::vector<world::Scene>& prompted,
                        const std::vector<Image>& images);

// Samples the eval scenes' captions with the model and scores the images; `images` (optional)
// receives them.
WorldScore evaluate_world(const world::World& world, const WorldEvalOptions& options, std::vector<Image>* images = nullptr);

// Mean RGB distance per pixel between images of the same prompts and seeds (drift, closeness).
double mean_pixel_distance(const std::vector<Image>& a, const std::vector<Image>& b);

}  // namespace dt
