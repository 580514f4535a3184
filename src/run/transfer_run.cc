#include "run/transfer_run.h"

#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>

#include "core/error.h"
#include "core/hash.h"
#include "data/dataset.h"
#include "dist/group.h"
#include "io/atomic_file.h"
#include "run/run_samples.h"
#include "transfer/delta_store.h"
#include "transfer/objectives.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

ModelConfig with_base(const RunConfig& run, const std::string& base) {
  ModelConfig m = run.model;
  if (!base.empty()) m.base = base;
  return m;
}

// The part of the plan the loop will go through (train.max_steps may stop it early).
Plan record_plan(const RunConfig& run, const Plan& plan) {
  const int64_t limit = loop_batches(plan, run.train.max_steps, run.train.gradient_accumulation);
  if (limit == static_cast<int64_t>(plan.batches.size())) return plan;
  std::vector<PlanBatch> batches(plan.batches.begin(), plan.batches.begin() + limit);
  return plan_from_batches(plan.samples, plan.manifest_hash, std::move(batches), plan.noise);
}

uint64_t store_bytes(const Family& family, const Plan& plan, const StoreManifest& m) {
  uint64_t bytes = 16;  // the records file header
  for (const auto& b : plan.batches)
    for (const auto& it : b.items) {
      const PlanSample& s = plan.samples[it.sample];
      bytes += record_bytes(s.key.size(), family.latent_shape(s.height, s.width), m.dtype, m.exact);
    }
  return bytes;
}

// True when `dir` holds a complete store of exactly this recording (`m` with the teacher's identity).
bool already_recorded(const std::string& dir, const StoreManifest& m) {
  if (!fs::exists(fs::path(dir) / "manifest.json")) return false;
  try {
    return DeltaStore::open(dir)->manifest().to_json() == m.to_json();
  } catch (const Error&) {
    return false;  // incomplete or damaged: the writer repairs or explains
  }
}

// Writes the store `dir` of manifest `m` by running the objective `make` builds on its writer over
// `plan` on `model`. On several ranks each appends the records of its batches to its own shard of
// the store (rank 0 creates the store first), and rank 0 merges them once all are done.
// `announce` prints the step's line once the writer knows how much is already there.
void write_store(const RunConfig& run, LoadedModel& model, const Plan& plan, SampleSource& source, const std::string& dir,
                 const StoreManifest& m, bool resume, const std::function<std::unique_ptr<Objective>(DeltaStoreWriter&)>& make,
                 const std::function<void(const DeltaStoreWriter&)>& announce) {
  const dist::Group& ranks = dist::world();
  const StoreShard shard{ranks.rank(), ranks.size()};
  std::optional<DeltaStoreWriter> writer;
  if (ranks.is_main()) writer.emplace(dir, m, resume, shard);
  ranks.barrier("the wait for rank 0 to open the store " + dir);
  if (!ranks.is_main()) writer.emplace(dir, m, resume, shard);
  if (writer->torn_bytes_cut() > 0) std::cerr << "cut " << writer->torn_bytes_cut() << " bytes of an interrupted record\n";
  announce(*writer);
  const std::unique_ptr<Objective> objective = make(*writer);
  run_loop(run, model, plan, source, *objective, resume);
  writer->sync();
  if (ranks.size() == 1) {
    if (writer->done() != m.count)
      throw Error(objective->name() + " stopped after " + std::to_string(writer->done()) + " of " + std::to_string(m.count) + " records");
    return;
  }
  writer.reset();
  ranks.barrier("the wait for every rank's records");
  if (ranks.is_main()) merge_record_shards(dir, m, ranks.size());
  ranks.barrier("the wait for rank 0 to merge the records");
}

// Learn's kept priors (transfer.keep_prior): S0 of every record of `store` on the student, into
// <run_dir>/priors, unless a resumed run finds them complete. A new run computes them afresh.
std::shared_ptr<const DeltaStore> keep_priors(const RunConfig& run, const Family& family, const ModelConfig& student_config,
                                              LoadedModel& student, const DeltaStore& store, RunData& data,
                                              int64_t batch_size, bool resume) {
  const std::string dir = (fs::path(run.resolve(run.output.run_dir)) / "priors").string();
  StoreManifest m = store.manifest();  // the records' plan, count, latent space and noise
  m.family = family.name();
  m.teacher_model = family.transformer_identity(run.resolve(student_config.base));  // the student's, LoRA off
  m.teacher_lora = "";
  m.dtype = m.compute_dtype = run.model.dtype;
  m.exact = false;
  if (resume && already_recorded(dir, m)) {
    std::cout << "priors " << dir << " are complete (" << m.count << " records)\n";
    return DeltaStore::open(dir);
  }
  if (const fs::path kept = fs::path(dir) / "manifest.json"; resume && fs::exists(kept)) {
    // Said here in the student's terms (the store's own check speaks of a teacher).
    if (StoreManifest::from_json(read_file(kept.string()), kept.string()).teacher_model != m.teacher_model)
      throw file_error(kept.string(), "the priors were computed on another student checkpoint than " + student_config.base +
                                          ": start the learn run afresh (without --resume)");
  }
  if (!resume && dist::world().is_main()) fs::remove_all(dir);  // before rank 0 creates it anew (write_store)
  const Plan plan = prior_plan(store, data.plan.samples, data.manifest->hash, batch_size);
  const fs::path records = fs::path(dir) / "records.bin";
  const uint64_t have = resume && fs::exists(records) ? fs::file_size(records) : 0, need = store_bytes(family, plan, m);
  check_disk_space(dir, need > have ? need - have : 0, m.count);
  RunConfig prior_run = run;
  prior_run.train.max_steps = 0;  // every record's prior, wherever learn stops
  write_store(prior_run, student, plan, *data.source, dir, m, resume,
              [&](DeltaStoreWriter& w) { return std::make_unique<PriorObjective>(w, store, plan); },
              [&](const DeltaStoreWriter& w) {
                std::cout << "priors: S0 of every record on the student, kept for every pass, " << w.done() << " of "
                          << m.count << " already in " << dir << "\n";
              });
  return DeltaStore::open(dir);
}

}  // namespace

std::string store_dir(const RunConfig& run) {
  return run.transfer.store.empty() ? (fs::path(run.resolve(run.output.run_dir)) / "deltas").string()
                                    : run.resolve(run.transfer.store);
}

void record(const RunConfig& run, bool resume) {
  const TransferConfig& t = run.transfer;
  if (t.teacher_lora.empty()) throw Error("transfer.teacher_lora is not set (the LoRA trained on the teacher model)");
  if (t.store_dtype != "bf16" && t.store_dtype != "fp32")
    throw Error("transfer.store_dtype '" + t.store_dtype + "' is not one of bf16, fp32");
  if (t.record_dtype != "fp32" && t.record_dtype != "bf16" && t.record_dtype != "model")
    throw Error("transfer.record_dtype '" + t.record_dtype + "' is not one of fp32, bf16, model");
  // The teacher computes in record_dtype; the data caches (and so the latent space learn checks)
  // stay those of model.dtype.
  RunConfig teacher_run = run;
  if (t.record_dtype != "model") teacher_run.model.dtype = t.record_dtype;
  const ModelConfig teacher_config = with_base(run, t.teacher);
  const Family& family = family_of(run, teacher_config);
  const std::unique_ptr<RunData> data = prepare_data(run, teacher_config);
  const Plan plan = record_plan(run, data->plan);
  const std::string dir = store_dir(run);

  StoreManifest m;
  m.plan_hash = plan.hash;
  m.count = static_cast<uint64_t>(plan.item_count());
  m.family = family.name();
  m.teacher_lora = sha256_file(run.resolve(t.teacher_lora));
  m.latent_space = data->cache->identities().vae;
  m.dtype = t.store_dtype;
  m.compute_dtype = teacher_run.model.dtype;
  m.exact = t.exact;
  m.noise_offset = plan.noise.offset;
  m.noise_perturbation = plan.noise.perturbation;
  // The teacher's identity from its files (a complete store is reused only for the same Base); a
  // store that differs in it, or in anything else, is explained by the writer below.
  m.teacher_model = family.transformer_identity(run.resolve(teacher_config.base));
  if (resume && already_recorded(dir, m)) {
    std::cout << "delta store " << dir << " is complete (" << m.count << " records)\n";
    return;
  }
  const fs::path records = fs::path(dir) / "records.bin";
  const uint64_t have = resume && fs::exists(records) ? fs::file_size(records) : 0, need = store_bytes(family, plan, m);
  check_disk_space(dir, need > have ? need - have : 0, m.count);

  LoraConfig lora = run.lora;
  lora.init = t.teacher_lora;
  lora.dropout = 0;
  LoadedModel teacher = load_model(teacher_run, with_base(teacher_run, t.teacher), lora);
  write_store(teacher_run, teacher, plan, *data->source, dir, m, resume,
              [&](DeltaStoreWriter& w) {
                return std::make_unique<RecordObjective>(w, plan, *data->source, t.exact, t.paired_forward);
              },
              [&](const DeltaStoreWriter& w) {
                std::cout << "record: teacher " << family.name() << " + " << t.teacher_lora << " in " << m.compute_dtype
                          << ", " << (t.exact ? "exact" : "approximate") << " form, " << w.done() << " of " << m.count
                          << " records already in " << dir << "\n";
              });
}

LoopResult learn(const RunConfig& run, bool resume) {
  const TransferConfig& t = run.transfer;
  check_method(run, {"lora"});  // the student learns a LoRA
  if (t.student.empty()) throw Error("transfer.student is not set (the model to teach, e.g. the Turbo checkpoint)");
  if (t.guidance < 0) throw Error("transfer.guidance must be positive (0 = the family default)");
  const LossFunction loss = LossFunction::from_settings(run.train.loss, run.train.huber_delta);
  const auto store = DeltaStore::open(store_dir(run));
  const ModelConfig student_config = with_base(run, t.student);
  const Family& family = family_of(run, student_config);
  const std::unique_ptr<RunData> data = prepare_data(run, student_config);
  store->check_latent_space(data->cache->identities().vae);

  const double guidance = t.guidance > 0 ? t.guidance : family.defaults().transfer_cfg;
  const int64_t batch_size = t.learn_batch_size > 0 ? t.learn_batch_size : run.train.batch_size;
  const LearnPlan plan = make_learn_plan(*store, data->plan.samples, data->manifest->hash, batch_size, t.learn_passes,
                                         t.learn_order, static_cast<uint64_t>(run.train.seed));
  LoraConfig lora = run.lora;
  if (t.student_lora == "teacher") {
    if (t.teacher_lora.empty()) throw Error("transfer.student_lora = \"teacher\" needs transfer.teacher_lora");
    lora.init = t.teacher_lora;
  } else {
    lora.init = t.student_lora == "fresh" ? "" : t.student_lora;
  }
  // Samples: prompts encoded and the teacher's column made (Base loaded and freed) before the student loads.
  const std::unique_ptr<RunSampler> sampler = dist::world().is_main() ? RunSampler::create(run, student_config) : nullptr;
  if (sampler) {
    if (t.teacher_lora.empty()) throw Error("transfer grids need transfer.teacher_lora (the teacher column)");
    sampler->add_teacher_column(run, with_base(run, t.teacher), t.teacher_lora);
  }
  LoadedModel student = load_model(run, student_config, lora);
  std::cout << "learn: student " << family.name() << " (LoRA " << (lora.init.empty() ? "fresh" : lora.init) << "), "
            << store->size() << " records × " << t.learn_passes << " passes in " << plan.plan.batches.size()
            << " batches, g = " << guidance << ", " << (store->manifest().exact ? "exact" : "approximate") << " form\n";
  // S0 is the same in every pass (the student's base is frozen, and x_σ, σ and c are the record's):
  // with more than one pass run, computed once and kept.
  const int64_t batches = loop_batches(plan.plan, run.train.max_steps, run.train.gradient_accumulation);
  const bool several_passes = batches > 0 && plan.plan.batches[batches - 1].epoch > 0;
  const std::shared_ptr<const DeltaStore> priors =
      t.keep_prior && several_passes ? keep_priors(run, family, student_config, student, *store, *data, batch_size, resume) : nullptr;
  LearnObjective objective(store, plan, *data->source, guidance, loss, priors);
  return run_loop(run, student, plan.plan, *data->source, objective, resume,
                  sampler ? sampler->begin(*student.denoiser, resume) : AfterStep{});
}

LoopResult transfer(const RunConfig& run, bool resume) {
  record(run, resume);  // the teacher is freed when record returns
  return learn(run, resume);
}

}  // namespace dt
