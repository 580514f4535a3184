// `deltatrain world build`: a world's Base and Turbo from nothing but its config (world/
// models_config.h), each stage cached in the output folder under a key of everything it depends
// on, so a rerun redoes only the stages whose inputs changed:
//   data         the Base's training images and the distillation's captions (world/dataset.h)
//   latent-space the VAE trained on the world (world/latent_space.h)
//   base-init    the family's tiny pipeline at the world's transformer config, with that VAE
//   base         the Base trained from scratch (train.method = "full", caption dropout)
//   turbo        the Turbo distilled from the Base (deltatrain distill)
//   gates        both scored on held-out prompts (run/world_eval.h): gates.json
// The run configs of the two trainings are written beside them (base.toml, turbo.toml), so each
// can be rerun or resumed by hand with `deltatrain train` / `deltatrain distill`.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "run/run_config.h"
#include "run/world_eval.h"
#include "world/world.h"

namespace dt {

struct WorldBuildOptions {
  std::string world;                   // the world config
  std::vector<std::string> overrides;  // --set key=value on it
  std::string family;                  // which [[models]] table; empty = the first
  std::string out;
};

struct WorldGates {
  WorldScore base;             // Base, its steps, with CFG
  WorldScore base_few_steps;   // Base at the Turbo's steps, with CFG
  WorldScore turbo;            // Turbo, its steps, no CFG
  double turbo_to_base = 0;    // mean RGB distance per pixel between Turbo and Base images of one prompt and seed
};

struct WorldBuild {
  std::string base, turbo;  // pipeline folders
  WorldGates gates;
};

WorldBuild build_world(const WorldBuildOptions& options);

// The key of a built folder's Turbo stage (its stages.json), which names the Base and Turbo it
// holds: what the stages that read them chain to. dt::Error naming the folder without a pipeline
// (how `world` builds it) or the stages.json without the key.
std::string built_models_key(const std::filesystem::path& built, const std::string& world);
// The world's [[models]] table of `family` (empty: the first); dt::Error naming `path` when none.
const world::ModelsConfig& models_of(const world::World& world, const std::string& family, const std::string& path);
// A run of the world's models on the images in `data` (relative to `out`): fp32 on the CPU, one
// resolution, full training with a cosine schedule (the Base's and the Turbo's; LoRA runs change it).
RunConfig world_run(const std::filesystem::path& out, const world::World& world, const world::ModelsConfig& models,
                    const std::string& data);
// A LoRA of concept `c` trained on `model` (a pipeline folder, relative to `out` or absolute) from the
// images in `data`, with the settings of the world's efficacy table (world/efficacy_config.h), into `dir`.
RunConfig concept_lora_run(const std::filesystem::path& out, const world::World& world, const world::ModelsConfig& models,
                           const world::ConceptConfig& c, const std::string& data, int64_t seed, const std::string& model,
                           const std::string& dir);
// The transfer of `teacher_lora` from `teacher` to `student` on the plan of concept_lora_run (the
// Base LoRA's plan): recorded into, and learnt from, `store`; the learnt LoRA in `dir`.
RunConfig concept_transfer_run(const std::filesystem::path& out, const world::World& world, const world::ModelsConfig& models,
                               const world::ConceptConfig& c, const std::string& data, int64_t seed, const std::string& dir,
                               const std::string& teacher, const std::string& teacher_lora, const std::string& student,
                               const std::string& store, bool exact);
// Epochs enough for `steps` steps of `batch` images out of `images` (max_steps cuts the rest).
int64_t epochs_for(int64_t steps, int64_t batch, int64_t images);
// The run config beside its outputs, so it can be rerun or resumed by hand.
void write_run(const RunConfig& run, const std::filesystem::path& file);
// Clears a stage's run folder when its inputs (`key`) changed: its checkpoints belong to another plan.
void fresh_run_dir(const std::filesystem::path& dir, const std::string& key);

}  // namespace dt
