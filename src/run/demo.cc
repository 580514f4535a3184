#include "run/demo.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "data/image.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "models/family.h"
#include "run/stages.h"
#include "run/train_run.h"
#include "run/transfer_run.h"
#include "run/world_build.h"
#include "run/world_eval.h"
#include "sample/output.h"
#include "world/dataset.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kPlainSeed = 2'000'000;  // a held-out scene without the trigger (the grid's last row)

// One column of the grid: a model with LoRAs, sampled as the arm of the efficacy table it stands for.
struct Column {
  std::string label, description, model;
  std::vector<std::string> loras;
  int64_t steps = 0;
  double cfg = 1;
};

std::string number(double v, int decimals) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

}  // namespace

DemoResult run_demo(const DemoOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  if (!fs::exists(o.world)) throw file_error(o.world, "not found: run the demo from the repository's root, or pass --world");
  if (o.grid_prompts < 1 || o.grid_prompts > o.score_prompts)
    throw Error("the grid's prompts (" + std::to_string(o.grid_prompts) + ") must be between 1 and the scored prompts (" +
                std::to_string(o.score_prompts) + ")");
  const world::World w = world::load_world(o.world, {});
  world::ModelsConfig m = models_of(w, o.family, o.world);
  if (o.lora_steps > 0) m.efficacy.lora_steps = o.lora_steps;
  const Family& family = family_by_name(m.family);
  const fs::path built = o.built.empty() ? fs::absolute(o.world).parent_path() / fs::path(o.world).stem() / m.family : fs::absolute(o.built);
  // Every stage reads the models of the build: its Turbo's stage key names them.
  const std::string models = built_models_key(built, o.world);
  const int index = w.concept_by_trigger(o.concept_trigger);
  const world::ConceptConfig& c = w.concepts().at(static_cast<size_t>(index));
  const double g = o.guidance > 0 ? o.guidance : m.base_cfg;
  const std::string base = (built / "base").string(), turbo = (built / "turbo").string();
  const fs::path out = fs::absolute(o.workdir);
  Stages stages(out, 5);
  DemoResult r;
  r.data = (out / "data").string();
  r.base_lora = (out / "base-lora/lora.safetensors").string();
  r.store = (out / "store/deltas").string();
  r.turbo_lora = (out / "turbo-lora/lora.safetensors").string();
  r.grid = (out / ("demo-" + c.trigger + ".png")).string();
  std::cout << "Delta transfer of '" << c.trigger << "' (a " << c.kind << " the Base never saw) from the world's Base to its Turbo:\n"
            << "  Base  " << base << "\n  Turbo " << turbo << " (" << m.turbo_steps << " steps, no CFG)\n  work  " << out.string()
            << std::endl;

  world::WorldConfig scenes = w.config();
  scenes.models.clear();
  scenes.vae = {};
  std::cout << "\n" << c.images << " captioned images of " << c.trigger << " → " << r.data << std::endl;
  const std::string data_key = stages.run("data", models, config_values(scenes) + std::to_string(index), "data", [&](const std::string&) {
    fs::remove_all(out / "data");
    world::write_dataset(w, r.data, c.images, 1, index);
  });

  RunConfig lora = concept_lora_run(out, w, m, c, "data", o.seed, base, "base-lora");
  std::cout << "\nA LoRA on the Base (rank " << m.efficacy.lora_rank << ", " << m.efficacy.lora_steps << " steps) → " << r.base_lora
            << std::endl;
  const std::string lora_key = stages.run("lora", data_key, config_values(lora), "base-lora/lora.safetensors", [&](const std::string& key) {
    fresh_run_dir(out / "base-lora", key);
    write_run(lora, out / "base-lora/run.toml");
    train(lora, true);
  });

  RunConfig transfer = concept_transfer_run(out, w, m, c, "data", o.seed, "store", base, "base-lora/lora.safetensors", turbo, "store/deltas", false);
  std::cout << "\nThe Base + LoRA records what the LoRA changes (transfer record, approximate form) → " << r.store << std::endl;
  const std::string record_key = stages.run("record", lora_key, config_values(transfer), "store/deltas/manifest.json", [&](const std::string& key) {
    fresh_run_dir(out / "store", key);
    record(transfer, true);
  });

  transfer.output.run_dir = "turbo-lora";
  transfer.transfer.guidance = g;
  transfer.transfer.student_lora = "teacher";
  std::cout << "\nThe Turbo learns it (transfer learn, g = " << number(g, 1) << ", from the Base LoRA) → " << r.turbo_lora << std::endl;
  const std::string learn_key = stages.run("learn", record_key, config_values(transfer), "turbo-lora/lora.safetensors", [&](const std::string& key) {
    fresh_run_dir(out / "turbo-lora", key);
    write_run(transfer, out / "turbo-lora/run.toml");
    learn(transfer, true);
  });

  const std::vector<Column> columns = {
      {"(a) Base+LoRA", "Base + Base LoRA, " + std::to_string(m.base_sample_steps) + " steps, CFG " + number(m.base_cfg, 1), base,
       {r.base_lora}, m.base_sample_steps, m.base_cfg},
      {"(b) Turbo", "Turbo alone, " + std::to_string(m.turbo_steps) + " steps", turbo, {}, m.turbo_steps, 1},
      {"(c) T+Base LoRA", "Turbo + the Base LoRA as is, " + std::to_string(m.turbo_steps) + " steps", turbo, {r.base_lora}, m.turbo_steps, 1},
      {"(e) T+transfer", "Turbo + the transferred LoRA, " + std::to_string(m.turbo_steps) + " steps", turbo, {r.turbo_lora}, m.turbo_steps, 1}};
  auto eval_options = [&](const Column& column, int64_t prompts, int concept_index, uint64_t seed) {
    return world_eval_options(family, column.model, column.loras, column.steps, column.cfg, prompts, concept_index, seed);
  };
  std::cout << "\nFour columns sample " << o.score_prompts << " held-out prompts with the trigger, the world's scorer reads them → "
            << r.grid << std::endl;
  const std::string inputs = std::to_string(o.score_prompts) + "/" + std::to_string(o.grid_prompts);
  stages.run("score", learn_key, inputs, "scores.json", [&](const std::string&) {
    const std::vector<world::Scene> trigger = eval_scenes(w, eval_options(columns[0], o.grid_prompts, index, WorldEvalOptions{}.seed));
    const std::vector<world::Scene> plain = eval_scenes(w, eval_options(columns[0], 1, -1, kPlainSeed));
    std::vector<std::vector<Image>> tiles(static_cast<size_t>(o.grid_prompts) + 1);
    nlohmann::json scores = nlohmann::json::object();
    for (const Column& column : columns) {
      std::vector<Image> images, plain_image;
      const WorldScore s = evaluate_world(w, eval_options(column, o.score_prompts, index, WorldEvalOptions{}.seed), &images);
      evaluate_world(w, eval_options(column, 1, -1, kPlainSeed), &plain_image);
      scores[column.label] = s.accuracy.at("concept");
      for (int64_t i = 0; i < o.grid_prompts; ++i) tiles[static_cast<size_t>(i)].push_back(images.at(static_cast<size_t>(i)));
      tiles.back().push_back(plain_image.at(0));
    }
    std::vector<std::string> labels, rows;
    for (const Column& column : columns) labels.push_back(column.label);
    for (const world::Scene& scene : trigger) rows.push_back(w.caption(scene));
    rows.push_back(w.caption(plain.at(0)));
    write_png(r.grid, labelled_grid(tiles, labels, rows, 2));
    write_file_atomic((out / "scores.json").string(), scores.dump(2) + "\n");
  });
  const nlohmann::json scores = read_json_file((out / "scores.json").string());
  r.scores = {scores.at(columns[0].label).get<double>(), scores.at(columns[1].label).get<double>(),
              scores.at(columns[2].label).get<double>(), scores.at(columns[3].label).get<double>()};

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\ndemo finished in %.0f s (cached stages not counted). Concept score: the fraction of the %lld held-out prompts "
              "with '%s' whose image shows it:\n",
              seconds, static_cast<long long>(o.score_prompts), c.trigger.c_str());
  const double values[] = {r.scores.base_with_lora, r.scores.turbo_alone, r.scores.turbo_with_base_lora, r.scores.turbo_transferred};
  for (size_t i = 0; i < columns.size(); ++i)
    std::printf("  %-16s %-44s %s\n", columns[i].label.c_str(), columns[i].description.c_str(), number(values[i], 2).c_str());
  std::cout << "Grid (rows: prompts, the last without the trigger; columns as above): " << r.grid << "\n"
            << "Sample it yourself: deltatrain sample --model " << turbo << " --lora " << r.turbo_lora << " --prompt \""
            << w.caption(w.concept_scene(index, 1)) << "\" --steps " << m.turbo_steps << " --width " << w.config().size
            << " --height " << w.config().size << "\n";
  return r;
}

}  // namespace dt
