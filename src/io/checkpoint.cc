#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/hash.h"
#include "core/listing.h"
#include "io/atomic_file.h"
#include "io/json_file.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

constexpr const char* kPickleSuffixes[] = {".ckpt", ".pt", ".pth", ".bin", ".pkl"};
constexpr const char* kIndexSuffix = ".safetensors.index.json";

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_pickle(const std::string& name) {
  return std::any_of(std::begin(kPickleSuffixes), std::end(kPickleSuffixes), [&](const char* s) { return has_suffix(name, s); });
}

// A name that stays inside the folder it is joined to.
bool is_plain_file_name(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

// Names of the regular files in `dir`, sorted.
std::vector<std::string> file_names(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file(ec)) out.push_back(entry.path().filename().string());
  if (ec) throw file_error(dir, "cannot list the folder: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

bool holds_weights(const std::string& dir) {
  for (const auto& name : file_names(dir))
    if (has_suffix(name, ".safetensors") || has_suffix(name, kIndexSuffix) || is_pickle(name)) return true;
  return false;
}

nlohmann::json read_config(const std::string& path) {
  auto config = read_json_file(path);
  if (!config.is_object()) throw file_error(path, "not a JSON object");
  return config;
}

}  // namespace

void refuse_pickle(const std::string& path) {
  if (is_pickle(path))
    throw file_error(path, "pickle checkpoints are not loaded: unpickling can run arbitrary code. "
                           "Convert it to .safetensors first.");
}

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ck = open_layout(path);
  ck.fold_fp8_scales();
  return ck;
}

Checkpoint Checkpoint::open_layout(const std::string& path) {
  Checkpoint ck;
  ck.path_ = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw file_error(path, "no such file or folder");
  if (!fs::is_directory(path, ec)) {
    refuse_pickle(path);
    ck.add_file(SafetensorsFile::open(path), "");
    return ck;
  }
  const fs::path dir(path);
  if (!fs::exists(dir / "model_index.json")) {
    if (fs::exists(dir / "config.json")) ck.config_ = read_config((dir / "config.json").string());
    ck.add_model_folder(path, "");
    return ck;
  }
  // A pipeline: model_index.json maps each component to [library, class]; keys starting with
  // '_' are attributes. Components without weights (tokenizer, scheduler) are skipped.
  const std::string index = (dir / "model_index.json").string();
  ck.config_ = read_config(index);
  for (const auto& [component, value] : ck.config_.items()) {
    if (component.empty() || component[0] == '_' || !value.is_array()) continue;
    if (!is_plain_file_name(component)) throw file_error(index, "component " + quoted_name(component) + " leaves the folder");
    const std::string sub = (dir / component).string();
    if (!fs::is_directory(sub, ec) || !holds_weights(sub)) continue;
    ck.add_model_folder(sub, component + "/");
    ck.components_.push_back(component);
  }
  if (ck.components_.empty()) throw file_error(path, "this pipeline folder has no component with weights");
  return ck;
}

Checkpoint Checkpoint::open_component(const std::string& root, const std::string& component) {
  const std::string index = (fs::path(root) / "model_index.json").string();
  std::error_code ec;
  if (!fs::exists(index, ec)) throw file_error(root, "not a diffusers pipeline folder (it has no model_index.json)");
  const auto config = read_config(index);
  if (!is_plain_file_name(component) || component[0] == '_' || !config.contains(component)) {
    std::vector<std::string> known;
    for (const auto& [name, value] : config.items())
      if (name[0] != '_' && value.is_array()) known.push_back(name);
    throw file_error(index, "lists no component " + quoted_name(component) + " (it lists: " + join(known) + ")");
  }
  return open((fs::path(root) / component).string());
}

// A model folder: a shard index when there is one, else its only .safetensors file, else the
// standard name among several (a folder may also hold variants such as *.fp16.safetensors).
void Checkpoint::add_model_folder(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> indexes, weights, pickles;
  for (const auto& name : file_names(dir)) {
    if (has_suffix(name, kIndexSuffix)) indexes.push_back(name);
    else if (has_suffix(name, ".safetensors")) weights.push_back(name);
    else if (is_pickle(name)) pickles.push_back(name);
  }
  if (indexes.size() > 1)
    throw file_error(dir, "the folder holds several shard indexes (" + indexes[0] + ", " + indexes[1] + "): keep one");
  if (indexes.size() == 1) return add_shards(dir, (fs::path(dir) / indexes[0]).string(), prefix);
  if (weights.empty()) {
    if (!pickles.empty()) refuse_pickle((fs::path(dir) / pickles[0]).string());
    throw file_error(dir, "the folder holds no .safetensors file");
  }
  std::string chosen = weights.size() == 1 ? weights[0] : "";
  for (const char* standard : {"diffusion_pytorch_model.safetensors", "model.safetensors"})
    if (chosen.empty() && std::count(weights.begin(), weights.end(), standard)) chosen = standard;
  if (chosen.empty())
    throw file_error(dir, "the folder holds " + std::to_string(weights.size()) +
                              " .safetensors files and no *" + kIndexSuffix + " joining them: open one file directly");
  add_file(SafetensorsFile::open((fs::path(dir) / chosen).string()), prefix);
}

void Checkpoint::add_shards(const std::string& dir, const std::string& index_path, const std::string& prefix) {
  const auto index = read_json_file(index_path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object() || index["weight_map"].empty())
    throw file_error(index_path, "the shard index has no 'weight_map' object naming tensors");
  std::map<std::string, std::string> shard_of;  // tensor -> shard file name
  std::map<std::string, size_t> file_of;        // shard file name -> index into files_
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) throw file_error(index_path, "the shard of tensor " + quoted_name(tensor) + " is not a string");
    const std::string name = shard.get<std::string>();
    if (!is_plain_file_name(name))
      throw file_error(index_path, "shard " + quoted_name(name) + " of tensor " + quoted_name(tensor) + " is not a file of this folder");
    shard_of[tensor] = name;
    file_of[name] = 0;
  }
  for (auto& [shard, file] : file_of) {
    const fs::path shard_path = fs::path(dir) / shard;
    std::error_code ec;
    if (!fs::is_regular_file(shard_path, ec)) throw file_error(index_path, "shard " + quoted_name(shard) + " is missing");
    file = files_.size();
    add_file(SafetensorsFile::open(shard_path.string()), prefix);  // refuses a tensor in two shards
  }
  for (const auto& [tensor, shard] : shard_of)
    if (!files_[file_of[shard]]->contains(tensor))
      throw file_error(index_path, "tensor " + quoted_name(tensor) + " is placed in " + quoted_name(shard) + ", which does not hold it");
}

void Checkpoint::add_file(std::shared_ptr<SafetensorsFile> file, const std::string& prefix) {
  for (const auto& info : file->tensors()) {
    auto [it, added] = where_.emplace(prefix + info.name, Location{files_.size(), prefix.size()});
    if (!added)
      throw file_error(file->path(), "tensor " + quoted_name(info.name) + " is also in " + files_[it->second.file]->path());
  }
  files_.push_back(std::move(file));
}

const Checkpoint::Location& Checkpoint::locate(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw file_error(path_, "no tensor named " + quoted_name(name));
  return it->second;
}

const std::map<std::string, std::string>& Checkpoint::metadata() const { return files_.front()->metadata(); }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, _] : where_) out.push_back(name);
  return out;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  const Location& at = locate(name);
  return *files_[at.file]->find(name.substr(at.prefix));
}

at::Tensor Checkpoint::read(const std::string& name, const Location& at) const {
  return files_[at.file]->get(name.substr(at.prefix));
}

at::Tensor Checkpoint::get(const std::string& name) const {
  at::Tensor t = read(name, locate(name));
  const auto scale = scale_of_.find(name);
  if (scale == scale_of_.end()) return t;
  at::Tensor s = read(scale->second, scales_where_.at(scale->second)).to(at::kFloat);
  if (s.numel() > 1) {  // one per output channel
    std::vector<int64_t> shape(static_cast<size_t>(t.dim()), 1);
    shape[0] = s.numel();
    s = s.reshape(shape);
  }
  return t.to(at::kFloat) * s;
}

StoredTensor Checkpoint::stored(const std::string& name) const {
  const Location& at = locate(name);
  const TensorInfo& i = info(name);
  if (i.dtype != "F8_E4M3" || i.shape.size() != 2) return get(name);
  const at::Tensor codes = files_[at.file]->get_float8_codes(name.substr(at.prefix));
  const int64_t rows = i.shape[0];
  const auto scale = scale_of_.find(name);
  if (scale == scale_of_.end()) return {codes, at::ones({rows}, at::kFloat)};
  const at::Tensor s = read(scale->second, scales_where_.at(scale->second)).to(at::kFloat).flatten();
  return {codes, s.numel() == 1 ? s.expand({rows}).contiguous() : s.clone()};
}

at::Tensor StoredTensor::values() const {
  if (!is_e4m3()) return data;
  return decode_float8(data, /*e4m3=*/true) * row_scale.unsqueeze(1);
}

void Checkpoint::fold_fp8_scales() {
  const std::string scale_suffix = ".scale_weight";
  std::vector<std::string> drop;
  for (const auto& [name, at] : where_) {
    const std::string& file = files_[at.file]->path();
    if (has_suffix(name, ".comfy_quant") || has_suffix(name, ".weight_scale"))
      throw file_error(file, "tensor " + quoted_name(name) + " belongs to a per-layer quantisation format that is not " +
                                 "supported (ComfyUI's scaled fp8 files, with scale_weight tensors, are)");
    if (name == "scaled_fp8" || has_suffix(name, ".scaled_fp8") || has_suffix(name, ".scale_input")) {
      drop.push_back(name);
      continue;
    }
    if (!has_suffix(name, scale_suffix)) continue;
    const std::string weight = name.substr(0, name.size() - scale_suffix.size()) + ".weight";
    if (!where_.count(weight)) throw file_error(file, "scale " + quoted_name(name) + " has no weight " + quoted_name(weight));
    const TensorInfo& w = info(weight);
    const TensorInfo& s = info(name);
    int64_t count = 1;
    for (int64_t d : s.shape) count *= d;
    if (count != 1 && (w.shape.empty() || count != w.shape[0]))
      throw file_error(file, "scale " + quoted_name(name) + " holds " + std::to_string(count) + " values; its weight " +
                                 quoted_name(weight) + " needs one, or one per output row");
    scale_of_[weight] = name;
    drop.push_back(name);
  }
  for (const std::string& name : drop) {
    if (has_suffix(name, scale_suffix)) scales_where_.emplace(name, where_.at(name));
    where_.erase(name);
  }
}

std::string pipeline_component(const std::string& path, const std::string& component) {
  std::error_code ec;
  const fs::path inside = fs::path(path) / component;
  return fs::is_directory(path, ec) && fs::is_directory(inside, ec) ? inside.string() : path;
}

void write_model_folder(const std::string& dir, const std::string& weights_file, const NamedTensors& tensors,
                        const nlohmann::json& config, const std::map<std::string, std::string>& metadata) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw file_error(dir, "cannot create the folder: " + ec.message());
  write_safetensors((fs::path(dir) / weights_file).string(), tensors, metadata);
  write_file_atomic((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

std::vector<std::string> checkpoint_files(const std::string& path) {
  std::vector<std::string> files;
  const Checkpoint ck = Checkpoint::open(path);
  for (const auto& f : ck.files()) files.push_back(f->path());
  return files;
}

std::string content_identity(const std::string& family, const std::string& what, const std::vector<std::string>& files) {
  Sha256 all;
  all.update(what);
  for (const auto& f : files) all.update(sha256_file(f));
  return family + ":" + all.hex();
}

}  // namespace dt
