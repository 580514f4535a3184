// Samples of a run during `train` and transfer `learn`, per its [sample] section: fixed prompts and
// seeds, every N steps or minutes and after the last step, written to <run_dir>/samples (or
// sample.dir) and to TensorBoard (<run_dir>/tensorboard/samples, a run of its own).
//
//   samples/step-000020/00.png              the model in training at step 20, prompt 0
//   samples/teacher/00.png                  transfer: Base + teacher LoRA (CFG, many steps)
//   samples/no-lora/00.png                  transfer: the student without its LoRA
//   samples/step-000020/grid-00.png         transfer: teacher | student without LoRA | student + LoRA
//
// Sampling leaves training untouched: no gradients, the model in eval mode, its LoRA switch and
// per-sample scales restored after, noise from the sampler's own seeded generator.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "run/train_run.h"
#include "sample/generate.h"

namespace dt {

class TensorBoardWriter;

class RunSampler {
 public:
  // Null when [sample] names no prompts. Encodes the prompts with `model`'s text encoder, loaded
  // and freed now: call it before the transformer is loaded.
  static std::unique_ptr<RunSampler> create(const RunConfig& run, const ModelConfig& model);
  ~RunSampler();

  // Makes this a transfer sampler: samples the teacher (Base + `teacher_lora`, sample.teacher_steps
  // and teacher_guidance) now, loading and freeing it (call before the student is loaded). Reuses
  // the images of an earlier run with the same settings.
  void add_teacher_column(const RunConfig& run, const ModelConfig& teacher, const std::string& teacher_lora);

  // The hook for run_loop; with sample.at_start (and not `resume`) samples the model first.
  AfterStep begin(Denoiser& model, bool resume);
  // Samples the model now; `step` = optimizer steps done. Returns the folder written.
  std::string sample(Denoiser& model, int64_t step);

  const std::string& dir() const { return dir_; }

 private:
  RunSampler() = default;
  std::vector<Image> sample_images(Denoiser& model, bool lora_enabled);

  SamplingModels models_;
  std::vector<SamplePrompt> prompts_;
  PromptFeatures features_;
  SampleConfig config_;
  std::string dir_, model_label_;
  std::vector<Image> teacher_, no_lora_;  // transfer columns
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace dt
