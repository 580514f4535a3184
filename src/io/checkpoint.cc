#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

nlohmann::json read_json(const std::string& path) {
  auto j = nlohmann::json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw file_error(path, "not valid JSON");
  return j;
}

}  // namespace

void refuse_pickle(const std::string& path) {
  for (const char* ext : {".ckpt", ".pt", ".pth", ".bin", ".pkl"})
    if (has_suffix(path, ext))
      throw file_error(path, "pickle checkpoints are not loaded: unpickling can run arbitrary code. "
                             "Convert it to .safetensors first.");
}

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ck;
  ck.path_ = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw file_error(path, "no such file or folder");
  std::vector<std::string> shard_paths;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "config.json")) {
      ck.config_ = read_json((dir / "config.json").string());
      if (!ck.config_.is_object()) throw file_error((dir / "config.json").string(), "not a JSON object");
    }
    std::vector<std::string> candidates;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (has_suffix(name, ".safetensors.index.json")) {
        auto index = read_json(entry.path().string());
        if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
          throw file_error(entry.path().string(), "shard index has no 'weight_map' object");
        std::vector<std::string> shards;
        for (const auto& [tensor, shard] : index["weight_map"].items()) {
          if (!shard.is_string()) throw file_error(entry.path().string(), "weight_map entry '" + tensor + "' is not a string");
          shards.push_back(shard.get<std::string>());
        }
        std::sort(shards.begin(), shards.end());
        shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
        for (const auto& s : shards) {
          if (s.find('/') != std::string::npos) throw file_error(entry.path().string(), "shard name '" + s + "' leaves the folder");
          shard_paths.push_back((dir / s).string());
        }
        break;
      }
      if (has_suffix(name, ".safetensors")) candidates.push_back(entry.path().string());
    }
    if (shard_paths.empty()) {
      std::sort(candidates.begin(), candidates.end());
      shard_paths = candidates;
    }
    if (shard_paths.empty()) {
      for (const auto& entry : fs::directory_iterator(dir, ec)) refuse_pickle(entry.path().string());
      throw file_error(path, "folder holds no .safetensors file");
    }
  } else {
    refuse_pickle(path);
    shard_paths.push_back(path);
  }
  for (const auto& shard : shard_paths) {
    auto file = SafetensorsFile::open(shard);
    for (const auto& info : file->tensors()) {
      if (ck.where_.count(info.name))
        throw file_error(shard, "tensor '" + info.name + "' also appears in " + ck.files_[ck.where_[info.name]]->path());
      ck.where_[info.name] = ck.files_.size();
    }
    ck.files_.push_back(std::move(file));
  }
  return ck;
}

const std::map<std::string, std::string>& Checkpoint::metadata() const { return files_.front()->metadata(); }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : where_) out.push_back(name);
  return out;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw file_error(path_, "no tensor named '" + name + "'");
  return *files_[it->second]->find(name);
}

at::Tensor Checkpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw file_error(path_, "no tensor named '" + name + "'");
  return files_[it->second]->get(name);
}

}  // namespace dt
