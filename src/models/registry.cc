#include <filesystem>

#include "core/error.h"
#include "core/listing.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "models/family.h"
#include "models/flux2/family.h"
#include "models/zimage/family.h"

namespace dt {

const std::vector<const Family*>& families() {
  static const std::vector<const Family*> all = {
      &zimage_family(),
      &flux2_family(),
  };
  return all;
}

const Family& family_by_name(const std::string& name) {
  std::vector<std::string> known;
  for (const Family* f : families()) {
    if (f->name() == name) return *f;
    known.push_back(f->name());
  }
  throw Error("unknown model family '" + name + "' (known: " + join(known) + ")");
}

std::optional<Variant> Family::variant(const std::string& path) const {
  namespace fs = std::filesystem;
  // The pipeline's model_index.json, beside the transformer folder when that is what `path` names.
  for (const fs::path& folder : {fs::path(path), fs::path(path).lexically_normal().parent_path()}) {
    const fs::path index = folder / "model_index.json";
    if (!fs::is_regular_file(index)) continue;
    const nlohmann::json j = read_json_file(index.string());
    if (j.is_object() && j.contains("is_distilled") && j["is_distilled"].is_boolean())
      return j["is_distilled"].get<bool>() ? Variant::distilled : Variant::base;
    return std::nullopt;
  }
  return std::nullopt;
}

const Family& family_or_first(const std::string& name) { return name.empty() ? *families().front() : family_by_name(name); }

const Family& detect_family(const std::string& path) {
  Checkpoint ck = Checkpoint::open(pipeline_component(path, "transformer"));
  for (const Family* f : families())
    if (f->detect(ck)) return *f;
  throw file_error(path, "not a checkpoint of a known model family (name one with model.family)");
}

}  // namespace dt
