#include "transfer/objectives.h"

#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <utility>

#include "core/error.h"
#include "train/batching.h"
#include "transfer/delta.h"

namespace dt {
namespace {

double rms(const at::Tensor& t) { return t.to(torch::kFloat).square().mean().sqrt().item<double>(); }

// The item number of each batch's first item, one past the last item at the end: where a store
// written batch by batch stands in the plan.
std::vector<uint64_t> first_items(const Plan& plan) {
  std::vector<uint64_t> first{0};
  for (const auto& b : plan.batches) first.push_back(first.back() + b.items.size());
  return first;
}

// Batches whose every item is in a store whose next item is `next_item` (or, for a shard, before
// its last record: the other ranks' batches); a batch cut in the middle is recomputed whole (same
// batch, same numbers) and only its missing records appended.
int64_t stored_batches(const std::vector<uint64_t>& first_items, uint64_t next_item) {
  const auto it = std::upper_bound(first_items.begin(), first_items.end(), next_item);
  return static_cast<int64_t>(it - first_items.begin()) - 1;
}

}  // namespace

// ---- record ------------------------------------------------------------------------------------

RecordObjective::RecordObjective(DeltaStoreWriter& store, const Plan& plan, SampleSource& source, bool exact,
                                 bool paired_forward)
    : store_(store), source_(source), exact_(exact), paired_(paired_forward), plan_(plan), first_item_(first_items(plan)) {}

std::optional<int64_t> RecordObjective::completed_batches() { return stored_batches(first_item_, store_.next_item()); }

at::Tensor RecordObjective::delta(Denoiser& model, const Batch& batch, const std::vector<TextFeatures>& text) {
  if (paired_) {
    try {
      return lora_delta(model, batch.x_t, batch.sigma, text, true).cpu();
    } catch (const c10::Error& e) {
      if (!is_out_of_memory(e.what())) throw;
    } catch (const std::bad_alloc&) {
    }
    std::cerr << "warning: the paired LoRA-on/off forward ran out of memory; recording with two forwards from here on "
                 "(set transfer.paired_forward = false to start that way)\n";
    paired_ = false;
  }
  return lora_delta(model, batch.x_t, batch.sigma, text, false).cpu();
}

StepResult RecordObjective::step(Denoiser& model, const Batch& batch) {
  if (batch.plan != &plan_) throw Error("transfer record: the loop runs another plan than the store records");
  const uint64_t first = first_item_.at(batch.index) + static_cast<uint64_t>(batch.first);
  const int64_t b = static_cast<int64_t>(batch.items.size());
  if (first + b <= store_.next_item()) return {};

  const at::Tensor delta_c = delta(model, batch, batch.text);
  at::Tensor delta_u;
  if (exact_) {
    std::vector<TextFeatures> empty;
    for (const auto& item : batch.items)
      empty.push_back(source_.text(item.sample, kEmptyCaption).to(batch.text.at(0).options()));
    delta_u = delta(model, batch, empty);
  }
  const at::Tensor x0 = batch.x0.cpu();
  for (int64_t j = 0; j < b; ++j) {
    if (first + j < store_.next_item()) continue;
    const PlanItem& item = batch.items[j];
    DeltaRecord r;
    r.item = first + j;
    r.sample_key = plan_.samples.at(item.sample).key;
    r.caption_index = item.caption;
    r.caption_hash = caption_hash(source_.caption(item.sample, item.caption));
    r.sigma = item.sigma;
    r.noise_seed = item.noise_seed;
    r.latent_checksum = latent_checksum(x0[j]);
    r.delta_c = delta_c[j];
    if (exact_) r.delta_u = delta_u[j];
    store_.append(r);
  }
  StepResult result;
  result.metrics["delta_c_rms"] = rms(delta_c);
  if (exact_) result.metrics["delta_u_rms"] = rms(delta_u);
  return result;
}

// δc's passes only: δu's (the exact form) repeat them with the empty caption, which is no longer.
StepResult RecordObjective::warm_up(Denoiser& model, const Batch& batch) {
  delta(model, batch, batch.text);
  return {};
}

void RecordObjective::flush() { store_.sync(); }

// ---- learn -------------------------------------------------------------------------------------

namespace {

// The plan item of each record of `store` (its sample among `samples`, caption, σ, noise seed).
std::vector<PlanItem> store_items(const DeltaStore& store, const std::vector<PlanSample>& samples) {
  std::map<std::string, int32_t> by_key;
  for (size_t i = 0; i < samples.size(); ++i) by_key[samples[i].key] = static_cast<int32_t>(i);
  std::vector<PlanItem> items(store.size());
  for (uint64_t r = 0; r < store.size(); ++r) {
    const DeltaRecord info = store.read_info(r);
    const auto it = by_key.find(info.sample_key);
    if (it == by_key.end())
      throw file_error(store.dir(), "record " + std::to_string(r) + " is of sample '" + info.sample_key +
                                        "', which the student's dataset does not have (the data changed since recording)");
    items[r] = {it->second, info.caption_index, static_cast<float>(info.sigma), info.noise_seed};
  }
  return items;
}

}  // namespace

LearnPlan make_learn_plan(const DeltaStore& store, std::vector<PlanSample> samples, const std::string& manifest_hash,
                          int64_t batch_size, int64_t passes, const std::string& order, uint64_t seed) {
  if (batch_size < 1) throw Error("transfer.learn_batch_size must be at least 1");
  if (passes < 1) throw Error("transfer.learn_passes must be at least 1");
  if (order != "recorded" && order != "shuffled")
    throw Error("transfer.learn_order must be \"recorded\" or \"shuffled\", not \"" + order + "\"");

  const std::vector<PlanItem> items = store_items(store, samples);
  LearnPlan out;
  std::vector<PlanBatch> batches;
  std::mt19937_64 rng(seed);
  std::vector<size_t> batch_of;
  for (int64_t pass = 0; pass < passes; ++pass) {
    std::vector<uint64_t> sequence(store.size());
    std::iota(sequence.begin(), sequence.end(), 0);
    if (order == "shuffled") seeded_shuffle(sequence, rng);
    std::vector<PlanItem> pass_items;
    for (uint64_t r : sequence) pass_items.push_back(items[r]);
    append_bucket_batches(pass_items, samples, batch_size, static_cast<int32_t>(pass), batches, &batch_of);
    out.records.resize(batches.size());
    for (size_t j = 0; j < sequence.size(); ++j) out.records[batch_of[j]].push_back(sequence[j]);
  }
  const StoreManifest& m = store.manifest();
  out.plan = plan_from_batches(std::move(samples), manifest_hash, std::move(batches), {m.noise_offset, m.noise_perturbation});
  return out;
}

Plan prior_plan(const DeltaStore& store, std::vector<PlanSample> samples, const std::string& manifest_hash,
                int64_t batch_size) {
  if (batch_size < 1) throw Error("transfer.learn_batch_size must be at least 1");
  std::vector<PlanBatch> batches;
  const PlanSample* bucket = nullptr;
  for (const PlanItem& item : store_items(store, samples)) {
    const PlanSample& s = samples[item.sample];
    if (batches.empty() || static_cast<int64_t>(batches.back().items.size()) == batch_size || s.width != bucket->width ||
        s.height != bucket->height)
      batches.push_back({0, {}});
    batches.back().items.push_back(item);
    bucket = &s;
  }
  const StoreManifest& m = store.manifest();
  return plan_from_batches(std::move(samples), manifest_hash, std::move(batches), {m.noise_offset, m.noise_perturbation});
}

PriorObjective::PriorObjective(DeltaStoreWriter& priors, const DeltaStore& store, const Plan& plan)
    : priors_(priors), store_(store), first_item_(first_items(plan)) {}

std::optional<int64_t> PriorObjective::completed_batches() { return stored_batches(first_item_, priors_.next_item()); }

StepResult PriorObjective::step(Denoiser& model, const Batch& batch) {
  const uint64_t first = first_item_.at(batch.index) + static_cast<uint64_t>(batch.first);
  const int64_t b = static_cast<int64_t>(batch.items.size());
  if (first + b <= priors_.next_item()) return {};
  const at::Tensor s0 = prior_prediction(model, batch.x_t, batch.sigma, batch.text).cpu();
  for (int64_t j = 0; j < b; ++j) {
    if (first + j < priors_.next_item()) continue;
    DeltaRecord r = store_.read_info(first + j);  // the record it is the prior of: same key, σ, seed, checksums
    r.delta_c = s0[j];
    priors_.append(r);
  }
  return {};
}

StepResult PriorObjective::warm_up(Denoiser& model, const Batch& batch) {
  prior_prediction(model, batch.x_t, batch.sigma, batch.text);
  return {};
}

LearnObjective::LearnObjective(std::shared_ptr<const DeltaStore> store, const LearnPlan& plan, SampleSource& source,
                               double guidance, LossFunction loss, std::shared_ptr<const DeltaStore> priors)
    : store_(std::move(store)), priors_(std::move(priors)), plan_(plan), source_(source), guidance_(guidance), loss_(loss) {
  if (priors_ && priors_->size() != store_->size())
    throw file_error(priors_->dir(), "holds " + std::to_string(priors_->size()) + " priors for " +
                                         std::to_string(store_->size()) + " records of " + store_->dir());
}

void LearnObjective::check_caption(const DeltaRecord& r, const PlanItem& item) {
  if (const std::string caption = source_.caption(item.sample, item.caption); r.caption_hash != caption_hash(caption))
    throw file_error(store_->dir(), "record " + std::to_string(r.item) + ": caption " + std::to_string(r.caption_index) +
                                        " of sample '" + r.sample_key + "' is not the text it was recorded with (it reads now \"" +
                                        caption + "\"; the captions changed since recording: re-record)");
}

void LearnObjective::begin(Denoiser& model, const Plan& plan) {
  // Every record's caption before the first step, not hours into the run.
  for (size_t b = 0; b < plan_.records.size(); ++b)
    for (size_t j = 0; j < plan_.records[b].size(); ++j)
      check_caption(store_->read_info(plan_.records[b][j]), plan_.plan.batches[b].items.at(j));
}

at::Tensor LearnObjective::target(Denoiser& model, const Batch& batch) { return prior_and_target(model, batch).second; }

std::pair<at::Tensor, at::Tensor> LearnObjective::prior_and_target(Denoiser& model, const Batch& batch) {
  const auto& records = plan_.records.at(batch.index);
  const at::Tensor x0 = batch.x0.cpu();
  std::vector<at::Tensor> dc, du, kept;
  std::vector<bool> empty_caption;
  for (size_t j = 0; j < batch.items.size(); ++j) {
    DeltaRecord r = store_->read(records.at(batch.first + j));
    const PlanItem& item = batch.items.at(j);
    const std::string what = "record " + std::to_string(r.item) + " (" + r.sample_key + ")";
    if (r.sample_key != plan_.plan.samples.at(item.sample).key || r.caption_index != item.caption ||
        static_cast<float>(r.sigma) != item.sigma || r.noise_seed != item.noise_seed)
      throw file_error(store_->dir(), what + " does not match the batch item it feeds");
    check_caption(r, item);
    if (r.latent_checksum != latent_checksum(x0[j]))
      throw file_error(store_->dir(), what + ": latent checksum differs from the student's cached latent (the image, its "
                                             "bucket/crop or the VAE changed since recording; re-record, or re-cache)");
    if (r.delta_c.sizes() != x0[j].sizes())
      throw file_error(store_->dir(), what + ": the recorded delta's shape differs from the student's latent");
    dc.push_back(r.delta_c);
    if (r.delta_u.defined()) du.push_back(r.delta_u);
    empty_caption.push_back(r.caption_index == kEmptyCaption);
    if (priors_) {
      DeltaRecord p;
      try {
        p = priors_->read(r.item);
      } catch (const Error& e) {  // derived data: nothing is lost by computing it again
        throw Error(std::string(e.what()) + "; the priors are computed from the store and the student: remove " +
                    priors_->dir() + " and --resume to compute them again");
      }
      if (p.sample_key != r.sample_key || p.caption_hash != r.caption_hash || p.sigma != r.sigma ||
          p.noise_seed != r.noise_seed || p.latent_checksum != r.latent_checksum || p.delta_c.sizes() != r.delta_c.sizes())
        throw file_error(priors_->dir(), "prior " + std::to_string(r.item) + " is not of " + what +
                                             " of the delta store (the priors of another store; a new learn run recomputes them)");
      kept.push_back(p.delta_c);
    }
  }
  // S0 as kept (float32 holding the student's dtype's values exactly) or computed now.
  const at::Tensor s0 = priors_ ? torch::stack(kept).to(batch.x_t.device())
                                : prior_prediction(model, batch.x_t, batch.sigma, batch.text);
  const at::Tensor delta_u = du.empty() ? at::Tensor() : torch::stack(du);
  return {s0, transfer_target(s0, torch::stack(dc), delta_u, guidance_, empty_caption)};
}

StepResult LearnObjective::step(Denoiser& model, const Batch& batch) {
  const auto [s0, target] = prior_and_target(model, batch);
  const at::Tensor s = model.velocity(batch.x_t, batch.sigma, batch.text);
  StepResult result{weighted_loss(loss_, s, target, batch.loss_weight), {}};
  // How far the LoRA's change of the student is from the transferred change: ‖S − target‖ / ‖target − S0‖.
  result.metrics["transfer_error"] = rms(s.detach() - target) / std::max(rms(target - s0), 1e-30);
  return result;
}

}  // namespace dt
