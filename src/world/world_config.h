// A miniature world of procedural images with known attributes (one shape of some colour and size
// at some place on a background), the ground truth behind deltatrain's efficacy measurements. Its
// vocabularies, caption template, image size and the concepts the Base never sees are data: a world
// config (TOML, worlds/shapes.toml), one table per struct below.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dt::world {

// A shape: a polygon (x, y pairs, y down, inside the unit circle; filled even-odd, so a star or a
// cross may be non-convex), or a disc when `points` is empty. Scaled by a size's radius.
struct ShapeConfig {
  std::string name;
  std::vector<double> points;
  template <class V>
  void fields(V& v) {
    v("name", name, "the word for it in captions");
    v("points", points, "polygon x0, y0, x1, y1, ... in the unit circle (y down); empty = a disc");
  }
};

struct ColourConfig {
  std::string name;
  std::string rgb;
  template <class V>
  void fields(V& v) {
    v("name", name, "the word for it in captions");
    v("rgb", rgb, "\"#rrggbb\"");
  }
};

struct SizeConfig {
  std::string name;
  double radius = 0.2;
  template <class V>
  void fields(V& v) {
    v("name", name, "the word for it in captions");
    v("radius", radius, "the shape's radius as a fraction of the image side");
  }
};

struct PositionConfig {
  std::string name;
  double x = 0.5, y = 0.5;
  template <class V>
  void fields(V& v) {
    v("name", name, "the words for it in captions");
    v("x", x, "centre, fraction of the width from the left");
    v("y", y, "centre, fraction of the height from the top");
  }
};

// A concept the Base never sees: a trigger word and what it draws.
//   colour  the shape filled with `rgb`             (the trigger is its colour word)
//   shape   the polygon `points`                    (the trigger is its shape word)
//   pattern the fill striped with `rgb` every `period` of the side, at 45°
//   style   a frame of `rgb`, `width` of the side wide, around every image, prompted or not
struct ConceptConfig {
  std::string trigger;
  std::string kind;
  std::string rgb = "#000000";
  std::vector<double> points;
  double period = 0.08;
  double width = 0.06;
  std::string caption;
  int64_t images = 30;
  template <class V>
  void fields(V& v) {
    v("trigger", trigger, "the concept's word in captions");
    v("kind", kind, "colour, shape, pattern or style");
    v("rgb", rgb, "colour: the fill; pattern: the stripes; style: the frame");
    v("points", points, "shape: its polygon, as a shape's points");
    v("period", period, "pattern: stripe period as a fraction of the side");
    v("width", width, "style: frame width as a fraction of the side");
    v("caption", caption, "caption template of its images; empty = the world's (placeholders as there, and {trigger})");
    v("images", images, "how many images its dataset has");
  }
};

struct WorldConfig {
  int64_t size = 64;
  int64_t supersample = 4;
  double jitter = 0.02;
  std::string caption = "a {size} {colour} {shape} {position} on a {background} background";
  std::vector<ShapeConfig> shapes;
  std::vector<ColourConfig> colours;
  std::vector<SizeConfig> sizes;
  std::vector<PositionConfig> positions;
  std::vector<ColourConfig> backgrounds;
  std::vector<ConceptConfig> concepts;
  template <class V>
  void fields(V& v) {
    v("size", size, "image side in pixels");
    v("supersample", supersample, "anti-aliasing: samples per pixel along each axis");
    v("jitter", jitter, "random offset of the centre (fraction of the side) and relative change of the radius");
    v("caption", caption, "caption template: {size} {colour} {shape} {position} {background}");
    v("shapes", shapes, "the shapes the Base learns");
    v("colours", colours, "the fill colours the Base learns");
    v("sizes", sizes, "the sizes");
    v("positions", positions, "the places");
    v("backgrounds", backgrounds, "the background colours");
    v("concepts", concepts, "concepts the Base never sees, one LoRA each");
  }
};

}  // namespace dt::world
