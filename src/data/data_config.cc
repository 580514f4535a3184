#include "data/data_config.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "data/image.h"

namespace dt {
namespace {

void check_choice(const std::string& file, const std::string& key, const std::string& value,
                  std::initializer_list<const char*> choices) {
  std::string listed;
  for (const char* c : choices) {
    if (value == c) return;
    listed += std::string(listed.empty() ? "" : ", ") + (*c ? c : "\"\"");
  }
  throw file_error(file, "setting '" + key + "' is '" + value + "'; expected one of " + listed);
}

}  // namespace

std::string resolve_path(const std::string& base_dir, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute() || base_dir.empty()) return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

void validate(const DataConfig& c, const std::string& file) {
  check_choice(file, "data.crop", c.crop, {"center", "random"});
  check_choice(file, "data.missing_caption", c.missing_caption, {"error", "empty"});
  check_choice(file, "data.bad_files", c.bad_files, {"error", "skip"});
  try {
    parse_color(c.background);
  } catch (const Error& e) {
    throw file_error(file, std::string("setting 'data.background': ") + e.what());
  }
  if (c.resolutions.empty()) throw file_error(file, "setting 'data.resolutions' is empty");
  for (int64_t r : c.resolutions)
    if (r <= 0) throw file_error(file, "setting 'data.resolutions' must hold positive sizes");
  for (double r : c.aspect_ratios)
    if (!(r >= 1.0)) throw file_error(file, "setting 'data.aspect_ratios' must hold ratios >= 1 (long / short side)");
  for (size_t i = 0; i < c.concepts.size(); ++i) {
    const ConceptConfig& k = c.concepts[i];
    const std::string at = "data.concepts[" + std::to_string(i) + "].";
    if (k.path.empty()) throw file_error(file, "setting '" + at + "path' is missing");
    check_choice(file, at + "caption_source", k.caption_source, {"txt", "filename", "text", "file"});
    check_choice(file, at + "missing_caption", k.missing_caption, {"", "error", "empty"});
    if (k.caption_source == "file" && k.caption.empty())
      throw file_error(file, "setting '" + at + "caption' must name the caption file (caption_source = file)");
    if (!(k.repeats >= 0.0)) throw file_error(file, "setting '" + at + "repeats' must be >= 0");
    if (k.samples_per_epoch < 0) throw file_error(file, "setting '" + at + "samples_per_epoch' must be >= 0");
    if (!(k.caption_dropout >= 0.0 && k.caption_dropout <= 1.0))
      throw file_error(file, "setting '" + at + "caption_dropout' must be within [0, 1]");
  }
}

}  // namespace dt
