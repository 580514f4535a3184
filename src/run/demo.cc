#include "run/demo.h"

#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>

#include "core/config.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "models/family.h"
#include "run/tiny_world.h"
#include "run/transfer_run.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

class Stage {
 public:
  Stage(int index, const std::string& what) : start_(std::chrono::steady_clock::now()) {
    std::cout << "\n[" << index << "/4] " << what << std::endl;
  }
  ~Stage() {
    if (std::uncaught_exceptions() > 0) return;  // the error says what happened
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::printf("      done in %.1f s\n", s);
    std::fflush(stdout);
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Writes `run` as the config file the next stage reads: each stage is one command on that file.
void write_config(const std::string& path, RunConfig& run, const std::string& comment) {
  write_file_atomic(path, "# " + comment + " (paths are relative to this file)\n" + config_to_toml(run));
}

// The newest step-N folder of a samples folder.
std::string newest_step(const std::string& samples) {
  std::string best;
  for (const auto& e : fs::directory_iterator(samples))
    if (e.path().filename().string().rfind("step-", 0) == 0 && e.path().string() > best) best = e.path().string();
  if (best.empty()) throw file_error(samples, "holds no samples");
  return best;
}

}  // namespace

DemoResult run_demo(const DemoOptions& o) {
  DemoResult r;
  const fs::path world = fs::absolute(o.workdir) / "world";
  r.world = world.string();
  r.train_config = (world / "train.toml").string();
  r.transfer_config = (world / "transfer.toml").string();
  const auto start = std::chrono::steady_clock::now();
  const Family& family = family_or_first(o.family);
  {
    Stage stage(1, "make-tiny: Base and Turbo pipelines (tiny " + family.name() + "), a captioned dataset, configs → " + r.world);
    fs::remove_all(world);
    make_tiny_world(world.string(), {family.name(), o.images, o.resolution});
    RunConfig train = load_run_config(r.train_config);
    if (o.train_epochs > 0) train.train.epochs = o.train_epochs;
    train.sample.prompts = o.prompts;
    train.sample.at_start = true;
    train.sample.every_steps = o.sample_every;
    write_config(r.train_config, train, "The demo's LoRA training on the tiny Base: deltatrain train train.toml");

    RunConfig transfer = load_run_config(r.transfer_config);
    if (o.learn_passes > 0) transfer.transfer.learn_passes = o.learn_passes;
    transfer.transfer.exact = true;
    transfer.sample = train.sample;
    transfer.sample.at_start = false;  // the first grid would show the teacher's LoRA on Turbo before any learning
    write_config(r.transfer_config, transfer,
                 "The demo's delta transfer to the tiny Turbo: deltatrain transfer transfer.toml (record, then learn)");
  }
  {
    Stage stage(2, "train a LoRA on Base (flow matching), with samples: deltatrain train " + r.train_config);
    const RunConfig run = load_run_config(r.train_config);
    const LoopResult result = train(run, false);
    r.teacher_lora = run.resolve(run.output.lora.empty() ? run.output.run_dir + "/lora.safetensors" : run.output.lora);
    r.train_samples = run.resolve(run.output.run_dir) + "/samples";
    std::cout << "      " << result.optimizer_steps << " steps, smoothed loss " << result.last_loss << "\n";
  }
  const RunConfig transfer = load_run_config(r.transfer_config);
  {
    Stage stage(3, "transfer record on Base (teacher = Base + LoRA, exact form): deltatrain transfer record " + r.transfer_config);
    record(transfer, false);
    r.store = store_dir(transfer);
  }
  {
    Stage stage(4, "transfer learn on Turbo, with grids: deltatrain transfer learn " + r.transfer_config);
    const LoopResult result = learn(transfer, false);
    std::cout << "      " << result.optimizer_steps << " steps, smoothed loss " << result.last_loss << "\n";
    r.student_lora = transfer.resolve(transfer.output.lora.empty() ? transfer.output.run_dir + "/lora.safetensors" : transfer.output.lora);
    r.transfer_samples = transfer.resolve(transfer.output.run_dir) + "/samples";
    const std::string last = newest_step(r.transfer_samples);
    for (size_t i = 0; i < o.prompts.size(); ++i) {
      char name[24];
      std::snprintf(name, sizeof(name), "grid-%02zu.png", i);
      r.grids.push_back((fs::path(last) / name).string());
      if (!fs::exists(r.grids.back())) throw file_error(r.grids.back(), "was not written");
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\ndemo finished in %.0f s. Artefacts:\n", seconds);
  std::cout << "  tiny world (Base, Turbo, dataset)   " << r.world << "\n"
            << "  configs                             " << r.train_config << ", " << r.transfer_config << "\n"
            << "  LoRA trained on Base (teacher)      " << r.teacher_lora << "\n"
            << "  training samples (per step)         " << r.train_samples << "\n"
            << "  delta store (record)                " << r.store << "\n"
            << "  LoRA taught to Turbo (student)      " << r.student_lora << "\n"
            << "  transfer samples (per step)         " << r.transfer_samples << "\n"
            << "  TensorBoard                         tensorboard --logdir " << fs::path(r.world).string() << "\n"
            << "  grids (Base + teacher LoRA | Turbo | Turbo + student LoRA):\n";
  for (const std::string& g : r.grids) std::cout << "    " << g << "\n";
  std::cout << "Sample any model yourself: deltatrain sample --model " << (world / family.defaults().distilled_name).string() << " --lora "
            << r.student_lora << " --prompt \"" << o.prompts.front() << "\" --width " << o.resolution << " --height "
            << o.resolution << "\n";
  return r;
}

}  // namespace dt
