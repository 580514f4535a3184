#include "run/onetrainer_config.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/listing.h"
#include "data/dataset.h"
#include "io/atomic_file.h"
#include "models/family.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

using json = nlohmann::json;

// Reads fields of the OneTrainer JSON, remembering which top-level keys were used.
class Fields {
 public:
  Fields(const json& root, std::string file) : root_(root), file_(std::move(file)) {}
  const json* get(const std::string& key) {
    used_.insert(key);
    auto it = root_.find(key);
    return it == root_.end() || it->is_null() ? nullptr : &*it;
  }
  template <class T>
  void take(const std::string& key, T& into) {
    if (const json* v = get(key)) {
      try {
        into = v->get<T>();
      } catch (const json::exception&) {
        throw file_error(file_, "field '" + key + "' has an unexpected type");
      }
    }
  }
  std::string text(const std::string& key) {
    std::string s;
    take(key, s);
    return s;
  }
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (auto it = root_.begin(); it != root_.end(); ++it)
      if (!used_.count(it.key())) out.push_back(it.key());
    return out;
  }

 private:
  const json& root_;
  std::string file_;
  std::set<std::string> used_;
};


std::string dtype(const std::string& onetrainer, const std::string& field, std::vector<std::string>& warnings) {
  if (onetrainer == "FLOAT_32") return "fp32";
  if (onetrainer == "BFLOAT_16") return "bf16";
  if (onetrainer == "FLOAT_16") return field == "output_dtype" ? "fp16" : "bf16";
  warnings.push_back(field + " " + onetrainer + " has no counterpart; bf16 is used");
  return "bf16";
}

}  // namespace

RunConfig import_onetrainer_config(const std::string& path, const std::string& concepts_path,
                                   std::vector<std::string>& warnings) {
  json root;
  try {
    root = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw file_error(path, std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) throw file_error(path, "expected a OneTrainer training config (a JSON object)");
  const fs::path folder = fs::absolute(fs::path(path)).parent_path();
  auto local = [&](const std::string& p) { return p.empty() || fs::path(p).is_absolute() ? p : (folder / p).lexically_normal().string(); };

  RunConfig run;
  run.base_dir = folder.string();
  Fields f(root, path);
  std::vector<std::string> lost;  // values that cannot be carried over

  // Model.
  const std::string model_type = f.text("model_type");
  if (!model_type.empty()) {
    std::vector<std::string> known;
    for (const Family* family : families()) {
      if (model_type.rfind(family->onetrainer_model_type(), 0) == 0) run.model.family = family->name();
      known.push_back(family->onetrainer_model_type());
    }
    if (run.model.family.empty())
      throw file_error(path, "model_type " + model_type + " is not a family deltatrain trains (" + join(known) + ")");
  }
  if (const std::string method = f.text("training_method"); !method.empty() && method != "LORA")
    throw file_error(path, "training_method " + method + ": deltatrain trains LoRAs only");
  if (const std::string peft = f.text("peft_type"); !peft.empty() && peft != "LORA") lost.push_back("peft_type " + peft);
  run.model.base = f.text("base_model_name");
  if (!run.model.base.empty() && !fs::exists(local(run.model.base)))
    warnings.push_back("base_model_name '" + run.model.base + "' is not a local folder: set model.base to a downloaded pipeline folder");
  if (const std::string d = f.text("train_dtype"); !d.empty()) run.model.dtype = dtype(d, "train_dtype", warnings);
  if (const std::string d = f.text("train_device"); !d.empty()) run.model.device = d;
  if (const json* t = f.get("transformer"); t && t->is_object()) run.model.gradient_checkpointing = t->value("gradient_checkpointing", true);
  if (const json* g = f.get("gradient_checkpointing"); g && g->is_string()) run.model.gradient_checkpointing = g->get<std::string>() != "OFF";

  // LoRA.
  f.take("lora_rank", run.lora.rank);
  f.take("lora_alpha", run.lora.alpha);
  f.take("dropout_probability", run.lora.dropout);
  if (const std::string init = f.text("lora_model_name"); !init.empty()) run.lora.init = local(init);
  if (f.get("lora_decompose") && root.value("lora_decompose", false)) lost.push_back("lora_decompose (DoRA)");
  const std::string preset = f.text("layer_filter_preset"), filter = f.text("layer_filter");
  const json* regex = f.get("layer_filter_regex");
  if (!preset.empty() && preset != "custom") {
    run.lora.preset = preset;
  } else if (!filter.empty()) {
    run.lora.preset = "";
    std::stringstream parts(filter);
    for (std::string part; std::getline(parts, part, ',');) {
      if (part.empty()) continue;
      // Without the regex switch OneTrainer matches plain substrings.
      if (!(regex && regex->is_boolean() && regex->get<bool>())) {
        std::string quoted;
        for (char c : part) quoted += std::string(std::strchr("\\^$.|?*+()[]{}", c) ? "\\" : "") + c;
        part = quoted;
      }
      run.lora.include.push_back(part);
    }
  }

  // Training.
  f.take("epochs", run.train.epochs);
  f.take("batch_size", run.train.batch_size);
  f.take("gradient_accumulation_steps", run.train.gradient_accumulation);
  f.take("learning_rate", run.train.learning_rate);
  double warmup = 0;
  f.take("learning_rate_warmup_steps", warmup);
  run.train.warmup_steps = static_cast<int64_t>(warmup);
  f.take("learning_rate_min_factor", run.train.min_lr_factor);
  if (const std::string s = f.text("learning_rate_scheduler"); !s.empty()) {
    if (s == "CONSTANT") run.train.lr_schedule = "constant";
    else if (s == "LINEAR") run.train.lr_schedule = "linear";
    else if (s == "COSINE") run.train.lr_schedule = "cosine";
    else lost.push_back("learning_rate_scheduler " + s + " (constant is used)");
  }
  if (const json* c = f.get("clip_grad_norm")) run.train.clip_grad_norm = c->get<double>();
  else if (root.contains("clip_grad_norm")) run.train.clip_grad_norm = 0;  // null = off
  if (const json* o = f.get("optimizer"); o && o->is_object()) {
    const std::string name = o->value("optimizer", "ADAMW");
    if (name != "ADAMW") lost.push_back("optimizer " + name + " (AdamW with fp32 states is used)");
    auto number = [&](const char* key, double& into) {
      if (o->contains(key) && (*o)[key].is_number()) into = (*o)[key].get<double>();
    };
    number("beta1", run.train.beta1);
    number("beta2", run.train.beta2);
    number("eps", run.train.epsilon);
    number("weight_decay", run.train.weight_decay);
  }
  double mse = 1, mae = 0, huber = 0, log_cosh = 0;
  f.take("mse_strength", mse);
  f.take("mae_strength", mae);
  f.take("huber_strength", huber);
  f.take("log_cosh_strength", log_cosh);
  f.take("huber_delta", run.train.huber_delta);
  const int terms = (mse != 0) + (mae != 0) + (huber != 0) + (log_cosh != 0);
  if (terms == 1 && mae != 0) run.train.loss = "mae";
  else if (terms == 1 && huber != 0) run.train.loss = "huber";
  else if (terms == 1 && log_cosh != 0) lost.push_back("log_cosh_strength (mse is used)");
  else if (terms > 1) lost.push_back("a mix of mse, mae, huber and log_cosh strengths (mse is used)");
  if (terms == 1 && (mse + mae + huber + log_cosh) != 1)
    lost.push_back("a loss strength other than 1 (the loss is not scaled)");
  if (const std::string w = f.text("loss_weight_fn"); !w.empty() && w != "CONSTANT") lost.push_back("loss_weight_fn " + w);
  if (const std::string s = f.text("loss_scaler"); !s.empty() && s != "NONE") lost.push_back("loss_scaler " + s);

  // Timesteps and noise (specs/training.md §3–4).
  double weight = 0, bias = 0;
  f.take("noising_weight", weight);
  f.take("noising_bias", bias);
  if (const std::string d = f.text("timestep_distribution"); !d.empty()) {
    if (d == "UNIFORM") {
      run.train.timestep_distribution = "uniform";
    } else if (d == "LOGIT_NORMAL") {
      run.train.timestep_distribution = "logit_normal";
      run.train.logit_mean = bias;
      run.train.logit_std = weight + 1;
    } else if (d == "SIGMOID") {
      run.train.timestep_distribution = "sigmoid";
      run.train.sigmoid_scale = weight;
      run.train.sigmoid_bias = bias;
    } else {
      lost.push_back("timestep_distribution " + d + " (logit_normal is used)");
    }
  }
  f.take("min_noising_strength", run.train.min_sigma);
  f.take("max_noising_strength", run.train.max_sigma);
  f.take("timestep_shift", run.train.shift);
  f.take("dynamic_timestep_shifting", run.train.dynamic_shift);
  f.take("offset_noise_weight", run.train.offset_noise);
  f.take("perturbation_noise_weight", run.train.perturbation_noise);
  if (const json* g = f.get("generalized_offset_noise"); g && g->is_boolean() && g->get<bool>()) lost.push_back("generalized_offset_noise");

  // Saving.
  int64_t every = 0;
  f.take("save_every", every);
  if (const std::string unit = f.text("save_every_unit"); unit == "STEP") run.train.save_every = every;
  else if (!unit.empty() && unit != "NEVER" && every > 0) lost.push_back("save_every in " + unit + " (only steps map)");
  int64_t backup = 0;
  f.take("backup_after", backup);
  if (const std::string unit = f.text("backup_after_unit"); unit == "STEP") run.train.checkpoint_every = backup;
  else if (!unit.empty() && unit != "NEVER" && backup > 0) lost.push_back("backup_after in " + unit + " (checkpoints count steps)");
  f.take("rolling_backup_count", run.train.keep_checkpoints);

  // Samples (the sample list itself is OneTrainer's samples.json, read as it is).
  int64_t sample_after = 0;
  f.take("sample_after", sample_after);
  if (const std::string unit = f.text("sample_after_unit"); unit == "STEP") run.sample.every_steps = sample_after;
  else if (unit == "MINUTE") run.sample.every_minutes = static_cast<double>(sample_after);
  else if (!unit.empty() && unit != "NEVER" && sample_after > 0) lost.push_back("sample_after in " + unit + " (steps and minutes map)");
  if (const std::string file = f.text("sample_definition_file_name"); !file.empty()) {
    if (fs::exists(local(file))) run.sample.file = local(file);
    else warnings.push_back("sample file " + local(file) + " not found: no samples during training");
  }

  // Output.
  if (const std::string dest = f.text("output_model_destination"); !dest.empty()) run.output.lora = local(dest);
  if (const std::string fmt = f.text("output_model_format"); !fmt.empty()) {
    if (fmt == "COMFY_LORA" || fmt == "SAFETENSORS") run.output.format = "comfyui";
    else if (fmt == "DIFFUSERS_LORA") run.output.format = "peft";
    else if (fmt == "LEGACY_LORA") run.output.format = "onetrainer";
    else lost.push_back("output_model_format " + fmt + " (comfyui is used)");
  }
  if (const std::string d = f.text("output_dtype"); !d.empty()) run.output.save_dtype = dtype(d, "output_dtype", warnings);
  if (const std::string w = f.text("workspace_dir"); !w.empty()) run.output.run_dir = local(w);
  f.take("tensorboard", run.output.tensorboard);

  // Data.
  if (const std::string c = f.text("cache_dir"); !c.empty()) run.data.cache_dir = local(c);
  if (const std::string r = f.text("resolution"); !r.empty()) {
    run.data.resolutions.clear();
    std::stringstream parts(r);
    for (std::string part; std::getline(parts, part, ',');) {
      try {
        run.data.resolutions.push_back(std::stoll(part));
      } catch (const std::exception&) {
        throw file_error(path, "resolution '" + r + "' is not a list of numbers");
      }
    }
  }
  if (const json* b = f.get("aspect_ratio_bucketing"); b && b->is_boolean() && !b->get<bool>()) run.data.aspect_ratios = {1.0};
  std::string concepts_file = concepts_path;
  const std::string named = f.text("concept_file_name");
  std::string inline_file;
  if (concepts_file.empty()) {
    if (const json* inline_concepts = f.get("concepts"); inline_concepts && inline_concepts->is_array()) {
      inline_file = (folder / (".concepts-" + std::to_string(getpid()) + ".json")).string();
      write_file_atomic(inline_file, inline_concepts->dump());
      concepts_file = inline_file;
    } else if (!named.empty()) {
      concepts_file = local(named);
    }
  } else {
    f.get("concepts");
  }
  if (!concepts_file.empty()) {
    if (!fs::exists(concepts_file)) {
      warnings.push_back("concepts file " + concepts_file + " not found: add [[data.concepts]] by hand or pass --concepts");
    } else {
      std::vector<std::string> concept_warnings;
      run.data.concepts = read_onetrainer_concepts(concepts_file, concept_warnings);
      for (auto& c : run.data.concepts) c.path = fs::absolute(c.path).lexically_normal().string();
      for (auto& w : concept_warnings) warnings.push_back(w);
    }
  }
  if (!inline_file.empty()) fs::remove(inline_file);

  if (!lost.empty()) warnings.push_back("settings with no counterpart in deltatrain (defaults used): " + join(lost, lost.size()));
  auto unused = f.unused();
  std::sort(unused.begin(), unused.end());
  if (!unused.empty()) warnings.push_back("OneTrainer fields not imported: " + join(unused, unused.size()));
  return run;
}

}  // namespace dt
