#include "distill/trajectories.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "io/safetensors.h"

namespace dt {
namespace fs = std::filesystem;

std::string TrajectoryRecipe::key() const {
  nlohmann::json j = {{"teacher", teacher}, {"data", data}, {"sigmas", sigmas}, {"substeps", substeps}, {"cfg", cfg}};
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : specs) list.push_back({s.sample, s.caption, s.seed});
  j["specs"] = list;
  return sha256_hex(j.dump());
}

TrajectoryStore::TrajectoryStore(std::string dir, TrajectoryRecipe recipe)
    : dir_(std::move(dir)), recipe_(std::move(recipe)), key_(recipe_.key()) {
  fs::create_directories(dir_);
  for (int64_t s = 0;; ++s) {  // shards of another recipe (or beyond this one's count) go
    const std::string path = shard_path(s);
    if (!fs::exists(path)) break;
    if (s >= shards() || !has_shard(s)) fs::remove(path);
  }
}

int64_t TrajectoryStore::shards() const {
  return (static_cast<int64_t>(recipe_.specs.size()) + kShardSize - 1) / kShardSize;
}

std::string TrajectoryStore::shard_path(int64_t shard) const {
  char name[40];
  std::snprintf(name, sizeof(name), "shard-%05lld.safetensors", static_cast<long long>(shard));
  return (fs::path(dir_) / name).string();
}

bool TrajectoryStore::has_shard(int64_t shard) const {
  const std::string path = shard_path(shard);
  if (!fs::exists(path)) return false;
  try {
    const auto file = SafetensorsFile::open(path);
    auto it = file->metadata().find("recipe");
    return it != file->metadata().end() && it->second == key_;
  } catch (const Error&) {
    return false;  // a torn or foreign file: recorded again
  }
}

void TrajectoryStore::write_shard(int64_t shard, const std::vector<at::Tensor>& paths) const {
  NamedTensors tensors;
  for (size_t i = 0; i < paths.size(); ++i)
    tensors.emplace_back("x." + std::to_string(shard * kShardSize + static_cast<int64_t>(i)), paths[i].to(torch::kFloat).contiguous());
  write_safetensors(shard_path(shard), tensors, {{"recipe", key_}});
}

std::vector<at::Tensor> TrajectoryStore::read_all() const {
  std::vector<at::Tensor> out;
  const auto grid = static_cast<int64_t>(recipe_.sigmas.size());
  for (int64_t s = 0; s < shards(); ++s) {
    const std::string path = shard_path(s);
    if (!has_shard(s)) throw file_error(path, "is missing or belongs to another distillation recipe; record again");
    const auto tensors = load_safetensors(path);
    const int64_t first = s * kShardSize, last = std::min<int64_t>(first + kShardSize, static_cast<int64_t>(recipe_.specs.size()));
    for (int64_t i = first; i < last; ++i) {
      auto it = tensors.find("x." + std::to_string(i));
      if (it == tensors.end() || it->second.dim() != 4 || it->second.size(0) != grid)
        throw file_error(path, "trajectory " + std::to_string(i) + " is missing or not " + std::to_string(grid) + " grid points");
      out.push_back(it->second);
    }
  }
  return out;
}

}  // namespace dt
