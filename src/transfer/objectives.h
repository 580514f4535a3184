// The two transfer steps as objectives on the trainer's loop (train/objective.h):
//   record: teacher, no gradients, δc [and δu] of every plan item appended to a delta store;
//   learn:  student, L(S(c), S0(c) + g·δc [+ (1 − g)·δu]) over the store's records (L: train.loss).
// The arithmetic itself is transfer/delta.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/objective.h"
#include "train/plan.h"
#include "transfer/delta_store.h"

namespace dt {

class RecordObjective : public Objective {
 public:
  // `plan` is the plan the loop runs (record i = item i of it, in order); `source` gives the empty
  // caption's features for δu (exact form).
  RecordObjective(DeltaStoreWriter& store, const Plan& plan, SampleSource& source, bool exact, bool paired_forward);
  std::string name() const override { return "transfer-record"; }
  bool trains() const override { return false; }
  StepResult step(Denoiser& model, const Batch& batch) override;
  StepResult warm_up(Denoiser& model, const Batch& batch) override;  // the deltas, not stored
  void flush() override;
  std::optional<int64_t> completed_batches() override;
  void end() override { flush(); }

 private:
  // δ = T − P of the batch for `text` (paired when asked and memory allows), on the CPU.
  at::Tensor delta(Denoiser& model, const Batch& batch, const std::vector<TextFeatures>& text);

  DeltaStoreWriter& store_;
  SampleSource& source_;
  bool exact_, paired_;
  const Plan& plan_;
  std::vector<uint64_t> first_item_;  // plan item number of each batch's first item; one past the end last
};

// Learn's plan: the store's records regrouped into batches of `batch_size` (items of one bucket
// size per batch), in recorded order or shuffled per pass, over `passes` passes. Each item keeps
// its record's sample, caption, σ and noise seed, so x_σ is rebuilt exactly whatever the grouping.
struct LearnPlan {
  Plan plan;
  std::vector<std::vector<uint64_t>> records;  // the record of each item of each plan batch
};

// `samples` are the student's dataset samples (their keys must include every record's sample).
LearnPlan make_learn_plan(const DeltaStore& store, std::vector<PlanSample> samples, const std::string& manifest_hash,
                          int64_t batch_size, int64_t passes, const std::string& order, uint64_t seed);

// The store's records in record order, in batches of at most `batch_size` consecutive records of
// one bucket size: the plan of learn's prior pass, whose item i is record i.
Plan prior_plan(const DeltaStore& store, std::vector<PlanSample> samples, const std::string& manifest_hash,
                int64_t batch_size);

// Learn's kept priors (transfer.keep_prior): the student's LoRA-off prediction S0(c) of every
// record, computed once before learn's first pass and appended to a store of its own (a delta
// store whose δc holds S0, record i for record i, in the student's dtype), so that no pass
// computes it again. Runs on prior_plan().
class PriorObjective : public Objective {
 public:
  PriorObjective(DeltaStoreWriter& priors, const DeltaStore& store, const Plan& plan);
  std::string name() const override { return "transfer-prior"; }
  bool trains() const override { return false; }
  StepResult step(Denoiser& model, const Batch& batch) override;
  StepResult warm_up(Denoiser& model, const Batch& batch) override;  // S0, not stored
  void flush() override { priors_.sync(); }
  std::optional<int64_t> completed_batches() override;
  void end() override { flush(); }

 private:
  DeltaStoreWriter& priors_;
  const DeltaStore& store_;
  std::vector<uint64_t> first_item_;  // record number of each batch's first item; one past the end last
};

class LearnObjective : public Objective {
 public:
  // `source` gives the student's caption texts, checked against the ones each record was made for.
  // `priors` (optional): S0 of every record, kept by PriorObjective, read instead of computed.
  LearnObjective(std::shared_ptr<const DeltaStore> store, const LearnPlan& plan, SampleSource& source, double guidance,
                 LossFunction loss = {}, std::shared_ptr<const DeltaStore> priors = nullptr);
  std::string name() const override { return "transfer-learn"; }
  void begin(Denoiser& model, const Plan& plan) override;  // checks every record's caption
  StepResult step(Denoiser& model, const Batch& batch) override;

  // The target of one batch (transfer_target), after checking each record against the batch item
  // it feeds: sample, caption index and text, σ, noise seed and the student's latent checksum.
  at::Tensor target(Denoiser& model, const Batch& batch);

 private:
  std::pair<at::Tensor, at::Tensor> prior_and_target(Denoiser& model, const Batch& batch);  // S0(c), target
  // Refuses a record whose caption text is not the student's caption of its item.
  void check_caption(const DeltaRecord& r, const PlanItem& item);

  std::shared_ptr<const DeltaStore> store_, priors_;
  const LearnPlan& plan_;
  SampleSource& source_;
  double guidance_;
  LossFunction loss_;
};

}  // namespace dt
