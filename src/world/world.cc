#include "world/world.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "world/latent_space.h"

namespace dt::world {
namespace {

// Colours on a shape must stand out from every background by this much (RGB distance) for the
// scorer to separate shape from background at any anti-aliased coverage above one half.
constexpr double kMinContrast = 80;

Rgb colour_of(const std::string& text, const std::string& where, const std::string& source) {
  try {
    return parse_color(text);
  } catch (const Error& e) {
    throw file_error(source, where + ": " + e.what());
  }
}

Shape shape_of(const std::string& name, const std::vector<double>& points, const std::string& where,
               const std::string& source) {
  Shape s{name, {}};
  if (points.empty()) return s;
  if (points.size() % 2 != 0 || points.size() < 6)
    throw file_error(source, where + ": a polygon needs x, y pairs of at least three points");
  for (size_t i = 0; i < points.size(); i += 2) {
    if (std::hypot(points[i], points[i + 1]) > 1.001)  // written to 4 decimals
      throw file_error(source, where + ": point " + std::to_string(i / 2) + " lies outside the unit circle");
    s.polygon.emplace_back(points[i], points[i + 1]);
  }
  return s;
}

// The template with {key} replaced by its value, for each key.
std::string fill_template(std::string text, const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [key, value] : values) {
    const std::string slot = "{" + key + "}";
    for (auto at = text.find(slot); at != std::string::npos; at = text.find(slot, at + value.size()))
      text.replace(at, slot.size(), value);
  }
  return text;
}

// Integers and uniform numbers from a 64-bit Mersenne Twister, whose output the standard fixes
// (the standard distributions are not the same in every library).
class Draw {
 public:
  explicit Draw(uint64_t seed) : rng_(seed) {}
  int index(size_t n) { return static_cast<int>(rng_() % n); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

 private:
  std::mt19937_64 rng_;
};

}  // namespace

double colour_distance(const uint8_t* a, const uint8_t* b) {
  double s = 0;
  for (int c = 0; c < 3; ++c) s += (double(a[c]) - b[c]) * (double(a[c]) - b[c]);
  return std::sqrt(s);
}

bool Shape::contains(double x, double y) const {
  if (polygon.empty()) return x * x + y * y <= 1.0;
  bool inside = false;  // even-odd rule
  for (size_t i = 0, j = polygon.size() - 1; i < polygon.size(); j = i++) {
    const auto [xi, yi] = polygon[i];
    const auto [xj, yj] = polygon[j];
    if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

World::World(WorldConfig config, const std::string& source) : config_(std::move(config)), source_(source) {
  const WorldConfig& c = config_;
  if (c.size < 16 || c.size > 1024) throw file_error(source, "size must be 16 to 1024 pixels");
  if (c.supersample < 1 || c.supersample > 16) throw file_error(source, "supersample must be 1 to 16");
  if (c.jitter < 0 || c.jitter > 0.1) throw file_error(source, "jitter must be 0 to 0.1");
  if (c.shapes.empty() || c.colours.empty() || c.sizes.empty() || c.positions.empty() || c.backgrounds.empty())
    throw file_error(source, "shapes, colours, sizes, positions and backgrounds each need at least one entry");
  for (size_t i = 0; i < c.shapes.size(); ++i)
    shapes_.push_back(shape_of(c.shapes[i].name, c.shapes[i].points, "shapes[" + std::to_string(i) + "]", source));
  for (size_t i = 0; i < c.colours.size(); ++i)
    colours_.push_back({c.colours[i].name, colour_of(c.colours[i].rgb, "colours[" + std::to_string(i) + "]", source)});
  for (size_t i = 0; i < c.backgrounds.size(); ++i)
    backgrounds_.push_back(
        {c.backgrounds[i].name, colour_of(c.backgrounds[i].rgb, "backgrounds[" + std::to_string(i) + "]", source)});

  std::vector<std::pair<std::string, Rgb>> on_shapes;  // every colour drawn over a background
  for (const auto& col : colours_) on_shapes.emplace_back("colour " + col.name, col.rgb);
  double frame = 0;  // the widest style frame
  for (size_t k = 0; k < c.concepts.size(); ++k) {
    const ConceptConfig& cc = c.concepts[k];
    const std::string where = "concepts[" + std::to_string(k) + "] (" + cc.trigger + ")";
    if (cc.trigger.empty()) throw file_error(source, where + ": no trigger word");
    if (cc.images < 1) throw file_error(source, where + ": images must be at least 1");
    const Rgb rgb = colour_of(cc.rgb, where, source);
    concept_index_.push_back(-1);
    if (cc.kind == "colour") {
      concept_index_.back() = static_cast<int>(colours_.size());
      colours_.push_back({cc.trigger, rgb});
      on_shapes.emplace_back(where, rgb);
    } else if (cc.kind == "shape") {
      if (cc.points.empty()) throw file_error(source, where + ": a shape concept needs its polygon points");
      concept_index_.back() = static_cast<int>(shapes_.size());
      shapes_.push_back(shape_of(cc.trigger, cc.points, where, source));
    } else if (cc.kind == "pattern" || cc.kind == "style") {
      if (cc.caption.find("{trigger}") == std::string::npos)
        throw file_error(source, where + ": a " + cc.kind + " concept needs a caption template with {trigger}");
      if (cc.kind == "pattern" && (cc.period < 2.0 / c.size || cc.period > 0.5))
        throw file_error(source, where + ": period must be 2 pixels to half the side");
      if (cc.kind == "style" && (cc.width * c.size < 2 || cc.width > 0.2))
        throw file_error(source, where + ": width must be 2 pixels to a fifth of the side");
      if (cc.kind == "style") frame = std::max(frame, cc.width);
      on_shapes.emplace_back(where, rgb);
    } else {
      throw file_error(source, where + ": kind '" + cc.kind + "' is not one of colour, shape, pattern, style");
    }
  }
  for (const auto& [what, rgb] : on_shapes)
    for (const auto& bg : backgrounds_)
      if (colour_distance(rgb.data(), bg.rgb.data()) < kMinContrast)
        throw file_error(source, what + " is too close to background " + bg.name + " for the scorer (RGB distance " +
                                     std::to_string(static_cast<int>(colour_distance(rgb.data(), bg.rgb.data()))) + " < 80)");
  // Every shape stays whole inside the image (and inside a style's frame), whatever its jitter.
  for (const auto& size : c.sizes) {
    if (size.radius <= 0) throw file_error(source, "size " + size.name + ": radius must be positive");
    for (const auto& p : c.positions) {
      const double reach = size.radius * (1 + c.jitter) + c.jitter;
      if (p.x - reach < frame || p.x + reach > 1 - frame || p.y - reach < frame || p.y + reach > 1 - frame)
        throw file_error(source, "a " + size.name + " shape at " + p.name + " would leave the image (or cross a style's frame)");
    }
  }
  latent_vae_config(c, source);  // a [vae] table that makes no VAE of these images is a mistake in the file
}

int World::concept_shape(int index) const {
  return concepts().at(index).kind == "shape" ? concept_index_.at(index) : -1;
}
int World::concept_colour(int index) const {
  return concepts().at(index).kind == "colour" ? concept_index_.at(index) : -1;
}

Image World::render(const Scene& s) const {
  const int64_t n = config_.size, ss = config_.supersample;
  const Shape& shape = shapes_.at(s.shape);
  const Rgb fill = colours_.at(s.colour).rgb, bg = backgrounds_.at(s.background).rgb;
  const PositionConfig& at = config_.positions.at(s.position);
  const double cx = at.x + s.dx, cy = at.y + s.dy, r = config_.sizes.at(s.size).radius * s.scale;
  const ConceptConfig* pattern = s.pattern >= 0 ? &concepts().at(s.pattern) : nullptr;
  const ConceptConfig* style = s.style >= 0 ? &concepts().at(s.style) : nullptr;
  const Rgb stripe = pattern ? parse_color(pattern->rgb) : Rgb{}, frame = style ? parse_color(style->rgb) : Rgb{};
  Image image{n, n, 3, std::vector<uint8_t>(static_cast<size_t>(n * n * 3))};
  for (int64_t y = 0; y < n; ++y)
    for (int64_t x = 0; x < n; ++x) {
      double sum[3] = {0, 0, 0};
      for (int64_t sy = 0; sy < ss; ++sy)
        for (int64_t sx = 0; sx < ss; ++sx) {
          const double u = (x + (sx + 0.5) / ss) / n, v = (y + (sy + 0.5) / ss) / n;
          Rgb c = bg;
          if (shape.contains((u - cx) / r, (v - cy) / r)) {
            // 45° stripes: the coordinate across them is (u + v)/√2, in periods.
            const bool striped = pattern && std::fmod((u + v) / (std::sqrt(2.0) * pattern->period), 1.0) < 0.5;
            c = striped ? stripe : fill;
          }
          if (style && (u < style->width || u > 1 - style->width || v < style->width || v > 1 - style->width)) c = frame;
          for (int k = 0; k < 3; ++k) sum[k] += c[k];
        }
      uint8_t* p = image.at(x, y);
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::lround(sum[k] / static_cast<double>(ss * ss)));
    }
  return image;
}

std::string World::caption(const Scene& s) const {
  const int shown = concept_of(s);
  const std::string& text = shown >= 0 && !concepts()[shown].caption.empty() ? concepts()[shown].caption : config_.caption;
  return fill_template(text, {{"size", config_.sizes.at(s.size).name},
                              {"colour", colours_.at(s.colour).name},
                              {"shape", shapes_.at(s.shape).name},
                              {"position", config_.positions.at(s.position).name},
                              {"background", backgrounds_.at(s.background).name},
                              {"trigger", shown >= 0 ? concepts()[shown].trigger : std::string()}});
}

Scene World::base_scene(uint64_t seed) const {
  Draw d(seed);
  Scene s;
  s.shape = d.index(config_.shapes.size());
  s.colour = d.index(config_.colours.size());
  s.size = d.index(config_.sizes.size());
  s.position = d.index(config_.positions.size());
  s.background = d.index(backgrounds_.size());
  s.dx = d.uniform(-config_.jitter, config_.jitter);
  s.dy = d.uniform(-config_.jitter, config_.jitter);
  s.scale = 1 + d.uniform(-config_.jitter, config_.jitter);
  return s;
}

Scene World::concept_scene(int index, uint64_t seed) const {
  Scene s = base_scene(seed);
  const std::string& kind = concepts().at(index).kind;
  if (kind == "colour") s.colour = concept_colour(index);
  if (kind == "shape") s.shape = concept_shape(index);
  if (kind == "pattern") s.pattern = index;
  if (kind == "style") s.style = index;
  return s;
}

int World::concept_of(const Scene& s) const {
  for (int k = 0; k < static_cast<int>(concepts().size()); ++k)
    if (concept_index_[k] >= 0 ? (concepts()[k].kind == "colour" ? s.colour : s.shape) == concept_index_[k]
                               : (concepts()[k].kind == "pattern" ? s.pattern : s.style) == k)
      return k;
  return -1;
}

int World::concept_by_trigger(const std::string& trigger) const {
  for (int k = 0; k < static_cast<int>(concepts().size()); ++k)
    if (concepts()[k].trigger == trigger) return k;
  throw file_error(source_, "no concept with trigger '" + trigger + "'");
}

namespace {

// Tables of `overlay` merge into those of `base` key by key; any other value (arrays of tables
// included) replaces the base's.
void merge_into(toml::table& base, const toml::table& overlay) {
  for (const auto& [key, node] : overlay) {
    toml::table* below = base[key].as_table();
    if (below && node.is_table())
      merge_into(*below, *node.as_table());
    else
      base.insert_or_assign(key, node);
  }
}

toml::table parse_toml(const std::string& text, const std::string& path) {
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw file_error(path, "line " + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
}

// A world file with its `extends` chain resolved (paths relative to the file that names them).
toml::table world_table(const std::string& path, int depth) {
  if (depth > 8) throw file_error(path, "'extends' chains more than 8 files (a cycle?)");
  toml::table table = parse_toml(read_file(path), path);
  const toml::node* extends = table.get("extends");
  if (!extends) return table;
  if (!extends->is_string()) throw file_error(path, "setting 'extends' must be a string (a world file)");
  const std::filesystem::path base = std::filesystem::path(path).parent_path() / *extends->value<std::string>();
  table.erase("extends");
  toml::table merged = world_table(base.string(), depth + 1);
  merge_into(merged, table);
  return merged;
}

}  // namespace

World load_world(const std::string& path, const std::vector<std::string>& overrides) {
  // A file that extends none is read as written (the merge's printing would round its numbers anew).
  std::string text = read_file(path);
  if (parse_toml(text, path).contains("extends")) {
    std::ostringstream merged;
    merged << world_table(path, 0);
    text = merged.str();
  }
  WorldConfig config;
  read_config_text(text, path, overrides, config);
  return World(std::move(config), path);
}

}  // namespace dt::world
