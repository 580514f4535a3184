// A miniature world of procedural images with known attributes (one shape of some colour and size
// at some place on a background), the ground truth behind deltatrain's efficacy measurements. Its
// vocabularies, caption template, image size and the concepts the Base never sees are data: a world
// config (TOML, worlds/shapes.toml), one table per struct below.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "world/models_config.h"

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

// The world's latent space (`deltatrain world vae`): a diffusers autoencoder of a real model
// family's architecture, trained from scratch on the world's images (docs/world.md, "The latent
// space"). Its architecture and its training are data, like the rest of the world.
struct LatentSpaceConfig {
  std::string class_name = "AutoencoderKL";
  std::vector<int64_t> block_out_channels = {16, 32, 32, 32};
  int64_t layers_per_block = 1;
  int64_t norm_num_groups = 8;
  int64_t latent_channels = 16;
  bool mid_block_attention = true;
  double scaling_factor = 0.3611;
  double shift_factor = 0.1159;
  int64_t steps = 4500;
  int64_t batch_size = 16;
  double learning_rate = 2e-3;
  int64_t warmup_steps = 100;
  double kl_weight = 1e-6;
  int64_t images = 2000;
  int64_t held_out = 200;
  int64_t seed = 0;
  template <class V>
  void fields(V& v) {
    v("class", class_name, "AutoencoderKL (Z-Image, FLUX.1) or AutoencoderKLFlux2 (FLUX.2, with quant convs and BatchNorm statistics)");
    v("block_out_channels", block_out_channels, "channels of the 4 levels (4 levels: 8 pixels per latent, as the families need)");
    v("layers_per_block", layers_per_block, "ResNet blocks per encoder level (the decoder has one more)");
    v("norm_num_groups", norm_num_groups, "GroupNorm groups; divides every level's channels");
    v("latent_channels", latent_channels, "latent channels: 16 for Z-Image's AutoencoderKL, 32 for FLUX.2's");
    v("mid_block_attention", mid_block_attention, "the self-attention of the middle blocks");
    v("scaling_factor", scaling_factor, "AutoencoderKL: the family's latent scale, written into config.json (Z-Image: 0.3611)");
    v("shift_factor", shift_factor, "AutoencoderKL: the family's latent shift, written into config.json (Z-Image: 0.1159)");
    v("steps", steps, "training steps");
    v("batch_size", batch_size, "images per step");
    v("learning_rate", learning_rate, "AdamW's peak learning rate (linear warm-up, then a cosine decay to a tenth)");
    v("warmup_steps", warmup_steps, "steps of linear learning-rate warm-up");
    v("kl_weight", kl_weight, "weight of the KL divergence of the posterior (per latent element) against the reconstruction loss (per pixel)");
    v("images", images, "training images: scene seeds 0 to images - 1, the Base's world and each concept in turn");
    v("held_out", held_out, "images measured after training, from the scene seeds that follow the training ones");
    v("seed", seed, "seed of the initial weights, the batch order and the posterior samples");
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
  LatentSpaceConfig vae;
  std::vector<ModelsConfig> models;
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
    v("vae", vae, "the world's latent space: the autoencoder `deltatrain world vae` trains");
    v("models", models, "per model family, how `deltatrain world build` makes the world's Base and Turbo");
  }
};

}  // namespace dt::world
