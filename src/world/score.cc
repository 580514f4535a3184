#include "world/score.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace dt::world {
namespace {

double distance(const uint8_t* p, const Rgb& c) { return colour_distance(p, c.data()); }

template <class List>
int nearest(const List& list, const uint8_t* p) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(list.size()); ++i)
    if (distance(p, list[i].rgb) < distance(p, list[best].rgb)) best = i;
  return best;
}

// The region inside a style's frame (the whole image without one), in pixels [lo, hi).
struct Region {
  int64_t lo, hi;
  bool contains(int64_t x, int64_t y) const { return x >= lo && x < hi && y >= lo && y < hi; }
};

// The style concept whose frame colour fills its band (most of it), or −1.
int read_style(const World& w, const Image& image) {
  const int64_t n = image.width;
  int best = -1;
  double best_fraction = 0.8;  // below this there is no frame
  for (int k = 0; k < static_cast<int>(w.concepts().size()); ++k) {
    const ConceptConfig& c = w.concepts()[k];
    if (c.kind != "style") continue;
    const Rgb rgb = parse_color(c.rgb);
    const int64_t band = std::max<int64_t>(1, static_cast<int64_t>(std::floor(c.width * n)));
    int64_t in = 0, all = 0;
    for (int64_t y = 0; y < n; ++y)
      for (int64_t x = 0; x < n; ++x) {
        if (x >= band && x < n - band && y >= band && y < n - band) continue;
        ++all;
        in += distance(image.at(x, y), rgb) < 40;
      }
    const double fraction = static_cast<double>(in) / static_cast<double>(all);
    if (fraction > best_fraction) {
      best = k;
      best_fraction = fraction;
    }
  }
  return best;
}

// Silhouette of a candidate shape at a centre and radius: 1 where it covers half of a pixel or
// more (2 × 2 samples), only inside `r`.
std::vector<uint8_t> silhouette(const World& w, const Shape& shape, double cx, double cy, double radius, Region r) {
  const int64_t n = w.config().size;
  std::vector<uint8_t> out(static_cast<size_t>(n * n), 0);
  for (int64_t y = r.lo; y < r.hi; ++y)
    for (int64_t x = r.lo; x < r.hi; ++x) {
      int covered = 0;
      for (int s = 0; s < 4; ++s) {
        const double u = (x + 0.25 + 0.5 * (s % 2)) / n, v = (y + 0.25 + 0.5 * (s / 2)) / n;
        covered += shape.contains((u - cx) / radius, (v - cy) / radius);
      }
      out[static_cast<size_t>(y * n + x)] = covered >= 2;
    }
  return out;
}

}  // namespace

Scene read_scene(const World& w, const Image& image) {
  const int64_t n = w.config().size;
  if (image.width != n || image.height != n || image.channels != 3)
    throw Error("world: the image is " + std::to_string(image.width) + "x" + std::to_string(image.height) + " with " +
                std::to_string(image.channels) + " channels, the world's are " + std::to_string(n) + "x" +
                std::to_string(n) + " RGB");
  Scene s;
  s.style = read_style(w, image);
  const int64_t frame = s.style >= 0 ? static_cast<int64_t>(std::ceil(w.concepts()[s.style].width * n)) + 1 : 0;
  const Region inside{frame, n - frame};

  // Background: the per-channel median of a two-pixel ring just inside.
  std::vector<uint8_t> ring[3];
  for (int64_t y = inside.lo; y < inside.hi; ++y)
    for (int64_t x = inside.lo; x < inside.hi; ++x)
      if (x < inside.lo + 2 || x >= inside.hi - 2 || y < inside.lo + 2 || y >= inside.hi - 2)
        for (int k = 0; k < 3; ++k) ring[k].push_back(image.at(x, y)[k]);
  uint8_t median[3];
  for (int k = 0; k < 3; ++k) {
    std::nth_element(ring[k].begin(), ring[k].begin() + ring[k].size() / 2, ring[k].end());
    median[k] = ring[k][ring[k].size() / 2];
  }
  s.background = nearest(w.backgrounds(), median);
  const Rgb bg = w.backgrounds()[s.background].rgb;

  // Every colour that may lie on a shape: the fills, then the pattern concepts' stripes.
  std::vector<Named> paints = w.colours();
  std::vector<int> stripe_of;  // paints index → pattern concept (−1 for fills)
  stripe_of.assign(paints.size(), -1);
  for (int k = 0; k < static_cast<int>(w.concepts().size()); ++k)
    if (w.concepts()[k].kind == "pattern") {
      paints.push_back({w.concepts()[k].trigger, parse_color(w.concepts()[k].rgb)});
      stripe_of.push_back(k);
    }
  // Shape pixels: nearer to some paint than to the background. Pure ones (near a paint) vote.
  std::vector<uint8_t> mask(static_cast<size_t>(n * n), 0);
  std::vector<int64_t> votes(paints.size(), 0);
  int64_t shape_pixels = 0;
  for (int64_t y = inside.lo; y < inside.hi; ++y)
    for (int64_t x = inside.lo; x < inside.hi; ++x) {
      const uint8_t* p = image.at(x, y);
      const int paint = nearest(paints, p);
      if (distance(p, paints[paint].rgb) >= distance(p, bg)) continue;
      mask[static_cast<size_t>(y * n + x)] = 1;
      ++shape_pixels;
      if (distance(p, paints[paint].rgb) < 30) ++votes[paint];
    }
  int fill = 0, stripe = -1;
  for (int i = 0; i < static_cast<int>(paints.size()); ++i) {
    if (stripe_of[i] < 0 && votes[i] > votes[fill]) fill = i;
    if (stripe_of[i] >= 0 && votes[i] > 0.2 * static_cast<double>(shape_pixels) && (stripe < 0 || votes[i] > votes[stripe]))
      stripe = i;
  }
  s.colour = fill;
  s.pattern = stripe >= 0 ? stripe_of[stripe] : -1;

  // Shape: each candidate fitted to the mask's bounding box (its own box scaled and moved onto it),
  // the one whose silhouette then differs in the fewest pixels. Size and position: the nearest
  // radius and centre to that fit, so the jitter does not blur the shapes apart.
  int64_t x0 = n, x1 = -1, y0 = n, y1 = -1;
  for (int64_t y = inside.lo; y < inside.hi; ++y)
    for (int64_t x = inside.lo; x < inside.hi; ++x)
      if (mask[static_cast<size_t>(y * n + x)]) {
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  if (x1 < 0) return s;  // no shape at all: the first of each
  int64_t best = std::numeric_limits<int64_t>::max();
  double fit_radius = 0, fit_x = 0, fit_y = 0;
  for (int shape = 0; shape < static_cast<int>(w.shapes().size()); ++shape) {
    const Shape& candidate = w.shapes()[shape];
    double umin = -1, umax = 1, vmin = -1, vmax = 1;  // the unit disc's box
    if (!candidate.polygon.empty()) {
      umin = vmin = 1, umax = vmax = -1;
      for (const auto& [u, v] : candidate.polygon)
        umin = std::min(umin, u), umax = std::max(umax, u), vmin = std::min(vmin, v), vmax = std::max(vmax, v);
    }
    const double width = static_cast<double>(x1 + 1 - x0) / n, height = static_cast<double>(y1 + 1 - y0) / n;
    const double radius = 0.5 * (width / (umax - umin) + height / (vmax - vmin));
    const double cx = static_cast<double>(x0 + x1 + 1) / (2.0 * n) - radius * (umax + umin) / 2;
    const double cy = static_cast<double>(y0 + y1 + 1) / (2.0 * n) - radius * (vmax + vmin) / 2;
    const auto drawn = silhouette(w, candidate, cx, cy, radius, inside);
    int64_t differ = 0;
    for (size_t i = 0; i < mask.size(); ++i) differ += mask[i] != drawn[i];
    if (differ < best) {
      best = differ;
      s.shape = shape;
      fit_radius = radius, fit_x = cx, fit_y = cy;
    }
  }
  for (int size = 1; size < static_cast<int>(w.config().sizes.size()); ++size)
    if (std::abs(std::log(fit_radius / w.config().sizes[size].radius)) <
        std::abs(std::log(fit_radius / w.config().sizes[s.size].radius)))
      s.size = size;
  for (int pos = 1; pos < static_cast<int>(w.config().positions.size()); ++pos) {
    const PositionConfig &p = w.config().positions[pos], &q = w.config().positions[s.position];
    if (std::hypot(p.x - fit_x, p.y - fit_y) < std::hypot(q.x - fit_x, q.y - fit_y)) s.position = pos;
  }
  return s;
}

double invalid_fraction(const World& w, const Image& image, double tolerance) {
  Scene s = read_scene(w, image);
  const double j = w.config().jitter;
  const int64_t n = w.config().size;
  double best = 1;
  for (double dx : {-j, -j / 2, 0.0, j / 2, j})
    for (double dy : {-j, -j / 2, 0.0, j / 2, j})
      for (double scale : {1 - j, 1.0, 1 + j}) {
        s.dx = dx;
        s.dy = dy;
        s.scale = scale;
        const Image clean = w.render(s);
        int64_t off = 0;
        for (int64_t y = 0; y < n; ++y)
          for (int64_t x = 0; x < n; ++x) off += colour_distance(image.at(x, y), clean.at(x, y)) > tolerance;
        best = std::min(best, static_cast<double>(off) / static_cast<double>(n * n));
      }
  return best;
}

std::vector<std::pair<std::string, bool>> compare_attributes(const Scene& truth, const Scene& read) {
  return {{"shape", read.shape == truth.shape},           {"colour", read.colour == truth.colour},
          {"size", read.size == truth.size},              {"position", read.position == truth.position},
          {"background", read.background == truth.background}, {"pattern", read.pattern == truth.pattern},
          {"style", read.style == truth.style}};
}

}  // namespace dt::world
