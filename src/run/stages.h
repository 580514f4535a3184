// Stages of a long job (`world build`, `world efficacy`), each cached in the job's folder under a key
// of everything it depends on: a rerun redoes only the stages whose inputs changed or whose output
// is gone.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace dt {

class Stages {
 public:
  // Keys of finished stages live in <out>/<keys> (one file per job sharing a folder); `total` is for
  // the "stage i/total" lines.
  Stages(std::filesystem::path out, int total, std::string keys = "stages.json");
  // Runs `make` unless the stage `name` finished before with the same key and its `output` (a path
  // under the folder) exists; `make` gets the key. The key, sha256(after, name, inputs), chains: `after` is the key of the
  // stage this one reads (empty for none), `inputs` everything else it depends on. Returns the key.
  std::string run(const std::string& name, const std::string& after, const std::string& inputs, const std::string& output,
                  const std::function<void(const std::string& key)>& make);

 private:
  std::filesystem::path out_;
  std::string keys_;
  int total_, index_ = 0;
  nlohmann::json done_ = nlohmann::json::object();
};

}  // namespace dt
