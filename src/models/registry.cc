#include <filesystem>

#include "core/error.h"
#include "io/checkpoint.h"
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
  std::string known;
  for (const Family* f : families()) {
    if (f->name() == name) return *f;
    known += (known.empty() ? "" : ", ") + f->name();
  }
  throw Error("unknown model family '" + name + "' (known: " + known + ")");
}

const Family& detect_family(const std::string& path) {
  namespace fs = std::filesystem;
  std::string transformer = path;
  if (fs::is_directory(path) && fs::exists(fs::path(path) / "transformer")) transformer = (fs::path(path) / "transformer").string();
  Checkpoint ck = Checkpoint::open(transformer);
  for (const Family* f : families())
    if (f->detect(ck)) return *f;
  throw file_error(path, "not a checkpoint of a known model family (name one with model.family)");
}

}  // namespace dt
