#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace dt {

// Reads a JSON file; throws dt::Error naming it when it cannot be read or is not valid JSON.
nlohmann::json read_json_file(const std::string& path);

}  // namespace dt
