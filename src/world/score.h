// Reads a world image back into its scene: every attribute the captions name, the concepts'
// included. The efficacy measurements score generated images with it; on clean renderings it is
// exact for ≥ 99% of the images of every attribute (world_test.cc measures it).
#pragma once
#include "world/world.h"

namespace dt::world {

// The scene an image shows (jitter not estimated: dx = dy = 0, scale = 1), by
//   style       a frame band of a style concept's colour,
//   background  the median of a ring just inside the image (or its frame), nearest background,
//   fill        the colour most pure shape pixels are nearest to,
//   pattern     a pattern concept's stripe colour on a fifth of the shape's pixels or more,
//   shape       the candidate that, fitted to the shape pixels' bounding box, differs from them in
//               the fewest pixels; size and position the nearest radius and centre to that fit.
Scene read_scene(const World& world, const Image& image);

// How far an image is from the world's own renderings: the fraction of its pixels more than
// `tolerance` (RGB distance) away from the rendering of the scene read back from it, with that
// scene's jitter fitted. A clean rendering scores ~0 (anti-aliased edges aside); noise, blur and
// half-formed shapes score higher.
double invalid_fraction(const World& world, const Image& image, double tolerance = 48);

// Whether each attribute of a scene read back is the one it was drawn with, in the order shape,
// colour, size, position, background, pattern, style (the jitter is not read, so not compared).
std::vector<std::pair<std::string, bool>> compare_attributes(const Scene& truth, const Scene& read);

}  // namespace dt::world
