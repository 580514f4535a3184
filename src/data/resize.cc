#include "data/resize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace dt {
namespace {

constexpr double kLobes = 3.0;

double lanczos(double x) {
  x = std::abs(x);
  if (x < 1e-12) return 1.0;
  if (x >= kLobes) return 0.0;
  const double px = M_PI * x;
  return kLobes * std::sin(px) * std::sin(px / kLobes) / (px * px);
}

// The taps of one output coordinate: source range [first, first + weights.size()).
struct Taps {
  int64_t first = 0;
  std::vector<float> weights;
};

// Taps for output coordinates [begin, end) of an in_size → out_size resampling. When shrinking,
// the kernel is stretched by in/out so every source pixel contributes (antialiasing).
std::vector<Taps> make_taps(int64_t in_size, int64_t out_size, int64_t begin, int64_t end) {
  const double step = double(in_size) / double(out_size);
  const double stretch = std::max(step, 1.0);
  const double support = kLobes * stretch;
  std::vector<Taps> taps;
  taps.reserve(size_t(end - begin));
  for (int64_t o = begin; o < end; ++o) {
    const double center = (double(o) + 0.5) * step;
    const int64_t lo = std::max<int64_t>(int64_t(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(int64_t(center + support + 0.5), in_size);
    Taps t;
    t.first = lo;
    double sum = 0.0;
    std::vector<double> w;
    for (int64_t i = lo; i < hi; ++i) w.push_back(lanczos((double(i) - center + 0.5) / stretch)), sum += w.back();
    for (double x : w) t.weights.push_back(float(sum != 0.0 ? x / sum : 0.0));
    taps.push_back(std::move(t));
  }
  return taps;
}

uint8_t to_byte(float v) { return uint8_t(std::clamp(std::lround(v), 0L, 255L)); }

}  // namespace

Image resize_crop(const Image& rgb, const Crop& crop) {
  if (rgb.channels != 3) throw Error("resize: expected an RGB image");
  if (crop.resized_width <= 0 || crop.resized_height <= 0 || crop.width <= 0 || crop.height <= 0 || crop.x < 0 ||
      crop.y < 0 || crop.x + crop.width > crop.resized_width || crop.y + crop.height > crop.resized_height)
    throw Error("resize: crop window outside the resized image");
  const auto columns = make_taps(rgb.width, crop.resized_width, crop.x, crop.x + crop.width);
  const auto rows = make_taps(rgb.height, crop.resized_height, crop.y, crop.y + crop.height);
  const int64_t rows_lo = rows.front().first, rows_hi = rows.back().first + int64_t(rows.back().weights.size());

  // Horizontal pass over the source rows the vertical pass reads: [rows_hi - rows_lo, width, 3].
  std::vector<float> across(size_t((rows_hi - rows_lo) * crop.width * 3));
  for (int64_t y = rows_lo; y < rows_hi; ++y) {
    float* out = across.data() + (y - rows_lo) * crop.width * 3;
    for (int64_t x = 0; x < crop.width; ++x) {
      const Taps& t = columns[size_t(x)];
      float r = 0, g = 0, b = 0;
      const uint8_t* p = rgb.at(t.first, y);
      for (float w : t.weights) r += w * p[0], g += w * p[1], b += w * p[2], p += 3;
      out[3 * x] = r, out[3 * x + 1] = g, out[3 * x + 2] = b;
    }
  }
  Image out;
  out.width = crop.width, out.height = crop.height, out.channels = 3;
  out.pixels.resize(size_t(crop.width * crop.height * 3));
  std::vector<float> acc(size_t(crop.width * 3));
  for (int64_t y = 0; y < crop.height; ++y) {
    const Taps& t = rows[size_t(y)];
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (size_t k = 0; k < t.weights.size(); ++k) {
      const float w = t.weights[k];
      const float* src = across.data() + (t.first + int64_t(k) - rows_lo) * crop.width * 3;
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += w * src[i];
    }
    uint8_t* dst = out.at(0, y);
    for (size_t i = 0; i < acc.size(); ++i) dst[i] = to_byte(acc[i]);
  }
  return out;
}

}  // namespace dt
