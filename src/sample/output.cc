#include "sample/output.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include <ft2build.h>
#include FT_FREETYPE_H
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dt {

LoraFile parse_lora_file(const std::string& arg) {
  const size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon + 1 < arg.size()) {
    std::istringstream s(arg.substr(colon + 1));
    double strength;
    if (s >> strength && s.eof()) return {arg.substr(0, colon), strength};
  }
  return {arg, 1.0};
}

std::string parameters_text(const SampleInfo& info) {
  const SamplePrompt& p = info.prompt;
  std::ostringstream s;
  s << p.prompt << "\n";
  if (!p.negative_prompt.empty()) s << "Negative prompt: " << p.negative_prompt << "\n";
  s << "Steps: " << p.steps << ", Sampler: Euler (flow matching), CFG scale: " << p.cfg << ", Seed: " << p.seed
    << ", Size: " << p.width << "x" << p.height << ", Model: " << info.model << ", Family: " << info.family;
  for (const LoraFile& l : info.loras) s << ", Lora: " << l.path << ":" << l.strength;
  if (info.step >= 0) s << ", Training step: " << info.step;
  return s.str();
}

std::string parameters_json(const SampleInfo& info) {
  const SamplePrompt& p = info.prompt;
  nlohmann::json loras = nlohmann::json::array();
  for (const LoraFile& l : info.loras) loras.push_back({{"path", l.path}, {"strength", l.strength}});
  return nlohmann::json{{"prompt", p.prompt},   {"negative_prompt", p.negative_prompt},
                        {"seed", p.seed},       {"width", p.width},
                        {"height", p.height},   {"steps", p.steps},
                        {"cfg", p.cfg},         {"sampler", "euler"},
                        {"family", info.family}, {"model", info.model},
                        {"loras", loras},       {"step", info.step}}
      .dump();
}

SampleInfo read_parameters(const std::string& png_bytes, const std::string& name) {
  for (const auto& [key, value] : png_text(png_bytes, name)) {
    if (key != "deltatrain") continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(value);
      SampleInfo info;
      SamplePrompt& p = info.prompt;
      p.prompt = j.at("prompt").get<std::string>();
      p.negative_prompt = j.at("negative_prompt").get<std::string>();
      p.seed = j.at("seed").get<uint64_t>();
      p.width = j.at("width").get<int64_t>();
      p.height = j.at("height").get<int64_t>();
      p.steps = j.at("steps").get<int64_t>();
      p.cfg = j.at("cfg").get<double>();
      info.family = j.at("family").get<std::string>();
      info.model = j.at("model").get<std::string>();
      for (const auto& l : j.at("loras")) info.loras.push_back({l.at("path").get<std::string>(), l.at("strength").get<double>()});
      info.step = j.at("step").get<int64_t>();
      return info;
    } catch (const nlohmann::json::exception& e) {
      throw file_error(name, std::string("bad deltatrain parameters chunk: ") + e.what());
    }
  }
  throw file_error(name, "has no deltatrain parameters chunk (not a deltatrain sample)");
}

void write_sample_png(const std::string& path, const Image& image, const SampleInfo& info) {
  write_png(path, image, {{"parameters", parameters_text(info)}, {"deltatrain", parameters_json(info)}});
}

namespace {

#ifndef DT_FONT_FILE  // a build against scripts/bundle.sh's folder names the font in it
#define DT_FONT_FILE "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
#endif
constexpr const char* kFontFile = DT_FONT_FILE;

// DejaVu Sans at one pixel size, drawing dark grey text onto RGB images.
class TextPen {
 public:
  explicit TextPen(int pixels) {
    if (FT_Init_FreeType(&library_)) throw Error("FreeType failed to start");
    if (FT_New_Face(library_, kFontFile, 0, &face_)) {
      FT_Done_FreeType(library_);
      throw Error(std::string(kFontFile) + ": cannot read the font for grid labels (install Debian's fonts-dejavu-core)");
    }
    FT_Set_Pixel_Sizes(face_, 0, static_cast<FT_UInt>(pixels));
    ascender_ = static_cast<int>(face_->size->metrics.ascender >> 6);
  }
  ~TextPen() {
    FT_Done_Face(face_);
    FT_Done_FreeType(library_);
  }
  TextPen(const TextPen&) = delete;
  TextPen& operator=(const TextPen&) = delete;

  // Draws `text` (ASCII and Latin-1 as UTF-8 code points) with its top at y, clipped to `max_x`.
  void draw(Image& image, int x, int y, const std::string& text, int max_x) {
    const int baseline = y + ascender_;
    for (size_t i = 0; i < text.size();) {
      uint32_t code = static_cast<unsigned char>(text[i]);
      int length = code < 0x80 ? 1 : code < 0xE0 ? 2 : code < 0xF0 ? 3 : 4;
      if (length > 1) code &= 0x3F >> (length - 1);
      for (int k = 1; k < length && i + k < text.size(); ++k) code = (code << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
      i += static_cast<size_t>(length);
      if (FT_Load_Char(face_, code, FT_LOAD_RENDER)) continue;
      const FT_GlyphSlot g = face_->glyph;
      for (unsigned row = 0; row < g->bitmap.rows; ++row)
        for (unsigned col = 0; col < g->bitmap.width; ++col) {
          const int px = x + g->bitmap_left + static_cast<int>(col), py = baseline - g->bitmap_top + static_cast<int>(row);
          if (px < 0 || py < 0 || px >= std::min<int64_t>(max_x, image.width) || py >= image.height) continue;
          const int coverage = g->bitmap.buffer[row * static_cast<unsigned>(g->bitmap.pitch) + col];
          uint8_t* p = image.at(px, py);
          for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>((p[c] * (255 - coverage) + 40 * coverage) / 255);
        }
      x += static_cast<int>(g->advance.x >> 6);
    }
  }
  int line_height() const { return static_cast<int>(face_->size->metrics.height >> 6); }

 private:
  FT_Library library_ = nullptr;
  FT_Face face_ = nullptr;
  int ascender_ = 0;
};

}  // namespace

Image labelled_grid(const std::vector<std::vector<Image>>& rows, const std::vector<std::string>& column_labels,
                    const std::vector<std::string>& row_labels, int scale) {
  if (rows.empty() || rows[0].empty() || scale < 1) throw Error("a labelled grid needs at least one image");
  const int64_t w = rows[0][0].width * scale, h = rows[0][0].height * scale, columns = static_cast<int64_t>(rows[0].size());
  const int gap = 6;
  TextPen pen(12);
  const int line = pen.line_height() + 2;
  Image grid;
  grid.width = columns * (w + gap) + gap;
  grid.height = line + static_cast<int64_t>(rows.size()) * (line + h + gap) + gap;
  grid.pixels.assign(static_cast<size_t>(grid.width * grid.height * 3), 255);
  for (int64_t c = 0; c < columns && c < static_cast<int64_t>(column_labels.size()); ++c)
    pen.draw(grid, static_cast<int>(gap + c * (w + gap)), gap / 2, column_labels[static_cast<size_t>(c)],
             static_cast<int>(gap + c * (w + gap) + w));
  for (size_t r = 0; r < rows.size(); ++r) {
    if (static_cast<int64_t>(rows[r].size()) != columns) throw Error("every row of a labelled grid needs the same number of images");
    const int64_t y0 = line + static_cast<int64_t>(r) * (line + h + gap) + gap;
    if (r < row_labels.size()) pen.draw(grid, gap, static_cast<int>(y0), row_labels[r], static_cast<int>(grid.width));
    for (int64_t c = 0; c < columns; ++c) {
      const Image& tile = rows[r][static_cast<size_t>(c)];
      if (tile.width * scale != w || tile.height * scale != h || tile.channels != 3)
        throw Error("labelled grid images must all be RGB of one size");
      const int64_t x0 = gap + c * (w + gap);
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) std::memcpy(grid.at(x0 + x, y0 + line + y), tile.at(x / scale, y / scale), 3);
    }
  }
  return grid;
}

Image make_grid(const std::vector<Image>& tiles, int columns, int gap, Rgb background) {
  if (tiles.empty() || columns < 1) throw Error("a grid needs at least one image and one column");
  const int64_t w = tiles[0].width, h = tiles[0].height;
  for (const Image& t : tiles)
    if (t.width != w || t.height != h || t.channels != 3) throw Error("grid images must all be RGB of one size");
  const int64_t n = static_cast<int64_t>(tiles.size()), cols = std::min<int64_t>(columns, n), rows = (n + cols - 1) / cols;
  Image grid;
  grid.width = cols * w + (cols - 1) * gap;
  grid.height = rows * h + (rows - 1) * gap;
  grid.pixels.resize(static_cast<size_t>(grid.width * grid.height * 3));
  for (int64_t i = 0; i < grid.width * grid.height; ++i) std::memcpy(&grid.pixels[i * 3], background.data(), 3);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x0 = (i % cols) * (w + gap), y0 = (i / cols) * (h + gap);
    for (int64_t y = 0; y < h; ++y) std::memcpy(grid.at(x0, y0 + y), tiles[i].at(0, y), static_cast<size_t>(w * 3));
  }
  return grid;
}

}  // namespace dt
