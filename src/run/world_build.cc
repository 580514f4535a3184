#include "run/world_build.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/hash.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "models/family.h"
#include "run/distill_run.h"
#include "run/stages.h"
#include "run/train_run.h"
#include "text/prompt.h"
#include "text/tokenizer.h"
#include "world/dataset.h"
#include "world/latent_space.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

nlohmann::json to_json(const WorldScore& s) {
  return {{"images", s.images}, {"accuracy", s.accuracy}, {"invalid", s.invalid}};
}

// The pipelines truncate a prompt past the text length silently, as diffusers does; a world that
// shortens it checks that every caption it can write (each attribute combination, bare and with
// each pattern and style) fits, so no trigger word is ever cut off.
void check_captions_fit(const world::World& w, const Family& family, const std::string& tokenizer_dir, int64_t max_length,
                        const std::string& world_file) {
  const Tokenizer tokenizer = Tokenizer::load(tokenizer_dir);
  const world::WorldConfig& c = w.config();
  std::vector<int> fills{-1}, frames{-1};
  for (int k = 0; k < static_cast<int>(w.concepts().size()); ++k) {
    if (w.concepts()[k].kind == "pattern") fills.push_back(k);
    if (w.concepts()[k].kind == "style") frames.push_back(k);
  }
  std::set<std::string> captions;
  world::Scene s;
  for (s.shape = 0; s.shape < static_cast<int>(w.shapes().size()); ++s.shape)
    for (s.colour = 0; s.colour < static_cast<int>(w.colours().size()); ++s.colour)
      for (s.size = 0; s.size < static_cast<int>(c.sizes.size()); ++s.size)
        for (s.position = 0; s.position < static_cast<int>(c.positions.size()); ++s.position)
          for (s.background = 0; s.background < static_cast<int>(w.backgrounds().size()); ++s.background)
            for (int fill : fills)
              for (int frame : frames) {
                s.pattern = fill;
                s.style = frame;
                captions.insert(w.caption(s));
              }
  for (const std::string& caption : captions) {
    const size_t tokens = tokenizer.encode(apply_chat_template(family.chat_template(), caption)).size();
    if (static_cast<int64_t>(tokens) > max_length)
      throw file_error(world_file, "models.text_max_length = " + std::to_string(max_length) + " cuts the caption '" + caption +
                                       "' (" + std::to_string(tokens) + " tokens with the chat template)");
  }
}
}  // namespace

std::string built_models_key(const fs::path& built, const std::string& world) {
  for (const char* model : {"base", "turbo"})
    if (!fs::exists(built / model / "transformer"))
      throw file_error((built / model).string(), "holds no pipeline: make it with `deltatrain world build " + world + " --out " +
                                                     built.string() + "`");
  const std::string file = (built / "stages.json").string();
  const nlohmann::json stages = read_json_file(file);
  if (!stages.is_object() || !stages.contains("turbo") || !stages["turbo"].is_string())
    throw file_error(file, "has no key for the turbo stage: not a finished world build");
  return stages["turbo"].get<std::string>();
}

const world::ModelsConfig& models_of(const world::World& w, const std::string& family, const std::string& path) {
  for (const auto& m : w.config().models) {
    if (m.family.empty()) throw file_error(path, "a [[models]] table has no family");
    if (family.empty() || m.family == family) return m;
  }
  throw file_error(path, family.empty() ? "has no [[models]] table" : "has no [[models]] table for family '" + family + "'");
}

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

RunConfig concept_lora_run(const fs::path& out, const world::World& w, const world::ModelsConfig& m, const world::ConceptConfig& c,
                           const std::string& data, int64_t seed, const std::string& model, const std::string& dir) {
  const world::EfficacyConfig& e = m.efficacy;
  RunConfig run = world_run(out, w, m, data);
  run.model.base = model;
  run.data.concepts[0].caption_dropout = e.caption_dropout;
  run.lora.rank = e.lora_rank;
  run.lora.alpha = e.lora_alpha;
  run.lora.preset = e.lora_preset;
  run.train.method = "lora";
  run.train.seed = seed;
  run.train.max_steps = e.lora_steps;
  run.train.batch_size = e.batch_size;
  run.train.epochs = epochs_for(e.lora_steps, e.batch_size, c.images);
  run.train.learning_rate = e.learning_rate;
  run.train.lr_schedule = "constant";
  run.train.warmup_steps = 0;
  run.train.checkpoint_every = 100;
  run.output.run_dir = dir;
  return run;
}

RunConfig concept_transfer_run(const fs::path& out, const world::World& w, const world::ModelsConfig& m, const world::ConceptConfig& c,
                               const std::string& data, int64_t seed, const std::string& dir, const std::string& teacher,
                               const std::string& teacher_lora, const std::string& student, const std::string& store, bool exact) {
  RunConfig run = concept_lora_run(out, w, m, c, data, seed, teacher, dir);
  run.transfer.teacher = teacher;
  run.transfer.teacher_lora = teacher_lora;
  run.transfer.student = student;
  run.transfer.store = store;
  run.transfer.exact = exact;
  return run;
}

int64_t epochs_for(int64_t steps, int64_t batch, int64_t images) { return (steps * batch + images - 1) / images + 1; }

void write_run(const RunConfig& run, const fs::path& file) {
  RunConfig copy = run;
  write_file_atomic(file.string(), "# Written by deltatrain world (paths relative to this folder).\n" + config_to_toml(copy));
}

void fresh_run_dir(const fs::path& dir, const std::string& key) {
  const fs::path stamp = dir / "stage-key";
  if (fs::exists(stamp) && read_file(stamp.string()) == key) return;
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_file_atomic(stamp.string(), key);
}

WorldBuild build_world(const WorldBuildOptions& o) {
  const world::World w = world::load_world(o.world, o.overrides);
  const world::ModelsConfig& m = models_of(w, o.family, o.world);
  const Family& family = family_by_name(m.family);
  if (m.text_max_length < 0) throw file_error(o.world, "models.text_max_length must be 0 (the family's own) or positive");
  const fs::path out = fs::absolute(o.out);
  fs::create_directories(out);
  world::WorldConfig scenes = w.config();  // what the images depend on
  scenes.models.clear();
  world::LatentSpaceConfig vae = scenes.vae;
  scenes.vae = {};
  Stages stages(out, 6);
  WorldBuild result{(out / "base").string(), (out / "turbo").string(), {}};

  std::string key = stages.run("data", "", config_values(scenes) + std::to_string(m.base_images) + "/" + std::to_string(m.distill_images), "data", [&](const std::string&) {
    fs::remove_all(out / "data");
    world::write_dataset(w, (out / "data/base").string(), m.base_images, 1);
    world::write_dataset(w, (out / "data/distill").string(), m.distill_images, 1);
  });
  key = stages.run("latent-space", key, config_values(vae), "vae", [&](const std::string&) {
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
  const std::string init = m.transformer + std::to_string(m.seed) + (m.text_max_length ? "/" + std::to_string(m.text_max_length) : "");
  key = stages.run("base-init", key, init, "base-init", [&](const std::string&) {
    fs::remove_all(out / "base-init");
    family.write_tiny_pipeline((out / "base-init").string(), static_cast<uint64_t>(m.seed), false, m.transformer);
    if (m.text_max_length) {  // FLUX.2 pads every prompt to it: 512 positions would dwarf 16 image tokens
      check_captions_fit(w, family, (out / "base-init/tokenizer").string(), m.text_max_length, o.world);
      const std::string config = (out / "base-init/tokenizer/tokenizer_config.json").string();
      nlohmann::json c = read_json_file(config);
      c["model_max_length"] = m.text_max_length;
      write_file_atomic(config, c.dump(2) + "\n");
    }
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
  key = stages.run("base", key, config_values(base), "base", [&](const std::string& stage_key) {
    fresh_run_dir(out / "runs/base", stage_key);
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
  key = stages.run("turbo", key, config_values(turbo), "turbo", [&](const std::string& stage_key) {
    fresh_run_dir(out / "runs/turbo", stage_key);
    write_run(turbo, out / "turbo.toml");
    distill(turbo, true);
  });

  key = stages.run("gates", key, std::to_string(m.eval_prompts) + "/" + std::to_string(m.base_sample_steps), "gates.json", [&](const std::string&) {
    auto eval = [&](const std::string& model, int64_t steps, double cfg, std::vector<Image>* images) {
      return evaluate_world(w, world_eval_options(family, model, {}, steps, cfg, m.eval_prompts), images);
    };
    std::vector<Image> base_images, turbo_images;
    WorldGates& g = result.gates;
    g.base = eval(result.base, m.base_sample_steps, m.base_cfg, &base_images);
    g.base_few_steps = eval(result.base, m.turbo_steps, m.base_cfg, nullptr);
    g.turbo = eval(result.turbo, m.turbo_steps, 1, &turbo_images);
    g.turbo_to_base = mean_pixel_distance(turbo_images, base_images);
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
