// OneTrainer's concepts.json: a JSON array of concept objects (modules/util/config/ConceptConfig.py):
// name, path, enabled, include_subdirectories, balancing + balancing_strategy (REPEATS | SAMPLES;
// "repeats" in version-0 files), loss_weight, validation_concept, text.prompt_source
// (sample | concept | filename) with text.prompt_path, and image/text augmentation switches.
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/dataset.h"
#include "io/atomic_file.h"

namespace dt {
namespace fs = std::filesystem;

std::vector<ConceptConfig> read_onetrainer_concepts(const std::string& path, std::vector<std::string>& warnings) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw file_error(path, std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_array()) throw file_error(path, "expected a JSON array of concepts (OneTrainer concepts.json)");
  const fs::path folder = fs::path(path).parent_path();
  auto resolve = [&](const std::string& p) { return resolve_path(folder.string(), p); };
  std::vector<ConceptConfig> out;
  for (size_t i = 0; i < root.size(); ++i) {
    const nlohmann::json& j = root[i];
    const std::string where = "concept " + std::to_string(i);
    if (!j.is_object()) throw file_error(path, where + " is not an object");
    try {
      // Defaults are OneTrainer's.
      const std::string name = j.value("name", "");
      const std::string label = where + (name.empty() ? "" : " (" + name + ")");
      if (j.value("validation_concept", false)) {
        warnings.push_back(path + ": " + label + " is a validation concept; left out of training");
        continue;
      }
      ConceptConfig c;
      c.name = name;
      c.path = resolve(j.value("path", ""));
      if (c.path.empty()) throw file_error(path, label + " has no path");
      c.enabled = j.value("enabled", true);
      c.include_subfolders = j.value("include_subdirectories", false);
      c.loss_weight = j.value("loss_weight", 1.0);
      const double balancing = j.contains("balancing") ? j["balancing"].get<double>() : j.value("repeats", 1.0);
      const std::string strategy = j.value("balancing_strategy", "REPEATS");
      if (strategy == "SAMPLES")
        c.samples_per_epoch = int64_t(balancing);
      else if (strategy == "REPEATS")
        c.repeats = balancing;
      else
        throw file_error(path, label + ": unknown balancing_strategy '" + strategy + "'");

      const nlohmann::json text = j.value("text", nlohmann::json::object());
      const std::string source = text.value("prompt_source", "sample");
      if (source == "sample") {
        c.caption_source = "txt";
      } else if (source == "filename") {
        c.caption_source = "filename";
      } else if (source == "concept") {
        c.caption_source = "file";
        c.caption = resolve(text.value("prompt_path", ""));
        if (c.caption.empty()) throw file_error(path, label + ": prompt_source is concept but prompt_path is empty");
      } else {
        throw file_error(path, label + ": unknown text.prompt_source '" + source + "'");
      }

      std::string ignored;
      auto note = [&](const std::string& what) { ignored += (ignored.empty() ? "" : ", ") + what; };
      for (const char* key : {"enable_tag_shuffling", "tag_dropout_enable", "caps_randomize_enable"})
        if (text.value(key, false)) note(std::string("text.") + key);
      const nlohmann::json image = j.value("image", nlohmann::json::object());
      for (const auto& [key, value] : image.items())
        if (key.rfind("enable_", 0) == 0 && value.is_boolean() && value.get<bool>()) note("image." + key);
      if (j.value("image_variations", 1) > 1) note("image_variations");
      if (j.value("text_variations", 1) > 1) note("text_variations");
      if (!ignored.empty())
        warnings.push_back(path + ": " + label + ": not supported, ignored: " + ignored);
      out.push_back(std::move(c));
    } catch (const nlohmann::json::exception& e) {
      throw file_error(path, where + ": " + e.what());
    }
  }
  return out;
}

}  // namespace dt
