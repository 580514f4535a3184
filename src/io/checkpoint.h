// One way to open any checkpoint layout, lazily (headers parsed, data memory-mapped):
// * a single .safetensors file;
// * a diffusers model folder: config.json + diffusion_pytorch_model.safetensors, or shards
//   diffusion_pytorch_model-0000k-of-0000n.safetensors + diffusion_pytorch_model.safetensors.index.json;
// * a transformers model folder: the same with model.safetensors[.index.json];
// * a diffusers pipeline folder: model_index.json + one model folder per component (transformer/,
//   text_encoder/, vae/, ...); its tensors are named "<component>/<tensor name>".
// Pickle checkpoints (.ckpt, .pt, .pth, .bin) are refused. ComfyUI's "scaled fp8" files (float8
// weights, each `<layer>.weight` with a float `<layer>.scale_weight`, per tensor or per output
// channel; `<layer>.scale_input` scales for fp8 matmuls; a `scaled_fp8` marker) read as their
// weights times their scales: get() returns those in float32, and names() lists neither the scales
// nor the marker.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace dt {

// A tensor as its checkpoint stores it. An E4M3 matrix (float8 weights, with a ComfyUI scale_weight
// or without) stays its uint8 codes with one float32 scale per row, which 8-bit weight storage
// keeps as they are (nn/linear.h) and values() decodes one tensor at a time; any other tensor is
// what Checkpoint::get() returns.
struct StoredTensor {
  at::Tensor data;       // the values; or E4M3 codes [rows, cols] when row_scale is defined
  at::Tensor row_scale;  // [rows] float32 for E4M3 codes, else undefined

  StoredTensor() = default;
  StoredTensor(at::Tensor values) : data(std::move(values)) {}  // NOLINT: any tensor is stored as itself
  StoredTensor(at::Tensor codes, at::Tensor scale) : data(std::move(codes)), row_scale(std::move(scale)) {}
  bool is_e4m3() const { return row_scale.defined(); }
  c10::IntArrayRef sizes() const { return data.sizes(); }
  // The values: code value × row scale in float32 for E4M3 codes, else `data`.
  at::Tensor values() const;
  // `op`, an operation on rows (narrow(0, …), a cat of row blocks), applied to the data and to the
  // row scales alike.
  template <class RowOp>
  StoredTensor rows(RowOp op) const {
    return is_e4m3() ? StoredTensor(op(data), op(row_scale)) : StoredTensor(op(data));
  }
};

class Checkpoint {
 public:
  static Checkpoint open(const std::string& path);  // throws dt::Error naming the path
  // One component folder of a diffusers pipeline (listed in its model_index.json), e.g.
  // open_component(root, "transformer").
  static Checkpoint open_component(const std::string& root, const std::string& component);

  const std::string& path() const { return path_; }
  // config.json of a model folder, model_index.json of a pipeline, an empty object for a file.
  const nlohmann::json& config() const { return config_; }
  // Metadata of the first (or only) safetensors file.
  const std::map<std::string, std::string>& metadata() const;
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // The tensor's header entry; its `name` is the name inside its file (no component prefix).
  const TensorInfo& info(const std::string& name) const;
  at::Tensor get(const std::string& name) const;  // throws dt::Error naming the path and tensor
  // The tensor as stored (above): E4M3 matrices as codes and row scales, anything else as get().
  StoredTensor stored(const std::string& name) const;
  // The float8 weights that get() multiplies by a scale_weight, by name (empty for other files).
  const std::map<std::string, std::string>& fp8_scales() const { return scale_of_; }
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }
  // Components of a pipeline that hold weights, sorted by name; empty otherwise.
  const std::vector<std::string>& components() const { return components_; }

 private:
  struct Location {
    size_t file;    // index into files_
    size_t prefix;  // length of the "<component>/" prefix of the name
  };
  static Checkpoint open_layout(const std::string& path);  // open() before fold_fp8_scales()
  void add_model_folder(const std::string& dir, const std::string& prefix);
  void add_shards(const std::string& dir, const std::string& index_path, const std::string& prefix);
  void add_file(std::shared_ptr<SafetensorsFile> file, const std::string& prefix);
  const Location& locate(const std::string& name) const;
  void fold_fp8_scales();
  at::Tensor read(const std::string& name, const Location& at) const;

  std::string path_;
  nlohmann::json config_ = nlohmann::json::object();
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, Location> where_;
  std::map<std::string, Location> scales_where_;  // scale_weight tensors, out of where_
  std::map<std::string, std::string> scale_of_;   // weight → its scale_weight
  std::vector<std::string> components_;
};

// `path`/`component` when `path` is a pipeline folder holding that component folder, else `path`
// itself (a model folder or file given directly).
std::string pipeline_component(const std::string& path, const std::string& component);

// Writes a model folder as diffusers and transformers do: `weights_file` (atomically, with
// `metadata`) and config.json.
void write_model_folder(const std::string& dir, const std::string& weights_file, const NamedTensors& tensors,
                        const nlohmann::json& config, const std::map<std::string, std::string>& metadata = {});

// The safetensors files of a checkpoint (file or folder), in order.
std::vector<std::string> checkpoint_files(const std::string& path);
// `family` + ":" + SHA-256 over `what` (how the files are used) and the SHA-256 of every file: the
// content identity of a loaded component, for manifests and cache keys. Reads every byte.
std::string content_identity(const std::string& family, const std::string& what, const std::vector<std::string>& files);

// Throws a clear error when `path` names a pickle checkpoint (.ckpt, .pt, .pth, .bin, .pkl).
void refuse_pickle(const std::string& path);

}  // namespace dt
