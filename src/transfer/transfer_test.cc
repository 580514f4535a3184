// Delta transfer on tiny real Z-Image (the golden's sizes) and FLUX.2 klein transformers: record on a
// "Base" with a trained LoRA, learn on a "Turbo" (the Base moved towards another random checkpoint),
// through the trainer's loop.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <set>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "models/flux2/tiny.h"
#include "models/flux2/weights.h"
#include "models/zimage/config.h"
#include "models/zimage/weights.h"
#include "run/train_run.h"
#include "testing/support.h"
#include "testing/tiny_models.h"
#include "transfer/delta.h"
#include "transfer/objectives.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

struct World {
  fs::path dir;
  RunConfig run;
  explicit World(const std::string& name, const std::string& family = "zimage") {
    dir = fs::temp_directory_path() / ("dt_transfer_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    if (family == "zimage") {
      zimage::write_random_checkpoint((dir / "base").string(), testing::golden_sized_zimage(), 1);
      zimage::write_random_checkpoint((dir / "other").string(), testing::golden_sized_zimage(), 2);
    } else {
      flux2::write_random_checkpoint((dir / "base").string(), flux2::tiny_config(), 1);
      flux2::write_random_checkpoint((dir / "other").string(), flux2::tiny_config(), 2);
    }
    // The "Turbo": a fine-tune of the Base (its weights moved a fifth of the way to other ones).
    auto base = load_safetensors((dir / "base/diffusion_pytorch_model.safetensors").string());
    auto other = load_safetensors((dir / "other/diffusion_pytorch_model.safetensors").string());
    NamedTensors turbo;
    for (const auto& [name, t] : base) turbo.emplace_back(name, 0.8 * t + 0.2 * other.at(name));
    fs::create_directories(dir / "turbo");
    write_safetensors((dir / "turbo/diffusion_pytorch_model.safetensors").string(), turbo);
    fs::copy_file(dir / "base/config.json", dir / "turbo/config.json");
    run = testing::tiny_run(dir.string(), "base", family);
    write_teacher_lora();
  }
  ~World() { fs::remove_all(dir); }

  // A "trained" LoRA on the Base: fresh adapters with random up matrices.
  void write_teacher_lora() {
    LoadedModel base = load_model(run, run.model, run.lora);
    torch::NoGradGuard no_grad;
    torch::manual_seed(9);
    for (auto& p : base.adapters->parameters())
      if (p.abs().max().item<double>() == 0) p.normal_(0, 0.2);
    save_lora(run, base, (dir / "teacher_lora.safetensors").string());
  }

  LoadedModel teacher() {
    LoraConfig l = run.lora;
    l.init = "teacher_lora.safetensors";
    return load_model(run, run.model, l);
  }
  LoadedModel student(const std::string& base, bool from_teacher_lora) {
    ModelConfig m = run.model;
    m.base = base;
    LoraConfig l = run.lora;
    if (from_teacher_lora) l.init = "teacher_lora.safetensors";
    return load_model(run, m, l);
  }
  std::string store() const { return (dir / "deltas").string(); }
};

// Fixed latents (Z-Image 16 × 8×8: 64×64 pixels, one 8×12 sample for a second bucket; FLUX.2 the
// same pixels in its 128 × 4×4 and 4×6 layout), caption features and texts, and the empty caption's.
class FixedSource : public SampleSource {
 public:
  explicit FixedSource(const std::string& family = "zimage") {
    const bool flux2 = family == "flux2-klein";
    const int64_t channels = flux2 ? 128 : 16, side = flux2 ? 4 : 8, features = flux2 ? 96 : 48;
    torch::manual_seed(5);
    for (int i = 0; i < 4; ++i) {
      latents_.push_back(torch::randn({channels, side, i == 3 ? side * 3 / 2 : side}));
      texts_.push_back(torch::randn({flux2 ? 6 : 3 + i, features}));  // klein's features have one length
      captions_.push_back("caption of sample " + std::to_string(i));
    }
    empty_ = torch::randn({flux2 ? 6 : 2, features});
  }
  at::Tensor latent(int32_t sample) override { return latents_.at(sample); }
  TextFeatures text(int32_t sample, int32_t caption) override {
    return caption == kEmptyCaption ? empty_ : texts_.at(sample);
  }
  std::string caption(int32_t sample, int32_t caption) override {
    return caption == kEmptyCaption ? std::string() : captions_.at(sample);
  }
  std::vector<at::Tensor> latents_, texts_;
  std::vector<std::string> captions_;
  at::Tensor empty_;
};

std::vector<PlanSample> samples(double caption_dropout = 0.0) {
  std::vector<PlanSample> s;
  for (int i = 0; i < 4; ++i) s.push_back({"s" + std::to_string(i), 1, 1, i == 3 ? 96 : 64, 64, 1.0, caption_dropout});
  return s;
}

Plan record_plan(int64_t epochs, int64_t batch_size, double caption_dropout = 0.0) {
  PlanOptions o;
  o.epochs = epochs;
  o.batch_size = batch_size;
  return make_plan(samples(caption_dropout), "fixed", o);
}

StoreManifest manifest_for(const Plan& plan, bool exact, const std::string& family) {
  StoreManifest m;
  m.plan_hash = plan.hash;
  m.count = static_cast<uint64_t>(plan.item_count());
  m.family = family;
  m.teacher_model = "base";
  m.teacher_lora = "lora";
  m.latent_space = "fixed";
  m.exact = exact;
  m.dtype = "fp32";
  return m;
}

// Step 1 through the loop; `stop_after` > 0 throws after that many batches (a crash).
class StoppingRecord : public RecordObjective {
 public:
  StoppingRecord(DeltaStoreWriter& w, const Plan& plan, SampleSource& s, bool exact, int64_t stop_after)
      : RecordObjective(w, plan, s, exact, true), stop_after_(stop_after) {}
  StepResult step(Denoiser& model, const Batch& batch) override {
    if (stop_after_ > 0 && batch.index == stop_after_) throw std::runtime_error("killed");
    return RecordObjective::step(model, batch);
  }
  int64_t stop_after_;
};

void record_store(World& w, const Plan& plan, SampleSource& source, bool exact, bool resume, int64_t stop_after = 0) {
  LoadedModel teacher = w.teacher();
  DeltaStoreWriter writer(w.store(), manifest_for(plan, exact, w.run.model.family), resume);
  StoppingRecord objective(writer, plan, source, exact, stop_after);
  run_loop(w.run, teacher, plan, source, objective, resume);
}

// A batch as the loop builds it (x_σ from the cached latent and the item's noise seed).
Batch batch_of(const Plan& plan, int64_t index, SampleSource& source) {
  Batch b;
  b.plan = &plan;
  b.index = index;
  b.items = plan.batches[index].items;
  std::vector<at::Tensor> x0, noise, text;
  std::vector<float> sigma;
  for (const auto& it : b.items) {
    x0.push_back(source.latent(it.sample));
    noise.push_back(plan_noise(it.noise_seed, x0.back().sizes().vec(), plan.noise));
    sigma.push_back(it.sigma);
    b.text.push_back(source.text(it.sample, it.caption));
  }
  b.x0 = torch::stack(x0);
  b.noise = torch::stack(noise);
  b.sigma = torch::tensor(sigma);
  b.x_t = noised(b.x0, b.noise, b.sigma);
  b.loss_weight = torch::ones({static_cast<int64_t>(b.items.size())});
  return b;
}

// A world whose delta store is recorded from `plan` by the teacher, and learn plans over it.
struct Recorded {
  World w;
  FixedSource source;
  Plan plan;
  std::shared_ptr<DeltaStore> store;
  Recorded(const std::string& name, const std::string& family, Plan recorded, bool exact)
      : w(name, family), source(family), plan(std::move(recorded)) {
    record_store(w, plan, source, exact, false);
    store = DeltaStore::open(w.store());
  }
  LearnPlan learn_plan() const { return make_learn_plan(*store, plan.samples, "fixed", 2, 1, "recorded", 1); }
};

// The model's prediction for a batch with its LoRA on or off, switched by hand (not through the
// transfer code under test).
at::Tensor prediction(LoadedModel& m, const Batch& b, const std::vector<TextFeatures>& text, bool lora) {
  torch::NoGradGuard no_grad;
  m.denoiser->lora_state().enabled = lora;
  at::Tensor v = m.denoiser->velocity(b.x_t, b.sigma, text);
  m.denoiser->lora_state().enabled = true;
  return v;
}

// Calls check(record, target, S0(c)) for every item of the learn plan: the objective's target and
// the student's LoRA-off prediction of the same batch.
void each_target(Recorded& r, const LearnPlan& learn, LearnObjective& objective, LoadedModel& student,
                 const std::function<void(const DeltaRecord&, const at::Tensor&, const at::Tensor&)>& check) {
  for (size_t i = 0; i < learn.plan.batches.size(); ++i) {
    const Batch b = batch_of(learn.plan, static_cast<int64_t>(i), r.source);
    const at::Tensor s0 = prediction(student, b, b.text, false);
    const at::Tensor target = objective.target(*student.denoiser, b);
    for (size_t j = 0; j < learn.records[i].size(); ++j) check(r.store->read(learn.records[i][j]), target[j], s0[j]);
  }
}

// max |a − b| / max |b|
double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

// (a) Student = teacher model, initial student LoRA = teacher LoRA, g = 1: the target is the
// teacher's LoRA-on prediction and the first loss is ~0.
void identity_target_is_the_teacher_prediction(const std::string& family) {
  Recorded r("identity_" + family, family, record_plan(1, 2), /*exact=*/false);
  LoadedModel student = r.w.student("base", true);
  const LearnPlan learn = r.learn_plan();
  LearnObjective objective(r.store, learn, r.source, 1.0);
  for (size_t i = 0; i < learn.plan.batches.size(); ++i) {
    const Batch b = batch_of(learn.plan, static_cast<int64_t>(i), r.source);
    const at::Tensor teacher_on = prediction(student, b, b.text, true);
    const at::Tensor target = objective.target(*student.denoiser, b);
    EXPECT_LT((target - teacher_on).abs().max().item<double>(), 1e-4 * teacher_on.abs().max().item<double>());
  }
  RunConfig run = r.w.run;
  run.train.max_steps = 1;
  const LoopResult result = run_loop(run, student, learn.plan, r.source, objective, false);
  EXPECT_LT(result.last_loss, 1e-9);
  EXPECT_GT(objective.target(*student.denoiser, batch_of(learn.plan, 0, r.source)).abs().mean().item<double>(), 0.1);
}

TEST(Transfer, IdentityTargetIsTheTeacherPrediction) { identity_target_is_the_teacher_prediction("zimage"); }
TEST(Transfer, Flux2IdentityTargetIsTheTeacherPrediction) { identity_target_is_the_teacher_prediction("flux2-klein"); }

// A one-item plan of a record's item (its sample, caption, σ and noise seed).
Plan one_item_plan(const Plan& plan, const DeltaRecord& r) {
  const PlanItem item{std::stoi(r.sample_key.substr(1)), r.caption_index, static_cast<float>(r.sigma), r.noise_seed};
  return plan_from_batches(plan.samples, "one", {{0, {item}}}, plan.noise);
}

// (f) Exact form at g = 2.5: each record's δc and δu equal T(c) − P(c) and T(u) − P(u) computed one
// item at a time with separate forwards, and the learn target equals S0(c) + g·δc + (1 − g)·δu.
// The recorded pairs ran batched (2 items, LoRA on and off in one forward): they differ from the
// separate forwards by fp32 rounding only, far below 1e-4 of the deltas' size, while δu computed
// from the caption instead of the empty caption would differ by the whole of δc − δu.
void exact_form_deltas_and_target(const std::string& family) {
  Recorded r("exact_" + family, family, record_plan(1, 2), /*exact=*/true);
  {
    LoadedModel teacher = r.w.teacher();
    double smallest_gap = 1e9;  // between δc and δu
    for (uint64_t i = 0; i < r.store->size(); ++i) {
      const DeltaRecord record = r.store->read(i);
      const Batch b = batch_of(one_item_plan(r.plan, record), 0, r.source);
      const std::vector<TextFeatures> empty = {r.source.empty_};
      const at::Tensor dc = (prediction(teacher, b, b.text, true) - prediction(teacher, b, b.text, false))[0];
      const at::Tensor du = (prediction(teacher, b, empty, true) - prediction(teacher, b, empty, false))[0];
      EXPECT_LT(relative_difference(record.delta_c, dc), 1e-4) << "record " << i;
      EXPECT_LT(relative_difference(record.delta_u, du), 1e-4) << "record " << i;
      smallest_gap = std::min(smallest_gap, relative_difference(dc, du));
    }
    EXPECT_GT(smallest_gap, 0.05);  // the test tells δc from δu
  }
  LoadedModel student = r.w.student("turbo", true);
  const double g = 2.5;
  const LearnPlan learn = r.learn_plan();
  LearnObjective objective(r.store, learn, r.source, g);
  each_target(r, learn, objective, student, [&](const DeltaRecord& record, const at::Tensor& target, const at::Tensor& s0) {
    const at::Tensor hand = s0 + g * record.delta_c + (1 - g) * record.delta_u;
    EXPECT_LT(relative_difference(target, hand), 1e-6) << "record " << record.item;
  });
}

TEST(Transfer, ExactFormRecordsBothDeltasAndTheHandTarget) { exact_form_deltas_and_target("zimage"); }
TEST(Transfer, Flux2ExactFormRecordsBothDeltasAndTheHandTarget) { exact_form_deltas_and_target("flux2-klein"); }

// Caption dropout in the approximate form: a dropped item was recorded with the empty caption, so
// its δc is δu, and since c = u its target is S0(u) + δu (T_g(u) − P_g(u) = δu), not S0(u) + g·δu;
// the other items keep S0(c) + g·δc.
TEST(Transfer, DroppedCaptionsTargetTheUnconditionalChangeOnce) {
  Recorded r("dropout", "zimage", record_plan(4, 2, /*caption_dropout=*/0.5), /*exact=*/false);
  LoadedModel student = r.w.student("turbo", true);
  const double g = 3.0;
  const LearnPlan learn = r.learn_plan();
  LearnObjective objective(r.store, learn, r.source, g);
  int dropped = 0, kept = 0;
  each_target(r, learn, objective, student, [&](const DeltaRecord& record, const at::Tensor& target, const at::Tensor& s0) {
    const bool empty = record.caption_index == kEmptyCaption;
    (empty ? dropped : kept)++;
    const at::Tensor hand = s0 + (empty ? 1.0 : g) * record.delta_c;
    EXPECT_LT(relative_difference(target, hand), 1e-6) << "record " << record.item << (empty ? " (dropped)" : "");
  });
  EXPECT_GT(dropped, 0);
  EXPECT_GT(kept, 0);
}

// Learn regresses on the target with the configured loss: huber (δ = 0.05, so both of its pieces
// are used) against a hand computation on S(c) − target.
TEST(Transfer, LearnUsesTheConfiguredLoss) {
  Recorded r("loss", "zimage", record_plan(1, 2), /*exact=*/false);
  LoadedModel student = r.w.student("turbo", true);
  const LearnPlan learn = r.learn_plan();
  const double delta = 0.05;
  LearnObjective objective(r.store, learn, r.source, 3.0, LossFunction::from_settings("huber", delta));
  const Batch b = batch_of(learn.plan, 0, r.source);
  const at::Tensor target = objective.target(*student.denoiser, b);
  const at::Tensor d = (prediction(student, b, b.text, true) - target).abs();
  const double small = (d <= delta).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(small, 0.01);
  EXPECT_LT(small, 0.99);
  const double hand = torch::where(d <= delta, 0.5 * d.square(), delta * (d - 0.5 * delta)).mean().item<double>();
  torch::NoGradGuard no_grad;
  EXPECT_NEAR(objective.step(*student.denoiser, b).loss.item<double>(), hand, 1e-5 * hand);
}

// A caption edited between record and learn is refused, naming the sample (its latent and index
// are unchanged, so only the caption binding can tell): by the batch that uses it, and by the loop
// before its first step.
TEST(Transfer, LearnRefusesAnEditedCaption) {
  Recorded r("caption", "zimage", record_plan(1, 2), /*exact=*/false);
  LoadedModel student = r.w.student("turbo", true);
  const LearnPlan learn = r.learn_plan();
  LearnObjective objective(r.store, learn, r.source, 3.0);
  EXPECT_NO_THROW(objective.target(*student.denoiser, batch_of(learn.plan, 0, r.source)));
  const int32_t edited = learn.plan.batches[0].items[0].sample;
  r.source.captions_[edited] += ", edited";
  try {
    objective.target(*student.denoiser, batch_of(learn.plan, 0, r.source));
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("of sample 's" + std::to_string(edited) + "' is not the text it was recorded with"), std::string::npos) << what;
    EXPECT_NE(what.find(r.source.captions_[edited]), std::string::npos) << what;
  }
  EXPECT_THROW(run_loop(r.w.run, student, learn.plan, r.source, objective, false), Error);
  const fs::path metrics = fs::path(r.w.run.resolve(r.w.run.output.run_dir)) / "metrics.jsonl";
  EXPECT_TRUE(!fs::exists(metrics) || fs::file_size(metrics) == 0);
}

// ‖(S_lora − S0) − g·δc‖ / ‖g·δc‖ over every record: how well the student learned the transfer.
double transfer_error(LoadedModel& student, const DeltaStore& store, const Plan& plan, SampleSource& source, double g) {
  torch::NoGradGuard no_grad;
  double err = 0, norm = 0;
  for (uint64_t i = 0; i < store.size(); ++i) {
    const DeltaRecord r = store.read(i);
    const Batch b = batch_of(one_item_plan(plan, r), 0, source);
    const at::Tensor change = lora_delta(*student.denoiser, b.x_t, b.sigma, b.text, false)[0];
    err += (change - g * r.delta_c).square().sum().item<double>();
    norm += (g * r.delta_c).square().sum().item<double>();
  }
  return std::sqrt(err / norm);
}

// (b) Record on the tiny Base, learn on the tiny Turbo from a fresh LoRA: on the recorded items the
// student's LoRA change approaches g·δc.
TEST(Transfer, LearnOnAnotherModelApproachesTheRecordedDeltas) {
  World w("e2e");
  FixedSource source;
  const Plan plan = record_plan(2, 2);
  record_store(w, plan, source, false, false);
  auto store = DeltaStore::open(w.store());
  w.run.lora.rank = 8;
  w.run.train.lr_schedule = "cosine";
  LoadedModel student = w.student("turbo", false);
  const double g = 3.0;
  const double before = transfer_error(student, *store, plan, source, g);
  EXPECT_NEAR(before, 1.0, 1e-6);  // a fresh LoRA changes nothing
  RunConfig run = w.run;
  run.train.learning_rate = 2e-2;
  run.train.checkpoint_every = 0;
  const LearnPlan learn = make_learn_plan(*store, samples(), "fixed", 2, 50, "shuffled", 3);
  LearnObjective objective(store, learn, source, g);
  run_loop(run, student, learn.plan, source, objective, false);
  const double after = transfer_error(student, *store, plan, source, g);
  std::printf("transfer relative error: %.4f before, %.4f after %zu steps\n", before, after, learn.plan.batches.size());
  EXPECT_LT(after, 0.45);  // 0.37 reached (rank 8, 200 steps)
}

std::map<std::string, at::Tensor> lora_of(const RunConfig& run) {
  return load_safetensors((fs::path(run.resolve(run.output.run_dir)) / "lora.safetensors").string());
}

// (c) Record interrupted (in the middle of a batch: a torn store) and resumed equals uninterrupted
// byte for byte; learn interrupted and resumed equals uninterrupted bitwise.
TEST(Transfer, InterruptedRecordAndLearnResumeIdentically) {
  World w("resume");
  FixedSource source;
  const Plan plan = record_plan(2, 3);
  record_store(w, plan, source, true, false);
  const std::string reference = read_file(w.store() + "/records.bin");
  fs::rename(w.store(), w.store() + "_reference");
  w.run.train.warm_up_pass = false;  // the warm-up pass records nothing: the same bytes without it
  record_store(w, plan, source, true, false);
  EXPECT_EQ(read_file(w.store() + "/records.bin"), reference);
  fs::remove_all(w.store());
  w.run.train.warm_up_pass = true;

  record_store(w, plan, source, true, false);  // a second run, then cut it inside a record
  fs::resize_file(w.store() + "/records.bin", 16 + (reference.size() - 16) * 4 / 8 + 100);
  EXPECT_THROW(DeltaStore::open(w.store()), Error);
  record_store(w, plan, source, true, true);
  EXPECT_EQ(read_file(w.store() + "/records.bin"), reference);
  // A crash between batches, resumed.
  fs::remove_all(w.store());
  EXPECT_THROW(record_store(w, plan, source, true, false, /*stop_after=*/2), std::runtime_error);
  record_store(w, plan, source, true, true);
  EXPECT_EQ(read_file(w.store() + "/records.bin"), reference);

  auto store = DeltaStore::open(w.store());
  const LearnPlan learn = make_learn_plan(*store, samples(), "fixed", 2, 3, "shuffled", 4);
  RunConfig run = w.run;
  run.lora.dropout = 0.1;
  {
    LoadedModel student = w.student("turbo", true);
    LearnObjective objective(store, learn, source, 3.0);
    run_loop(run, student, learn.plan, source, objective, false);
  }
  const auto uninterrupted = lora_of(run);
  run.output.run_dir = "run_killed";
  {
    class Crash : public LearnObjective {
     public:
      using LearnObjective::LearnObjective;
      StepResult step(Denoiser& m, const Batch& b) override {
        if (b.index == 5) throw std::runtime_error("killed");
        return LearnObjective::step(m, b);
      }
    };
    LoadedModel student = w.student("turbo", true);
    Crash objective(store, learn, source, 3.0);
    EXPECT_THROW(run_loop(run, student, learn.plan, source, objective, false), std::runtime_error);
  }
  LoadedModel student = w.student("turbo", true);
  LearnObjective objective(store, learn, source, 3.0);
  run_loop(run, student, learn.plan, source, objective, true);
  const auto resumed = lora_of(run);
  ASSERT_EQ(resumed.size(), uninterrupted.size());
  for (const auto& [name, t] : uninterrupted) EXPECT_TRUE(torch::equal(t, resumed.at(name))) << name;
}

// Learn's kept priors (transfer.keep_prior): the prior pass runs the store's records in record
// order in batches of consecutive records of one bucket; learn reading them gives the targets it
// computes itself (to fp32 rounding: S0 came from other batches), and a prior that is not of its
// record is refused, naming it.
TEST(Transfer, KeptPriorsGiveTheComputedTargetsAndAreChecked) {
  Recorded r("priors", "zimage", record_plan(2, 2), /*exact=*/false);
  LoadedModel student = r.w.student("turbo", true);
  const Plan plan = prior_plan(*r.store, r.plan.samples, "fixed", 3);
  ASSERT_EQ(static_cast<uint64_t>(plan.item_count()), r.store->size());
  uint64_t item = 0;
  for (const PlanBatch& b : plan.batches) {
    EXPECT_LE(b.items.size(), 3u);
    for (const PlanItem& it : b.items) {
      const DeltaRecord info = r.store->read_info(item++);
      EXPECT_EQ(plan.samples[it.sample].key, info.sample_key);
      EXPECT_EQ(it.noise_seed, info.noise_seed);
    }
  }
  StoreManifest m = r.store->manifest();
  m.teacher_model = "turbo";
  const std::string dir = (r.w.dir / "priors").string();
  {
    DeltaStoreWriter writer(dir, m, false);
    PriorObjective objective(writer, *r.store, plan);
    run_loop(r.w.run, student, plan, r.source, objective, false);
  }
  const auto priors = DeltaStore::open(dir);
  ASSERT_EQ(priors->size(), r.store->size());

  const LearnPlan learn = make_learn_plan(*r.store, r.plan.samples, "fixed", 2, 2, "shuffled", 3);
  LearnObjective computed(r.store, learn, r.source, 2.5), kept(r.store, learn, r.source, 2.5, {}, priors);
  for (size_t i = 0; i < learn.plan.batches.size(); ++i) {
    const Batch b = batch_of(learn.plan, static_cast<int64_t>(i), r.source);
    EXPECT_LT(relative_difference(kept.target(*student.denoiser, b), computed.target(*student.denoiser, b)), 1e-5) << "batch " << i;
  }

  // Priors whose record 1 has another σ.
  const std::string wrong_dir = (r.w.dir / "wrong_priors").string();
  {
    DeltaStoreWriter wrong(wrong_dir, m, false);
    for (uint64_t k = 0; k < r.store->size(); ++k) {
      DeltaRecord p = priors->read(k);
      if (k == 1) p.sigma += 0.125;
      wrong.append(p);
    }
  }
  LearnObjective misled(r.store, learn, r.source, 2.5, {}, DeltaStore::open(wrong_dir));
  for (size_t i = 0; i < learn.plan.batches.size(); ++i) {
    const auto& records = learn.records[i];
    const bool has_record_1 = std::find(records.begin(), records.end(), 1u) != records.end();
    const std::string why =
        testing::error_of([&] { misled.target(*student.denoiser, batch_of(learn.plan, static_cast<int64_t>(i), r.source)); });
    if (has_record_1) EXPECT_NE(why.find("wrong_priors: prior 1 is not of record 1 ("), std::string::npos) << why;
    else EXPECT_EQ(why, "(no error)") << "batch " << i;
  }

  // A damaged prior is refused, saying how to get it back.
  const std::string damaged_dir = (r.w.dir / "damaged_priors").string();
  fs::copy(dir, damaged_dir);
  std::string bytes = read_file(damaged_dir + "/records.bin");
  bytes[bytes.size() - 8] ^= 1;  // inside the last record's tensor
  write_file_atomic(damaged_dir + "/records.bin", bytes);
  LearnObjective damaged(r.store, learn, r.source, 2.5, {}, DeltaStore::open(damaged_dir));
  std::string refusal;
  for (size_t i = 0; i < learn.plan.batches.size() && refusal.empty(); ++i) {
    const std::string why =
        testing::error_of([&] { damaged.target(*student.denoiser, batch_of(learn.plan, static_cast<int64_t>(i), r.source)); });
    if (why != "(no error)") refusal = why;
  }
  EXPECT_NE(refusal.find("is corrupt (CRC mismatch); the priors are computed from the store and the student: remove " +
                         damaged_dir + " and --resume"),
            std::string::npos)
      << refusal;
}

// (e) Learn's batch size and order leave each item's x_σ bitwise and its target unchanged.
TEST(Transfer, BatchSizeAndOrderLeaveEachTargetUnchanged) {
  World w("order");
  FixedSource source;
  const Plan plan = record_plan(2, 2);
  record_store(w, plan, source, true, false);
  auto store = DeltaStore::open(w.store());
  LoadedModel student = w.student("turbo", true);
  std::map<uint64_t, std::pair<at::Tensor, at::Tensor>> first;  // record → (x_σ, target)
  int compared = 0;
  for (auto [batch_size, order] : std::vector<std::pair<int64_t, std::string>>{{1, "recorded"}, {3, "shuffled"}, {2, "shuffled"}}) {
    const LearnPlan learn = make_learn_plan(*store, samples(), "fixed", batch_size, 1, order, 7);
    LearnObjective objective(store, learn, source, 2.5);
    std::set<uint64_t> seen;
    for (size_t i = 0; i < learn.plan.batches.size(); ++i) {
      const Batch b = batch_of(learn.plan, static_cast<int64_t>(i), source);
      const at::Tensor target = objective.target(*student.denoiser, b);
      for (size_t j = 0; j < learn.records[i].size(); ++j) {
        const uint64_t r = learn.records[i][j];
        seen.insert(r);
        auto [it, fresh] = first.emplace(r, std::make_pair(b.x_t[j], target[j]));
        if (fresh) continue;
        EXPECT_TRUE(torch::equal(it->second.first, b.x_t[j])) << "record " << r;
        EXPECT_LT((it->second.second - target[j]).abs().max().item<double>(), 1e-5) << "record " << r;
        ++compared;
      }
    }
    EXPECT_EQ(seen.size(), store->size());  // every record once per pass
  }
  EXPECT_EQ(compared, 2 * static_cast<int>(store->size()));
}

// (d, learn side) A record whose latent no longer matches the student's cache, or whose sample
// is gone, is refused with its own message.
TEST(Transfer, LearnRefusesChangedLatentsAndMissingSamples) {
  World w("refuse");
  FixedSource source;
  const Plan plan = record_plan(1, 2);
  record_store(w, plan, source, false, false);
  auto store = DeltaStore::open(w.store());
  LoadedModel student = w.student("turbo", true);
  const LearnPlan learn = make_learn_plan(*store, samples(), "fixed", 2, 1, "recorded", 1);
  LearnObjective objective(store, learn, source, 3.0);
  source.latents_[learn.plan.batches[0].items[0].sample][0][0][0] += 1e-3f;
  try {
    objective.target(*student.denoiser, batch_of(learn.plan, 0, source));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("latent checksum differs from the student's cached latent"), std::string::npos) << e.what();
  }
  auto fewer = samples();
  fewer.erase(fewer.begin() + 1);
  try {
    make_learn_plan(*store, fewer, "fixed", 2, 1, "recorded", 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("which the student's dataset does not have"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dt
