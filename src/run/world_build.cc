#include "run/world_build.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/hash.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "models/family.h"
#include "run/distill_run.h"
#include "run/train_run.h"
#include "world/dataset.h"
#include "world/latent_space.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

// Runs the stages in order; a stage whose key is the one recorded in <out>/stages.json is done.
class Stages {
 public:
  Stages(fs::path out, int total) : out_(std::move(out)), total_(total) {
    const fs::path file = out_ / "stages.json";
    if (fs::exists(file)) done_ = read_json_file(file.string());
  }
  // `key` chains: a stage's key covers its own inputs and the key of the stage before. A stage is
  // redone when its key changed or its output (a path under the build folder) is gone.
  void run(const std::string& name, const std::string& inputs, const std::string& output, const std::function<void()>& make) {
    key_ = sha256_hex(key_ + "\n" + name + "\n" + inputs);
    ++index_;
    if (done_.contains(name) && done_[name] == key_ && fs::exists(out_ / output)) {
      std::printf("stage %d/%d %-12s cached\n", index_, total_, name.c_str());
      return;
    }
    std::printf("stage %d/%d %-12s ...\n", index_, total_, name.c_str());
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    make();
    done_[name] = key_;
    write_file_atomic((out_ / "stages.json").string(), done_.dump(2) + "\n");
    std::printf("stage %d/%d %-12s done in %.0f s\n", index_, total_, name.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const std::string& key() const { return key_; }

 private:
  fs::path out_;
  int total_, index_ = 0;
  std::string key_;
  nlohmann::json done_ = nlohmann::json::object();
};

const world::ModelsConfig& models_of(const world::World& w, const std::string& family, const std::string& path) {
  for (const auto& m : w.config().models)
    if (family.empty() || m.family == family) return m;
  throw file_error(path, family.empty() ? "has no [[models]] table" : "has no [[models]] table for family '" + family + "'");
}

// A run of the world's models: fp32 on the CPU, one resolution, its own run folder.
RunConfig world_run(const fs::path& out, const world::World& w, const world::ModelsConfig& m, const std::string& data) {
  RunConfig run;
  run.base_dir = out.string();
  run.model.family = m.family;
  run.model.dtype = "fp32";
  ConceptConfig concept_folder;
  concept_folder.path = data;
  concept_folder.caption_dropout = m.caption_dropout;
  run.data.concepts = {concept_folder};
  run.data.cache_dir = "cache";
  run.data.resolutions = {w.config().size};
  run.data.aspect_ratios = {1.0};
  run.train.method = "full";
  run.train.seed = m.seed;
  run.train.checkpoint_every = 250;
  run.train.lr_schedule = "cosine";
  run.train.min_lr_factor = 0.05;
  run.train.weight_decay = 0;
  run.output.tensorboard = false;
  run.output.save_dtype = "fp32";
  return run;
}

// Epochs enough for `steps` steps of `batch` images out of `images` (max_steps cuts the rest).
int64_t epochs_for(int64_t steps, int64_t batch, int64_t images) { return (steps * batch + images - 1) / images + 1; }

void write_run(const RunConfig& run, const fs::path& file) {
  RunConfig copy = run;
  write_file_atomic(file.string(), "# Written by deltatrain world build (paths relative to this folder).\n" + config_to_toml(copy));
}

// Clears a stage's run folder when its inputs changed (its checkpoints belong to another plan).
void fresh_run_dir(const fs::path& dir, const std::string& key) {
  const fs::path stamp = dir / "stage-key";
  if (fs::exists(stamp) && read_file(stamp.string()) == key) return;
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_file_atomic(stamp.string(), key);
}

double mean_distance(const std::vector<Image>& a, const std::vector<Image>& b) {
  double total = 0;
  int64_t n = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    for (size_t p = 0; p + 2 < a[i].pixels.size(); p += 3, ++n) total += world::colour_distance(&a[i].pixels[p], &b[i].pixels[p]);
  return n ? total / static_cast<double>(n) : 0;
}

nlohmann::json to_json(const WorldScore& s) {
  return {{"images", s.images}, {"accuracy", s.accuracy}, {"invalid", s.invalid}};
}


}  // namespace

WorldBuild build_world(const WorldBuildOptions& o) {
  const world::World w = world::load_world(o.world, o.overrides);
  const world::ModelsConfig& m = models_of(w, o.family, o.world);
  const Family& family = family_by_name(m.family);
  const fs::path out = fs::absolute(o.out);
  fs::create_directories(out);
  world::WorldConfig scenes = w.config();  // what the images depend on
  scenes.models.clear();
  world::LatentSpaceConfig vae = scenes.vae;
  scenes.vae = {};
  Stages stages(out, 6);
  WorldBuild result{(out / "base").string(), (out / "turbo").string(), {}};

  stages.run("data", config_to_toml(scenes) + std::to_string(m.base_images) + "/" + std::to_string(m.distill_images), "data", [&] {
    fs::remove_all(out / "data");
    world::write_dataset(w, (out / "data/base").string(), m.base_images, 1);
    world::write_dataset(w, (out / "data/distill").string(), m.distill_images, 1);
  });
  stages.run("latent-space", config_to_toml(vae), "vae", [&] {
    // A VAE that `world vae` trained from this very config (latent_space.json says so) is kept.
    const fs::path report = out / "vae/latent_space.json";
    world::WorldConfig whole = w.config();
    if (fs::exists(report) && fs::exists(out / "vae/diffusion_pytorch_model.safetensors") &&
        read_json_file(report.string()).value("config_sha256", "") == sha256_hex(config_to_toml(whole))) {
      std::cout << "reusing the VAE in " << (out / "vae").string() << ", trained from this world config\n";
      return;
    }
    world::train_latent_space(w, (out / "vae").string());
  });
  stages.run("base-init", m.transformer + std::to_string(m.seed), "base-init", [&] {
    fs::remove_all(out / "base-init");
    family.write_tiny_pipeline((out / "base-init").string(), static_cast<uint64_t>(m.seed), false, m.transformer);
    fs::remove_all(out / "base-init/vae");
    fs::copy(out / "vae", out / "base-init/vae", fs::copy_options::recursive);
  });

  RunConfig base = world_run(out, w, m, "data/base");
  base.model.base = "base-init";
  base.train.max_steps = m.base_steps;
  base.train.epochs = epochs_for(m.base_steps, m.base_batch_size, m.base_images);
  base.train.batch_size = m.base_batch_size;
  base.train.learning_rate = m.base_learning_rate;
  base.train.warmup_steps = m.base_warmup_steps;
  base.output.run_dir = "runs/base";
  base.output.model = "base";
  stages.run("base", config_to_toml(base), "base", [&] {
    fresh_run_dir(out / "runs/base", stages.key());
    write_run(base, out / "base.toml");
    train(base, true);
  });

  RunConfig turbo = world_run(out, w, m, "data/distill");
  turbo.data.concepts[0].caption_dropout = 0;
  turbo.model.base = "base";
  turbo.train.max_steps = m.distill_train_steps;
  turbo.train.batch_size = m.base_batch_size;
  turbo.train.epochs = epochs_for(m.distill_train_steps, m.base_batch_size, m.distill_images * m.distill_seeds * m.turbo_steps);
  turbo.train.learning_rate = m.distill_learning_rate;
  turbo.train.warmup_steps = m.base_warmup_steps;
  turbo.distill.steps = m.turbo_steps;
  turbo.distill.substeps = m.distill_substeps;
  turbo.distill.cfg = m.base_cfg;
  turbo.distill.seeds_per_caption = m.distill_seeds;
  turbo.output.run_dir = "runs/turbo";
  turbo.output.model = "turbo";
  stages.run("turbo", config_to_toml(turbo), "turbo", [&] {
    fresh_run_dir(out / "runs/turbo", stages.key());
    write_run(turbo, out / "turbo.toml");
    distill(turbo, true);
  });

  stages.run("gates", std::to_string(m.eval_prompts) + "/" + std::to_string(m.base_sample_steps), "gates.json", [&] {
    auto eval = [&](const std::string& model, int64_t steps, double cfg, std::vector<Image>* images) {
      WorldEvalOptions e;
      e.models = {&family, model, model, model, {}};
      e.prompts = m.eval_prompts;
      e.steps = steps;
      e.cfg = cfg;
      return evaluate_world(w, e, images);
    };
    std::vector<Image> base_images, turbo_images;
    WorldGates& g = result.gates;
    g.base = eval(result.base, m.base_sample_steps, m.base_cfg, &base_images);
    g.base_few_steps = eval(result.base, m.turbo_steps, m.base_cfg, nullptr);
    g.turbo = eval(result.turbo, m.turbo_steps, 1, &turbo_images);
    g.turbo_to_base = mean_distance(turbo_images, base_images);
    const nlohmann::json j = {{"base", to_json(g.base)},
                              {"base_few_steps", to_json(g.base_few_steps)},
                              {"turbo", to_json(g.turbo)},
                              {"turbo_to_base", g.turbo_to_base}};
    write_file_atomic((out / "gates.json").string(), j.dump(2) + "\n");
  });
  const nlohmann::json j = read_json_file((out / "gates.json").string());
  std::cout << "gates (" << m.eval_prompts << " held-out prompts; " << (out / "gates.json").string() << "):\n"
            << j.dump(2) << "\n";
  return result;
}

}  // namespace dt
