#include "sample/output.h"

#include <algorithm>
#include <cstring>
#include <sstream>

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
