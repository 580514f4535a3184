// The whole mission end to end on a tiny generated world, in minutes on a laptop CPU:
// make-tiny world → train a LoRA on Base (with samples) → transfer record on Base → transfer learn
// on Turbo (with side-by-side grids) → a summary of where every artefact is.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dt {

struct DemoOptions {
  std::string workdir = "demo-run";
  std::string family;        // empty: the first registered family (Z-Image)
  int images = 8;            // generated training images
  int64_t resolution = 64;   // their side in pixels (and the samples')
  int64_t train_epochs = 0;  // 0: the tiny world's train.toml setting
  int64_t learn_passes = 0;  // 0: the tiny world's transfer.toml setting
  int64_t sample_every = 0;  // sample every N steps in train and learn; 0: only at the start and the end
  std::vector<std::string> prompts = {"a red circle on a blue background", "a yellow square on a green background"};
};

struct DemoResult {
  std::string world, train_config, transfer_config;
  std::string teacher_lora, train_samples, store, student_lora, transfer_samples;
  std::vector<std::string> grids;  // one per prompt: Base + teacher | Turbo | Turbo + student
};

// Runs every stage, printing progress; throws dt::Error when a stage fails.
DemoResult run_demo(const DemoOptions& options);

}  // namespace dt
