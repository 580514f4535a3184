// One way to open any checkpoint layout: a single .safetensors file, a diffusers model folder
// (config.json + diffusion_pytorch_model[-0000x-of-0000n].safetensors [+ .index.json]) or a
// transformers folder (config.json + model[-...].safetensors [+ .index.json]). Tensors are read
// lazily from memory-mapped files. Pickle checkpoints are refused.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace dt {

class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);  // throws dt::Error naming the path

  const std::string& path() const { return path_; }
  // config.json of a folder (empty object for a single file without one).
  const nlohmann::json& config() const { return config_; }
  // Metadata of the first (or only) safetensors file.
  const std::map<std::string, std::string>& metadata() const;
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  at::Tensor get(const std::string& name) const;  // throws dt::Error naming the path and tensor
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  std::string path_;
  nlohmann::json config_ = nlohmann::json::object();
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// Throws a clear error when `path` names a pickle checkpoint (.ckpt, .pt, .pth, .bin).
void refuse_pickle(const std::string& path);

}  // namespace dt
