#include "run/world_efficacy.h"

#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "core/listing.h"
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

constexpr uint64_t kTriggerSeed = 1'000'000;  // held-out scenes, as world eval's
constexpr uint64_t kDriftSeed = 2'000'000;    // held-out scenes without the trigger

// Mean accuracy over the prompted attributes other than the concept's own (a concept's kind names
// the scorer's attribute it takes the place of: colour, shape, pattern or style).
double other_attributes(const WorldScore& s, const std::string& own) {
  double sum = 0;
  int n = 0;
  for (const char* a : {"shape", "colour", "size", "position", "background", "pattern", "style"})
    if (a != own) sum += s.accuracy.at(a), ++n;
  return sum / n;
}

std::string toml_of(RunConfig run) { return config_values(run); }

std::string format_number(double v, int decimals) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

// How one arm samples.
struct ArmSpec {
  std::string id, label;
  std::string model;               // "base" or "turbo" (folders of the built models)
  std::vector<std::string> loras;  // relative to the build folder
  int64_t steps = 0;
  double cfg = 1;
  std::string sampling() const { return std::to_string(steps) + " steps" + (cfg > 1 ? ", CFG " + format_number(cfg, 1) : ""); }
};

class Efficacy {
 public:
  Efficacy(const WorldEfficacyOptions& o, const world::World& w, const world::ModelsConfig& m, const std::string& models_key)
      : o_(o), w_(w), m_(m), e_(m.efficacy), family_(family_by_name(m.family)), out_(fs::absolute(o.build.out)),
        built_(o.built.empty() ? fs::path() : fs::absolute(o.built)), models_key_(models_key) {}

  ConceptEfficacy measure(int index) {
    const world::ConceptConfig& c = w_.concepts().at(static_cast<size_t>(index));
    ConceptEfficacy r;
    r.trigger = c.trigger;
    r.kind = c.kind;
    const std::string root = "efficacy/" + c.trigger;
    // One keys file per concept: concepts measured by concurrent workers never write the same file.
    stages_.emplace(out_, concept_stages(), root + "/stages.json");
    world::WorldConfig scenes = w_.config();
    scenes.models.clear();
    scenes.vae = {};
    const std::string data_key = stages_->run(root + "/data", "", config_values(scenes) + std::to_string(index), root + "/data",
                                             [&](const std::string&) {
                                               fs::remove_all(out_ / root / "data");
                                               world::write_dataset(w_, (out_ / root / "data").string(), c.images, 1, index);
                                             });
    const std::string after = models_key_ + data_key;
    const ArmSpec turbo_alone{"b", "Turbo alone", "turbo", {}, m_.turbo_steps, 1};
    const ArmResult b = score_arm(turbo_alone, index, root + "/turbo-alone", after);

    const int64_t seeds = e_.seeds;
    std::vector<ArmResult> arms;
    auto add = [&](const ArmSpec& spec, const ArmResult& one) {
      auto it = std::find_if(arms.begin(), arms.end(), [&](const ArmResult& a) { return a.id == spec.id; });
      if (it == arms.end()) {
        arms.push_back({spec.id, spec.label + " (" + spec.sampling() + ")", {}, {}, {}, {}});
        it = arms.end() - 1;
      }
      for (auto values : {&ArmResult::concept_score, &ArmResult::others, &ArmResult::invalid, &ArmResult::drift})
        ((*it).*values).push_back((one.*values).at(0));
    };
    std::map<int64_t, std::map<std::string, std::string>> lora_keys;  // seed → run → stage key
    for (int64_t seed = 1; seed <= seeds; ++seed) {
      const std::string dir = root + "/seed" + std::to_string(seed);
      auto& keys = lora_keys[seed];
      keys["base-lora"] = train_lora(index, seed, model("base"), dir + "/base-lora", after);
      keys["turbo-lora"] = train_lora(index, seed, model("turbo"), dir + "/turbo-lora", after);
      const std::string base_lora = dir + "/base-lora/lora.safetensors";
      const ArmSpec a{"a", "Base + Base LoRA", "base", {base_lora}, m_.base_sample_steps, m_.base_cfg};
      const ArmSpec c_arm{"c", "Turbo + Base LoRA", "turbo", {base_lora}, m_.turbo_steps, 1};
      const ArmSpec d{"d", "Turbo + LoRA trained on Turbo", "turbo", {dir + "/turbo-lora/lora.safetensors"}, m_.turbo_steps, 1};
      add(a, score_arm(a, index, dir + "/a", keys["base-lora"]));
      add(turbo_alone, b);
      add(c_arm, score_arm(c_arm, index, dir + "/c", keys["base-lora"]));
      add(d, score_arm(d, index, dir + "/d", keys["turbo-lora"]));
      keys["store"] = record_store(index, seed, dir + "/store", false, keys["base-lora"]);
      for (double g : e_.guidances) {
        const std::string name = "learn-g" + format_number(g, 2);
        keys[name] = learn_lora(index, seed, dir + "/" + name, dir + "/store", g, "teacher", keys["store"]);
        const ArmSpec arm = transferred("e", "approximate", g, dir + "/" + name);
        add(arm, score_arm(arm, index, dir + "/e-g" + format_number(g, 2), keys[name]));
      }
    }
    // The best g by mean concept score (the smallest of equals).
    double best_score = -1;
    for (double g : e_.guidances) {
      const auto& arm = *std::find_if(arms.begin(), arms.end(), [&](const ArmResult& a) { return a.id == "e g=" + format_number(g, 2); });
      double mean = 0;
      for (double v : arm.concept_score) mean += v / static_cast<double>(arm.concept_score.size());
      if (mean > best_score + 1e-12) best_score = mean, r.best_guidance = g;
    }
    const std::string best = format_number(r.best_guidance, 2);
    const int64_t every = curve_every();
    for (int64_t step = every; step < e_.lora_steps; step += every) r.curve_steps.push_back(step);
    r.curve_steps.push_back(e_.lora_steps);
    r.curve_concept.resize(r.curve_steps.size());
    for (int64_t seed = 1; seed <= seeds; ++seed) {
      const std::string dir = root + "/seed" + std::to_string(seed);
      auto& keys = lora_keys[seed];
      keys["store-exact"] = record_store(index, seed, dir + "/store-exact", true, keys["base-lora"]);
      keys["exact"] = learn_lora(index, seed, dir + "/learn-exact-g" + best, dir + "/store-exact", r.best_guidance, "teacher", keys["store-exact"]);
      const ArmSpec f = transferred("f", "exact", r.best_guidance, dir + "/learn-exact-g" + best);
      add(f, score_arm(f, index, dir + "/f", keys["exact"]));
      // The exact form also at the CFG the Turbo was distilled at, the g the method prescribes: at
      // the best g of 1 it coincides with the approximate form, (1 - g)·δu being zero.
      if (distilled_cfg_differs(r.best_guidance)) {
        const std::string cfg = format_number(m_.base_cfg, 2);
        keys["exact-cfg"] = learn_lora(index, seed, dir + "/learn-exact-g" + cfg, dir + "/store-exact", m_.base_cfg, "teacher", keys["store-exact"]);
        const ArmSpec at_cfg = transferred("f g=" + cfg, "exact", m_.base_cfg, dir + "/learn-exact-g" + cfg);
        add(at_cfg, score_arm(at_cfg, index, dir + "/f-g" + cfg, keys["exact-cfg"]));
      }
      keys["fresh"] = learn_lora(index, seed, dir + "/learn-fresh-g" + best, dir + "/store", r.best_guidance, "fresh", keys["store"]);
      const ArmSpec g = transferred("g", "approximate, from a fresh LoRA", r.best_guidance, dir + "/learn-fresh-g" + best);
      add(g, score_arm(g, index, dir + "/g", keys["fresh"]));
      for (size_t i = 0; i < r.curve_steps.size(); ++i) {
        const int64_t step = r.curve_steps[i];
        const std::string learn_dir = dir + "/learn-g" + best;
        ArmSpec point = transferred("curve", "approximate", r.best_guidance, learn_dir);
        if (step < e_.lora_steps) point.loras = {learn_dir + "/" + intermediate_lora_name(step)};
        const std::string score_dir = dir + "/curve-g" + best + "-step" + std::to_string(step);
        r.curve_concept[i].push_back(score_arm(point, index, score_dir, keys["learn-g" + best], false).concept_score.at(0));
      }
    }
    // Arms in the table's order: a, b, c, d, e by g, f, g.
    std::stable_sort(arms.begin(), arms.end(), [](const ArmResult& x, const ArmResult& y) { return x.id < y.id; });
    r.arms = arms;
    r.grid = grid(index, root, best);
    return r;
  }

 private:
  ArmSpec transferred(const std::string& id, const std::string& form, double g, const std::string& dir) const {
    return {id == "e" ? "e g=" + format_number(g, 2) : id, "Turbo + transferred LoRA, " + form + ", g = " + format_number(g, 2), "turbo",
            {dir + "/lora.safetensors"}, m_.turbo_steps, 1};
  }

  bool distilled_cfg_differs(double best_guidance) const { return format_number(best_guidance, 2) != format_number(m_.base_cfg, 2); }

  int concept_stages() const {
    const int64_t g = static_cast<int64_t>(e_.guidances.size()), points = e_.curve_points;
    // LoRAs, a c d, store, e, exact (and at the distillation's CFG), fresh, f (both) g, curve; an
    // upper bound, the second exact arm being skipped where the best g is that CFG.
    const int64_t per_seed = 2 + 3 + 1 + 2 * g + 2 + 2 + 2 + 2 + points;
    return static_cast<int>(3 + e_.seeds * per_seed);
  }

  // A built model's folder: relative to the build folder, or absolute in a folder measured as is.
  std::string model(const std::string& name) const { return built_.empty() ? name : (built_ / name).string(); }

  int64_t curve_every() const { return std::max<int64_t>(1, e_.lora_steps / std::max<int64_t>(1, e_.curve_points)); }

  RunConfig lora_run(int index, int64_t seed, const std::string& model, const std::string& dir) const {
    const world::ConceptConfig& c = w_.concepts().at(static_cast<size_t>(index));
    RunConfig run = concept_lora_run(out_, w_, m_, c, "efficacy/" + c.trigger + "/data", seed, model, dir);
    run.train.save_every = curve_every();
    return run;
  }

  std::string train_lora(int index, int64_t seed, const std::string& model, const std::string& dir, const std::string& after) {
    const RunConfig run = lora_run(index, seed, model, dir);
    return stages_->run(dir, after, toml_of(run), dir + "/lora.safetensors", [&](const std::string& key) {
      fresh_run_dir(out_ / dir, key);
      write_run(run, out_ / dir / "run.toml");
      train(run, true);
    });
  }

  // A transfer from the Base LoRA of the seed's folder (the parent of `dir`) to the Turbo.
  RunConfig transfer_run(int index, int64_t seed, const std::string& dir, const std::string& store, bool exact) const {
    const world::ConceptConfig& c = w_.concepts().at(static_cast<size_t>(index));
    const std::string teacher_lora = fs::path(dir).parent_path().string() + "/base-lora/lora.safetensors";
    RunConfig run = concept_transfer_run(out_, w_, m_, c, "efficacy/" + c.trigger + "/data", seed, dir, model("base"), teacher_lora, model("turbo"),
                                         store, exact);
    run.train.save_every = curve_every();
    return run;
  }

  std::string record_store(int index, int64_t seed, const std::string& store, bool exact, const std::string& after) {
    const RunConfig run = transfer_run(index, seed, store, store + "/deltas", exact);
    return stages_->run(store, after, toml_of(run), store + "/deltas/manifest.json", [&](const std::string& key) {
      fresh_run_dir(out_ / store, key);
      record(run, true);
    });
  }

  std::string learn_lora(int index, int64_t seed, const std::string& dir, const std::string& store, double g,
                         const std::string& start, const std::string& after) {
    RunConfig run = transfer_run(index, seed, dir, store + "/deltas", false);
    run.transfer.guidance = g;
    run.transfer.student_lora = start;
    return stages_->run(dir, after, toml_of(run), dir + "/lora.safetensors", [&](const std::string& key) {
      fresh_run_dir(out_ / dir, key);
      write_run(run, out_ / dir / "run.toml");
      learn(run, true);
    });
  }

  WorldEvalOptions eval_options(const ArmSpec& spec, int64_t prompts, int concept_index, uint64_t seed) const {
    std::vector<std::string> loras;
    for (const std::string& lora : spec.loras) loras.push_back((out_ / lora).string());
    return world_eval_options(family_, (out_ / model(spec.model)).string(), loras, spec.steps, spec.cfg, prompts, concept_index, seed);
  }

  // The model alone on the drift prompts, sampled as `spec` samples (generated once per process).
  const std::vector<Image>& reference(const ArmSpec& spec) {
    const std::string key = spec.model + "/" + spec.sampling();
    auto it = references_.find(key);
    if (it != references_.end()) return it->second;
    ArmSpec alone = spec;
    alone.loras.clear();
    std::vector<Image> images;
    evaluate_world(w_, eval_options(alone, e_.drift_prompts, -1, kDriftSeed), &images);
    return references_[key] = std::move(images);
  }

  // Scores an arm on the trigger prompts (and, with `drift`, on the prompts without the trigger),
  // cached in <dir>/score.json with the grid's images beside it.
  ArmResult score_arm(const ArmSpec& spec, int index, const std::string& dir, const std::string& after, bool drift = true) {
    const std::string own = w_.concepts().at(static_cast<size_t>(index)).kind;
    std::ostringstream inputs;
    inputs << spec.model << "\n" << spec.steps << "\n" << spec.cfg << "\n" << e_.prompts << "\n" << e_.drift_prompts << "\n"
           << e_.grid_prompts << "\n" << drift;
    for (const std::string& lora : spec.loras) inputs << "\n" << lora;
    stages_->run(dir, after, inputs.str(), dir + "/score.json", [&](const std::string&) {
      std::vector<Image> trigger_images, drift_images;
      const WorldScore s = evaluate_world(w_, eval_options(spec, e_.prompts, index, kTriggerSeed), &trigger_images);
      nlohmann::json j = {{"concept", s.accuracy.at("concept")}, {"others", other_attributes(s, own)}, {"invalid", s.invalid},
                          {"drift", 0.0}, {"accuracy", s.accuracy}};
      fs::create_directories(out_ / dir);
      for (int64_t i = 0; i < e_.grid_prompts && i < static_cast<int64_t>(trigger_images.size()); ++i)
        write_png((out_ / dir / ("trigger-" + std::to_string(i) + ".png")).string(), trigger_images[static_cast<size_t>(i)]);
      if (drift) {
        evaluate_world(w_, eval_options(spec, e_.drift_prompts, -1, kDriftSeed), &drift_images);
        j["drift"] = spec.loras.empty() ? 0.0 : mean_pixel_distance(drift_images, reference(spec));
        if (!drift_images.empty()) write_png((out_ / dir / "plain-0.png").string(), drift_images[0]);
      }
      write_file_atomic((out_ / dir / "score.json").string(), j.dump(2) + "\n");
    });
    const nlohmann::json j = read_json_file((out_ / dir / "score.json").string());
    return {spec.id, spec.label, {j.at("concept").get<double>()}, {j.at("others").get<double>()}, {j.at("invalid").get<double>()},
            {j.at("drift").get<double>()}};
  }

  // Seed 1's images: the trigger prompts and one prompt without the trigger as rows, the arms as
  // columns (e at the best g).
  std::string grid(int index, const std::string& root, const std::string& best) const {
    const world::ConceptConfig& c = w_.concepts().at(static_cast<size_t>(index));
    const std::vector<std::pair<std::string, std::string>> columns = {
        {"(a) Base+LoRA", root + "/seed1/a"},     {"(b) Turbo", root + "/turbo-alone"},
        {"(c) T+Base LoRA", root + "/seed1/c"},   {"(d) T-trained", root + "/seed1/d"},
        {"(e) g=" + format_number(std::stod(best), 1), root + "/seed1/e-g" + best},
        {"(f) exact", root + "/seed1/f"},         {"(g) fresh", root + "/seed1/g"}};
    std::vector<std::string> labels;
    for (const auto& [label, dir] : columns) labels.push_back(label);
    const std::vector<world::Scene> trigger = eval_scenes(w_, eval_options({}, e_.grid_prompts, index, kTriggerSeed));
    const std::vector<world::Scene> plain = eval_scenes(w_, eval_options({}, 1, -1, kDriftSeed));
    std::vector<std::string> rows;
    std::vector<std::vector<Image>> tiles;
    for (int64_t i = 0; i <= e_.grid_prompts; ++i) {
      const bool is_plain = i == e_.grid_prompts;
      rows.push_back(w_.caption(is_plain ? plain.at(0) : trigger.at(static_cast<size_t>(i))));
      std::vector<Image> row;
      for (const auto& [label, dir] : columns)
        row.push_back(read_image((out_ / dir / (is_plain ? "plain-0.png" : "trigger-" + std::to_string(i) + ".png")).string()));
      tiles.push_back(std::move(row));
    }
    const std::string path = (out_ / root / ("efficacy-" + m_.family + "-" + c.trigger + ".png")).string();
    write_png(path, labelled_grid(tiles, labels, rows, 2));
    return path;
  }

  const WorldEfficacyOptions& o_;
  const world::World& w_;
  const world::ModelsConfig& m_;
  const world::EfficacyConfig& e_;
  const Family& family_;
  fs::path out_, built_;
  std::optional<Stages> stages_;  // of the concept being measured
  std::string models_key_;
  std::map<std::string, std::vector<Image>> references_;
};

std::string today() {
  const std::time_t now = std::time(nullptr);
  char text[16];
  std::strftime(text, sizeof text, "%Y-%m-%d", std::gmtime(&now));
  return text;
}

std::string machine() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores";
}

std::string markdown(const WorldEfficacy& r, const WorldEfficacyOptions& o, const world::ModelsConfig& m, const std::string& report_dir) {
  const world::EfficacyConfig& e = m.efficacy;
  std::ostringstream md;
  md << "Measured " << today() << " on " << machine() << " in " << format_number(r.seconds / 60, 0)
     << " min (cached stages not counted):\n\n```sh\n" << o.command << "\n```\n\n"
     << "Each LoRA: rank " << e.lora_rank << ", " << e.lora_preset << ", " << e.lora_steps << " steps of " << e.batch_size
     << " at " << e.learning_rate << " (constant), caption dropout " << e.caption_dropout << "; each learn: as many steps from the "
     << "Base LoRA's plan. Scores: " << e.prompts << " held-out trigger prompts, " << e.drift_prompts
     << " held-out prompts without the trigger; "
     << (e.seeds == 1 ? std::string("one training seed (no spread)") : "mean ± standard deviation over " + std::to_string(e.seeds) + " training seeds")
     << ". Columns: concept = "
     << "fraction of trigger images showing the concept; other attributes = mean accuracy of the other prompted attributes; "
     << "off-world = mean fraction of pixels more than 48 from a clean rendering of the scene read (fidelity; lower is better); "
     << "drift = mean RGB distance per pixel from the same model without the LoRA on the prompts without the trigger (same noise).\n\n";
  for (const ConceptEfficacy& c : r.concepts) {
    md << "### " << c.trigger << " (" << c.kind << "), best g = " << format_number(c.best_guidance, 1) << "\n\n"
       << "| arm | concept | other attributes | off-world | drift |\n|---|---|---|---|---|\n";
    for (const ArmResult& a : c.arms)
      md << "| (" << a.id << ") " << a.label << " | " << mean_and_spread(a.concept_score) << " | " << mean_and_spread(a.others) << " | "
         << mean_and_spread(a.invalid, 3) << " | " << (a.id == "b" ? std::string("—") : mean_and_spread(a.drift, 1)) << " |\n";
    md << "\nConcept score of the transferred LoRA (approximate, g = " << format_number(c.best_guidance, 1)
       << ") by learn step (step 0 is arm c; the Base LoRA took " << e.lora_steps << " steps):";
    for (size_t i = 0; i < c.curve_steps.size(); ++i)
      md << (i ? "," : "") << " " << c.curve_steps[i] << ": " << mean_and_spread(c.curve_concept[i]);
    md << ".\n\n";
    const std::string png = "efficacy-" + r.family + "-" + c.trigger + ".png";
    if (!report_dir.empty()) md << "![" << c.trigger << ": rows are prompts, columns the arms](" << png << ")\n\n";
  }
  return md.str();
}

// Replaces the family's section between its markers in the report (appended when missing).
void write_report(const std::string& path, const std::string& family, const std::string& section) {
  const std::string begin = "<!-- world efficacy: " + family + " (written by deltatrain world efficacy) -->\n";
  const std::string end = "<!-- end world efficacy: " + family + " -->\n";
  std::string text = fs::exists(path) ? read_file(path) : "";
  const size_t a = text.find(begin), b = text.find(end);
  if (a != std::string::npos && b != std::string::npos && b > a)
    text = text.substr(0, a) + begin + section + end + text.substr(b + end.size());
  else
    text += (text.empty() || text.back() == '\n' ? "\n" : "\n\n") + begin + section + end;
  write_file_atomic(path, text);
}

}  // namespace

std::string mean_and_spread(const std::vector<double>& values, int decimals) {
  if (values.empty()) return "—";
  double mean = 0;
  for (double v : values) mean += v / static_cast<double>(values.size());
  if (values.size() == 1) return format_number(mean, decimals);
  double square = 0;
  for (double v : values) square += (v - mean) * (v - mean);
  return format_number(mean, decimals) + " ± " + format_number(std::sqrt(square / static_cast<double>(values.size() - 1)), decimals);
}

// The concepts dealt round-robin to o.jobs workers at once; each fills its concepts' stages. A worker
// that fails stops the table with its log named.
static void run_workers(const WorldEfficacyOptions& o, const world::World& w, const std::vector<int>& indices) {
  if (!o.worker) throw Error("world efficacy: jobs > 1 needs a way to start worker processes");
  const size_t jobs = std::min(static_cast<size_t>(o.jobs), indices.size());
  std::vector<std::vector<std::string>> shares(jobs);
  for (size_t i = 0; i < indices.size(); ++i) shares[i % jobs].push_back(w.concepts().at(static_cast<size_t>(indices[i])).trigger);
  std::vector<std::function<int()>> waits;
  std::vector<std::string> logs;
  for (size_t j = 0; j < jobs; ++j) {
    logs.push_back((fs::absolute(o.build.out) / "efficacy" / ("worker-" + std::to_string(j + 1) + ".log")).string());
    fs::create_directories(fs::path(logs.back()).parent_path());
    std::cout << "worker " << j + 1 << " of " << jobs << ": " << join(shares[j]) << " → " << logs.back() << std::endl;
    waits.push_back(o.worker(shares[j], logs.back()));
  }
  std::string failed;
  for (size_t j = 0; j < jobs; ++j) {
    const int status = waits[j]();
    std::cout << "worker " << j + 1 << (status == 0 ? " done" : " failed (exit " + std::to_string(status) + ")") << std::endl;
    if (status != 0 && failed.empty()) failed = "the worker measuring " + join(shares[j]) + " stopped (exit " + std::to_string(status) + "); its log: " + logs[j];
  }
  if (!failed.empty()) throw Error(failed);
}

WorldEfficacy measure_efficacy(const WorldEfficacyOptions& o) {
  if (o.built.empty()) build_world(o.build);
  const auto start = std::chrono::steady_clock::now();
  const world::World w = world::load_world(o.build.world, o.build.overrides);
  const world::ModelsConfig& m = models_of(w, o.build.family, o.build.world);
  const fs::path built = o.built.empty() ? fs::path(o.build.out) : fs::path(o.built);
  // Every stage reads the built models: the key of the Turbo's stage names them.
  Efficacy efficacy(o, w, m, built_models_key(built, o.build.world));
  WorldEfficacy r;
  r.family = m.family;
  std::vector<int> indices;
  for (const std::string& trigger : o.concepts) indices.push_back(w.concept_by_trigger(trigger));
  if (o.concepts.empty())
    for (size_t i = 0; i < w.concepts().size(); ++i) indices.push_back(static_cast<int>(i));
  if (o.jobs > 1 && indices.size() > 1) run_workers(o, w, indices);  // then every stage below is cached
  for (int index : indices) r.concepts.push_back(efficacy.measure(index));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string report_dir = o.report.empty() ? "" : fs::absolute(o.report).parent_path().string();
  r.markdown = markdown(r, o, m, report_dir);
  write_file_atomic((fs::path(o.build.out) / "efficacy" / "efficacy.md").string(), r.markdown);
  if (!o.report.empty()) {
    for (const ConceptEfficacy& c : r.concepts)
      fs::copy_file(c.grid, fs::path(report_dir) / fs::path(c.grid).filename(), fs::copy_options::overwrite_existing);
    write_report(o.report, r.family, r.markdown);
  }
  return r;
}

}  // namespace dt
