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
#include <string>
#include <vector>

#include "run/world_eval.h"

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

}  // namespace dt
