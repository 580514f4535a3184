// The run config: one TOML file per run (train, cache, transfer record/learn, sample), one section
// per concern, each a config-table struct (core/config.h). A section owner adds one line to
// RunConfig::fields(). Paths in a config are relative to the config file's folder: read them
// through RunConfig::resolve().
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/data_config.h"
#include "distill/distill_config.h"
#include "sample/sample_config.h"
#include "train/plan.h"
#include "transfer/transfer_config.h"

namespace dt {

struct ModelConfig {
  std::string family;  // "" = detect from the transformer's keys
  std::string base;    // pipeline folder (transformer/, text_encoder/, tokenizer/, vae/) or transformer checkpoint
  std::string text_encoder;
  std::string vae;
  std::string dtype = "bf16";
  std::string device = "cpu";
  bool gradient_checkpointing = false;
  int64_t offload_blocks = 0;
  std::string weight_dtype;
  template <class V>
  void fields(V& v) {
    v("family", family, "model family by name (an unknown name is refused with the list); empty = detected from the transformer's weights");
    v("base", base, "pipeline folder (transformer/, text_encoder/, tokenizer/, vae/) or a transformer checkpoint");
    v("text_encoder", text_encoder, "pipeline folder (or text_encoder/ + tokenizer/ parent) to take the text encoder from; empty = base");
    v("vae", vae, "pipeline folder or VAE checkpoint to take the VAE from; empty = base");
    v("dtype", dtype, "compute dtype of the frozen weights and activations: bf16 or fp32 (LoRA weights and optimizer states are always fp32)");
    v("device", device, "cpu, cuda or cuda:N");
    v("gradient_checkpointing", gradient_checkpointing, "recompute each block in the backward pass instead of keeping its activations (less memory, ~30% slower)");
    v("offload_blocks", offload_blocks, "keep the frozen weights of this many transformer blocks (the last ones) in pinned host memory, copied to the GPU ahead of each use, so models larger than the card fit (CUDA only; training needs gradient_checkpointing)",
      CacheKey::omit);
    v("weight_dtype", weight_dtype, "storage of the frozen transformer-block weights: empty = dtype; int8 (per-output-row scales) or fp8 (E4M3, per-output-row scales) hold them in 8 bits and compute in dtype; LoRA weights, gradients and optimizer state stay fp32, and the LoRA loads on the unquantized model",
      CacheKey::when_set);
  }
};

struct LoraConfig {
  int64_t rank = 16;
  double alpha = 1.0;
  std::string preset = "attn-mlp";
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  double dropout = 0.0;
  std::string init;
  template <class V>
  void fields(V& v) {
    v("rank", rank, "LoRA rank");
    v("alpha", alpha, "LoRA alpha; the adapter output is scaled by alpha / rank");
    v("preset", preset, "layer preset of the family (full, blocks, attn-mlp, attn-only; each family's docs page says what they choose); empty = only `include`");
    v("include", include, "regexes over module names (diffusers paths, searched anywhere) added to the preset's choice");
    v("exclude", exclude, "regexes over module names removed from the choice");
    v("dropout", dropout, "dropout on the rank-space activation during training");
    v("init", init, "LoRA file to start from (its alpha overrides `alpha`); empty = fresh (down Kaiming-uniform, up zero)");
  }
};

struct TrainConfig {
  std::string method = "lora";
  int64_t seed = 42;
  int64_t epochs = 10;
  int64_t max_steps = 0;
  int64_t batch_size = 1;
  int64_t gradient_accumulation = 1;
  std::string optimizer = "adamw";
  double learning_rate = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.01;
  std::string lr_schedule = "constant";
  int64_t warmup_steps = 0;
  double min_lr_factor = 0.0;
  double clip_grad_norm = 1.0;
  std::string loss = "mse";
  double huber_delta = 1.0;
  std::string timestep_distribution = "logit_normal";
  double logit_mean = 0.0;
  double logit_std = 1.0;
  double sigmoid_scale = 1.0;
  double sigmoid_bias = 0.0;
  double min_sigma = 0.0;
  double max_sigma = 1.0;
  double shift = 1.0;
  bool dynamic_shift = false;
  double offset_noise = 0.0;
  double perturbation_noise = 0.0;
  int64_t save_every = 0;
  int64_t checkpoint_every = 50;
  int64_t keep_checkpoints = 2;
  bool warm_up_pass = true;
  template <class V>
  void fields(V& v) {
    v("method", method, "lora: train LoRA adapters ([lora]); full: train every transformer weight (fine-tuning, or from scratch), saved as a diffusers model (output.model; needs model.dtype = fp32)");
    v("seed", seed, "seed of the plan (order, captions, σ, noise) and of the LoRA initialisation");
    v("epochs", epochs, "passes over the dataset (each sample `repeats` times per pass)");
    v("max_steps", max_steps, "stop after this many optimizer steps; 0 = run every epoch");
    v("batch_size", batch_size, "items per micro-batch (one bucket per batch)");
    v("gradient_accumulation", gradient_accumulation, "micro-batches per optimizer step");
    v("optimizer", optimizer, "adamw (fp32 states)");
    v("learning_rate", learning_rate, "peak learning rate");
    v("beta1", beta1, "AdamW β1");
    v("beta2", beta2, "AdamW β2");
    v("epsilon", epsilon, "AdamW ε");
    v("weight_decay", weight_decay, "AdamW decoupled weight decay");
    v("lr_schedule", lr_schedule, "constant, linear or cosine (decay to min_lr_factor × learning_rate at the last step)");
    v("warmup_steps", warmup_steps, "optimizer steps of linear warm-up from 0 to learning_rate");
    v("min_lr_factor", min_lr_factor, "final learning rate of linear and cosine, as a fraction of learning_rate");
    v("clip_grad_norm", clip_grad_norm, "clip the global gradient norm of the LoRA to this; 0 = off");
    v("loss", loss, "mse, mae or huber: the element-wise loss, averaged per sample over all latent elements, weighted by the concept's loss weight (train and transfer learn)");
    v("huber_delta", huber_delta, "huber: where the loss turns from quadratic (d²/2) to linear (δ·(|d| − δ/2))");
    v("timestep_distribution", timestep_distribution, "how σ is drawn before the shift: uniform, logit_normal or sigmoid");
    v("logit_mean", logit_mean, "logit_normal: mean of the normal whose sigmoid is σ");
    v("logit_std", logit_std, "logit_normal: standard deviation");
    v("sigmoid_scale", sigmoid_scale, "sigmoid: density ∝ sigmoid(scale·(σ − 0.5 − bias)); larger = more weight on high noise");
    v("sigmoid_bias", sigmoid_bias, "sigmoid: moves the density's midpoint");
    v("min_sigma", min_sigma, "lower end of σ before the shift");
    v("max_sigma", max_sigma, "upper end of σ before the shift");
    v("shift", shift, "static timestep shift s: σ ↦ s·σ / (1 + (s − 1)·σ); 1 = none");
    v("dynamic_shift", dynamic_shift, "use the family's resolution-dependent shift per bucket instead of `shift`");
    v("offset_noise", offset_noise, "weight of per-channel offset noise added to ε");
    v("perturbation_noise", perturbation_noise, "weight of extra Gaussian noise added to ε");
    v("save_every", save_every, "write the LoRA (lora-step-N.safetensors) or model (model-step-N/) every N optimizer steps (besides the end); 0 = only at the end");
    v("checkpoint_every", checkpoint_every, "write a resumable checkpoint every N optimizer steps; 0 = never");
    v("keep_checkpoints", keep_checkpoints, "how many checkpoints to keep (oldest removed first)");
    v("warm_up_pass", warm_up_pass, "before the first step, run the largest batch once with nothing kept (train, record, learn, distill): the memory of the largest step is taken and checked up front, and no step pays for it; costs about one step");
  }

  PlanOptions plan_options() const;
};

struct OutputConfig {
  std::string run_dir = "run";
  std::string lora;
  std::string model;
  std::string format = "comfyui";
  std::string save_dtype = "fp32";
  bool tensorboard = true;
  double loss_smoothing = 0.9;
  template <class V>
  void fields(V& v) {
    v("run_dir", run_dir, "folder for checkpoints, intermediate LoRAs and metrics");
    v("lora", lora, "final LoRA file; empty = <run_dir>/lora.safetensors");
    v("model", model, "train.method = full: the trained model's folder, a pipeline folder like model.base's when that is one (its other components linked or copied), else a diffusers transformer folder; empty = <run_dir>/model");
    v("format", format, "LoRA file layout: comfyui (ComfyUI and diffusers), peft (diffusers and ComfyUI, with a PEFT config), kohya, onetrainer, comfyui-native, original or aitoolkit (docs/lora.md says which clients load each)");
    v("save_dtype", save_dtype, "dtype of the saved LoRA (or full model) tensors: fp32, bf16 or fp16");
    v("tensorboard", tensorboard, "also write TensorBoard event files to <run_dir>/tensorboard");
    v("loss_smoothing", loss_smoothing, "factor of the exponential moving average logged as loss_smooth");
  }
};

struct DistributedConfig {
  std::string backend;
  int64_t timeout = 1800;
  template <class V>
  void fields(V& v) {
    v("backend", backend, "data-parallel runs (torchrun, srun, deltatrain launch): gloo or nccl; empty = nccl when model.device is CUDA, else gloo");
    v("timeout", timeout, "seconds a rank waits for the others (rendezvous, each gradient all-reduce, rank 0's saves and samples) before it stops with an error naming the rank it waited for");
  }
};

struct RunConfig {
  ModelConfig model;
  DataConfig data;
  LoraConfig lora;
  TrainConfig train;
  OutputConfig output;
  TransferConfig transfer;
  SampleConfig sample;
  DistillConfig distill;
  DistributedConfig distributed;
  std::string base_dir = ".";  // folder of the config file (not a setting)
  template <class V>
  void fields(V& v) {
    v("model", model, "the model to train");
    v("data", data, "the dataset and its caches");
    v("lora", lora, "the LoRA adapters");
    v("train", train, "the training loop");
    v("output", output, "what the run writes");
    v("transfer", transfer, "delta transfer: teacher and student models, the delta store, learn settings");
    v("sample", sample, "samples during train and learn: prompts, seeds, cadence, steps and guidance");
    v("distill", distill, "deltatrain distill: the few-step student's grid, the teacher's guidance and trajectories");
    v("distributed", distributed, "data-parallel runs over several processes, GPUs or machines (docs/distributed.md)");
  }

  // A path from this config: absolute, or relative to the config's folder. Empty stays empty.
  std::string resolve(const std::string& path) const;
};

// Reads a run config (TOML) with `key=value` overrides; errors name the file.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Every setting with its default and documentation, as TOML.
std::string default_run_config_toml();

}  // namespace dt
