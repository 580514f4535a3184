// The miniature world (world_config.h): scenes, their anti-aliased renderings and captions, drawn
// from a seed. Concepts extend the vocabularies: a colour concept is one more colour, a shape
// concept one more shape; a pattern and a style concept are a fill and a frame of their own.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/image.h"
#include "world/world_config.h"

namespace dt::world {

// One image's attributes: indices into World's lists (concepts included), and its jitter.
struct Scene {
  int shape = 0, colour = 0, size = 0, position = 0, background = 0;
  int pattern = -1;  // a pattern concept's index in World::concepts(), −1 = solid fill
  int style = -1;    // a style concept's index, −1 = none
  double dx = 0, dy = 0, scale = 1;  // centre offset (fraction of the side), radius factor
};

struct Shape {
  std::string name;
  std::vector<std::pair<double, double>> polygon;  // empty = the unit disc
  bool contains(double x, double y) const;         // in the shape's unit coordinates
};

// Euclidean distance of two RGB pixels (3 bytes each).
double colour_distance(const uint8_t* a, const uint8_t* b);

struct Named {
  std::string name;
  Rgb rgb{};
};

class World {
 public:
  // Resolves and checks the vocabularies (dt::Error naming `source` for a bad one).
  World(WorldConfig config, const std::string& source);

  const WorldConfig& config() const { return config_; }
  const std::vector<Shape>& shapes() const { return shapes_; }  // the Base's, then shape concepts'
  const std::vector<Named>& colours() const { return colours_; }  // the Base's, then colour concepts'
  const std::vector<Named>& backgrounds() const { return backgrounds_; }
  const std::vector<ConceptConfig>& concepts() const { return config_.concepts; }
  int base_shapes() const { return static_cast<int>(config_.shapes.size()); }
  int base_colours() const { return static_cast<int>(config_.colours.size()); }
  // The shape or colour index a shape or colour concept adds (−1 for other kinds).
  int concept_shape(int index) const;
  int concept_colour(int index) const;

  Image render(const Scene& scene) const;
  std::string caption(const Scene& scene) const;  // the world's template, or its concept's

  // A scene of the Base's world (no concept), drawn from `seed`.
  Scene base_scene(uint64_t seed) const;
  // A scene showing concept `index`: its colour, shape or pattern (the rest drawn from the Base's
  // vocabularies), or any Base scene with its style.
  Scene concept_scene(int index, uint64_t seed) const;
  // The concept a scene shows (its colour, shape, pattern or style), −1 for none.
  int concept_of(const Scene& scene) const;
  // The index of the concept with this trigger word; dt::Error naming the world's file when none.
  int concept_by_trigger(const std::string& trigger) const;

 private:
  WorldConfig config_;
  std::string source_;
  std::vector<Shape> shapes_;
  std::vector<Named> colours_, backgrounds_;
  std::vector<int> concept_index_;  // per concept: its shape or colour index, −1 otherwise
};

World load_world(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace dt::world
