#include "io/json_file.h"

#include "core/error.h"
#include "io/atomic_file.h"

namespace dt {

nlohmann::json read_json_file(const std::string& path) {
  auto json = nlohmann::json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) throw file_error(path, "not valid JSON");
  return json;
}

}  // namespace dt
