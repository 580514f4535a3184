#include "sample/sample_config.h"

#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_file.h"
#include "sample/sampler.h"

namespace dt {
namespace fs = std::filesystem;

Variant variant_by_name(const std::string& name, const Family& family, const std::string& model_path, std::string* why) {
  if (name == "base") return Variant::base;
  if (name == "distilled" || name == family.defaults().distilled_name) return Variant::distilled;
  if (name != "auto" && !name.empty())
    throw Error("variant '" + name + "' is not one of auto, base, distilled (" + family.defaults().distilled_name + ")");
  // Base and distilled share one architecture: only the pipeline's own model_index.json can say.
  const std::optional<Variant> v = family.variant(model_path);
  if (!v)
    throw file_error(model_path, "cannot tell a Base from a distilled " + family.name() +
                                     " model (its model_index.json has no is_distilled): set the variant (base or distilled)");
  if (why) *why = "its model_index.json says is_distilled = " + std::string(*v == Variant::distilled ? "true" : "false");
  return *v;
}

std::pair<int64_t, double> variant_defaults(const Family& family, Variant variant) {
  const FamilyDefaults d = family.defaults();
  if (variant == Variant::distilled) return {d.sample_steps_distilled, 1.0};
  return {d.sample_steps_base, d.sample_cfg_base};
}

SamplePrompt resolve(SamplePrompt p, const Family& family, Variant variant, int64_t steps, double guidance) {
  const auto [default_steps, default_cfg] = variant_defaults(family, variant);
  if (p.steps <= 0) p.steps = steps > 0 ? steps : default_steps;
  if (std::isnan(p.cfg)) p.cfg = guidance >= 0 ? cfg_weight(family, guidance) : default_cfg;
  const int64_t multiple = family.pixel_multiple();
  if (p.width < multiple || p.height < multiple || p.width % multiple || p.height % multiple)
    throw Error("sample size " + std::to_string(p.width) + "×" + std::to_string(p.height) + " is not a positive multiple of " +
                std::to_string(multiple) + " pixels (" + family.name() + ")");
  return p;
}

std::vector<SamplePrompt> read_onetrainer_samples(const std::string& path) {
  const nlohmann::json root = read_json_file(path);
  if (!root.is_array()) throw file_error(path, "expected a JSON array of samples (OneTrainer samples.json)");
  std::vector<SamplePrompt> out;
  for (size_t i = 0; i < root.size(); ++i) {
    const nlohmann::json& j = root[i];
    if (!j.is_object()) throw file_error(path, "sample " + std::to_string(i) + " is not an object");
    try {
      if (!j.value("enabled", true)) continue;
      SamplePrompt p;  // defaults are OneTrainer's
      p.prompt = j.value("prompt", "");
      p.negative_prompt = j.value("negative_prompt", "");
      p.width = j.value("width", int64_t{512});
      p.height = j.value("height", int64_t{512});
      // random_seed is not honoured: samples of a run are compared across steps, so seeds stay fixed.
      p.seed = static_cast<uint64_t>(j.value("seed", int64_t{42}));
      p.steps = j.value("diffusion_steps", int64_t{20});
      p.cfg = j.value("cfg_scale", 7.0);
      if (p.steps < 1) throw file_error(path, "sample " + std::to_string(i) + ": diffusion_steps must be at least 1");
      out.push_back(std::move(p));
    } catch (const nlohmann::json::exception& e) {
      throw file_error(path, "sample " + std::to_string(i) + ": " + e.what());
    }
  }
  return out;
}

std::vector<SamplePrompt> sample_prompts(const SampleConfig& c, const std::string& base_dir, int64_t default_side) {
  std::vector<SamplePrompt> out;
  for (size_t i = 0; i < c.prompts.size(); ++i) {
    SamplePrompt p;
    p.prompt = c.prompts[i];
    p.negative_prompt = c.negative_prompt;
    p.seed = static_cast<uint64_t>(c.seed) + i;
    p.width = c.width > 0 ? c.width : default_side;
    p.height = c.height > 0 ? c.height : default_side;
    out.push_back(std::move(p));
  }
  if (!c.file.empty()) {
    const fs::path file = fs::path(c.file).is_absolute() ? fs::path(c.file) : fs::path(base_dir) / c.file;
    for (SamplePrompt& p : read_onetrainer_samples(file.lexically_normal().string())) out.push_back(std::move(p));
  }
  return out;
}

}  // namespace dt
