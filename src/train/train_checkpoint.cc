#include "train/train_checkpoint.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "core/error.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

std::vector<fs::path> checkpoint_files(const std::string& run_dir) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && e.path().extension() == ".safetensors") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());  // zero-padded step numbers sort in step order
  return out;
}

// A double in a form that reads back to the same bits.
std::string exact(double v) {
  char s[40];
  std::snprintf(s, sizeof(s), "%.17g", v);
  return s;
}

}  // namespace

std::string write_train_checkpoint(const std::string& run_dir, TrainCheckpoint c, int64_t keep) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  fs::create_directories(dir);
  char name[48];
  std::snprintf(name, sizeof(name), "step-%09lld.safetensors", static_cast<long long>(c.optimizer_steps));
  const std::string path = (dir / name).string();
  NamedTensors tensors(c.tensors.begin(), c.tensors.end());
  write_safetensors(path, tensors,
                    {{"deltatrain.next_batch", std::to_string(c.next_batch)},
                     {"deltatrain.optimizer_steps", std::to_string(c.optimizer_steps)},
                     {"deltatrain.loss_smooth", exact(c.loss_smooth)},
                     {"deltatrain.plan_hash", c.plan_hash}});
  auto files = checkpoint_files(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(keep, 1)) < files.size(); ++i) fs::remove(files[i]);
  return path;
}

std::optional<TrainCheckpoint> latest_train_checkpoint(const std::string& run_dir) {
  auto files = checkpoint_files(run_dir);
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      auto file = SafetensorsFile::open(it->string());
      const auto& meta = file->metadata();
      TrainCheckpoint c;
      c.path = it->string();
      c.next_batch = std::stoll(meta.at("deltatrain.next_batch"));
      c.optimizer_steps = std::stoll(meta.at("deltatrain.optimizer_steps"));
      c.loss_smooth = std::stod(meta.at("deltatrain.loss_smooth"));
      c.plan_hash = meta.at("deltatrain.plan_hash");
      for (const auto& info : file->tensors()) c.tensors[info.name] = file->get(info.name).clone();
      return c;
    } catch (const std::exception& e) {
      std::cerr << "warning: skipping unreadable checkpoint " << it->string() << ": " << e.what() << "\n";
    }
  }
  return std::nullopt;
}

std::map<std::string, at::Tensor> rng_state() {
  at::Generator cpu = at::detail::getDefaultCPUGenerator();
  std::map<std::string, at::Tensor> out{{"rng.cpu", cpu.get_state()}};
  if (torch::cuda::is_available()) {
    at::Generator cuda = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, 0));
    out["rng.cuda"] = cuda.get_state();
  }
  return out;
}

void set_rng_state(const std::map<std::string, at::Tensor>& state) {
  if (auto it = state.find("rng.cpu"); it != state.end()) {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    cpu.set_state(it->second);
  }
  if (auto it = state.find("rng.cuda"); it != state.end() && torch::cuda::is_available()) {
    at::Generator cuda = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, 0));
    cuda.set_state(it->second);
  }
}

}  // namespace dt
