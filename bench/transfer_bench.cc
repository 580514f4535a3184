// Delta transfer against plain training on the mid-size Z-Image configuration (dim 1024, 8 layers,
// 1024 image + 128 caption tokens, rank-16 attn-mlp LoRA, AdamW), one run:
//   * time of a record step (teacher, LoRA on + off in one paired forward, no gradients, append to
//     the store) and of a learn step (S0 without gradients, S with, loss, backward, AdamW) against a
//     plain training step (forward, backward, AdamW), interleaved so machine load hits all three;
//   * peak resident memory of learn against plain training, each in its own child process (this
//     binary again), so neither inherits the other's heap;
//   * bytes of one record against the latent it belongs to.
// Targets (DESIGN): learn ≤ 1.35× plain, record ≤ 0.70× plain, learn peak RSS ≤ 1.05× plain.
//
// --precision: how much of δc survives bf16 compute. The same weights and LoRA (its up matrices
// scaled to strengths 1, 0.3, 0.1) in fp32 and in bf16; δc of N items recorded in bf16 (paired
// forward and two forwards) against δc computed in fp32 with two forwards: ‖δ_bf16 − δ_fp32‖ / ‖δ_fp32‖
// over the items, with the LoRA's size ‖δ‖ / ‖v‖ beside it, and the time of each record.
//
// usage: transfer_bench [--steps N (default 3)] [--dtype fp32|bf16 (default fp32)]
//        transfer_bench --precision N (items, default 3)
//        (internal: --memory plain|learn --store DIR)                 DT_THREADS sets the threads
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/runtime.h"
#include "lora/adapters.h"
#include "models/zimage/family.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "transfer/delta.h"
#include "transfer/delta_store.h"
#include "transfer/objectives.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr int64_t kSide = 64, kCaption = 128;  // 64×64 latent → 1024 image tokens

std::string option(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

// Peak resident set of this process (VmHWM), GiB.
double peak_rss_gib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / (1024.0 * 1024.0);
  return 0;
}

// The model with a "trained" LoRA (random up matrices), the same in every process.
struct World {
  dt::ZImageConfig config;
  std::unique_ptr<dt::zimage::ZImageDenoiser> denoiser;
  std::unique_ptr<dt::lora::Adapters> adapters;
  at::Tensor x0, text, empty;

  explicit World(c10::ScalarType dtype) {
    config.dim = 1024;
    config.n_layers = 8;
    config.n_refiner_layers = 2;
    config.n_heads = config.n_kv_heads = 8;
    torch::manual_seed(0);
    dt::zimage::ZImageTransformer model(config);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->named_parameters()) {
        at::Tensor t = p.value();
        if (t.dim() >= 2) t.normal_(0, 1 / std::sqrt(static_cast<double>(t.size(1))));
        else if (p.key().find("norm") != std::string::npos) t.fill_(1);
        else t.normal_(0, 0.1);
      }
    }
    model->to(dtype);
    for (auto& p : model->parameters()) p.requires_grad_(false);
    denoiser = std::make_unique<dt::zimage::ZImageDenoiser>(model, std::vector<std::string>{});
    const auto layers = dt::lora::select_layers(*model, {"attn-mlp", {}, {}}, dt::zimage_family().lora_presets());
    dt::lora::AdapterOptions o;
    o.rank = 16;
    o.alpha = 16;
    adapters = std::make_unique<dt::lora::Adapters>(dt::lora::Adapters::create(*model, denoiser->lora_state(), layers, o));
    {
      torch::NoGradGuard no_grad;
      for (auto& p : adapters->parameters())
        if (p.abs().max().item<double>() == 0) p.normal_(0, 0.01);
    }
    x0 = torch::randn({16, kSide, kSide});
    text = torch::randn({kCaption, config.cap_feat_dim});
    empty = torch::randn({8, config.cap_feat_dim});
  }
};

class Source : public dt::SampleSource {
 public:
  explicit Source(World& w) : w_(w) {}
  at::Tensor latent(int32_t) override { return w_.x0; }
  dt::TextFeatures text(int32_t, int32_t caption) override { return caption == dt::kEmptyCaption ? w_.empty : w_.text; }
  std::string caption(int32_t, int32_t caption) override { return caption == dt::kEmptyCaption ? "" : "a bench caption"; }

 private:
  World& w_;
};

// One sample, `n` single-item batches with their own σ and noise.
dt::Plan bench_plan(int n) {
  std::vector<dt::PlanBatch> batches;
  for (int i = 0; i < n; ++i) batches.push_back({0, {{0, 0, 0.2f + 0.6f * i / std::max(n - 1, 1), 1000u + i}}});
  return dt::plan_from_batches({{"bench/sample.png", 1, 1, 8 * kSide, 8 * kSide, 1.0, 0.0}}, "bench", batches, {});
}

dt::Batch batch_of(const dt::Plan& plan, int64_t index, dt::SampleSource& source, c10::ScalarType dtype) {
  dt::Batch b;
  b.plan = &plan;
  b.index = index;
  b.items = plan.batches[index].items;
  const dt::PlanItem& it = b.items[0];
  b.x0 = source.latent(it.sample).unsqueeze(0);
  b.noise = dt::plan_noise(it.noise_seed, b.x0[0].sizes().vec(), plan.noise).unsqueeze(0);
  b.sigma = torch::tensor({it.sigma});
  b.x_t = dt::noised(b.x0, b.noise, b.sigma).to(dtype);
  b.loss_weight = torch::ones({1});
  b.text = {source.text(it.sample, it.caption).to(dtype)};
  return b;
}

void train_step(dt::Objective& objective, World& w, dt::AdamW& adam, const dt::Batch& batch) {
  objective.step(*w.denoiser, batch).loss.backward();
  adam.step(1e-5);
  adam.zero_grad();
}

double seconds(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Child mode: two steps of plain training or of learn, then the peak RSS.
int memory_child(const std::string& mode, const std::string& store_dir, c10::ScalarType dtype) {
  World w(dtype);
  Source source(w);
  dt::AdamW adam(w.adapters->parameters(), {});
  w.denoiser->module().train();
  if (mode == "plain") {
    const dt::Plan plan = bench_plan(2);
    dt::FlowObjective flow;
    for (int i = 0; i < 2; ++i) train_step(flow, w, adam, batch_of(plan, i, source, dtype));
  } else {
    auto store = dt::DeltaStore::open(store_dir);
    const dt::LearnPlan learn = dt::make_learn_plan(*store, bench_plan(1).samples, "bench", 1, 1, "recorded", 0);
    dt::LearnObjective objective(store, learn, source, 3.0);
    for (int i = 0; i < 2; ++i) train_step(objective, w, adam, batch_of(learn.plan, i, source, dtype));
  }
  std::printf("%.4f\n", peak_rss_gib());
  return 0;
}

double child_peak(const std::string& mode, const std::string& store, const std::string& dtype) {
  const std::string cmd = "/proc/" + std::to_string(getpid()) + "/exe --memory " + mode + " --store '" + store + "' --dtype " + dtype;
  FILE* p = popen(cmd.c_str(), "r");
  double gib = 0;
  if (!p || std::fscanf(p, "%lf", &gib) != 1) gib = std::nan("");
  if (p) pclose(p);
  return gib;
}

// Scales the LoRA's up matrices (every second adapter parameter) by `factor`.
void scale_lora(World& w, double factor) {
  torch::NoGradGuard no_grad;
  const std::vector<at::Tensor> p = w.adapters->parameters();  // down, up, down, up, ...
  for (size_t i = 1; i < p.size(); i += 2) p[i].mul_(factor);
}

double l2(const at::Tensor& t) { return t.to(torch::kFloat).norm().item<double>(); }

int precision(int items) {
  World f32(torch::kFloat), b16(torch::kBFloat16);
  Source sf(f32), sb(b16);
  const dt::Plan plan = bench_plan(items);
  std::printf("δc recorded in bf16 against fp32 compute: mid-size Z-Image (dim 1024, 8 layers, 1024 image + 128 "
              "caption tokens, rank-16 attn-mlp LoRA), %d items at σ from 0.2 to 0.8, %d threads\n",
              items, at::get_num_threads());
  std::printf("%-9s %10s %16s %16s %16s %12s %12s %12s\n", "strength", "‖δ‖/‖v‖", "bf16 paired err", "bf16 2-fwd err",
              "fp32 paired err", "fp32 s/rec", "bf16p s/rec", "bf16 2f s/rec");
  double strength = 1;
  for (double target : {1.0, 0.3, 0.1}) {
    scale_lora(f32, target / strength);
    scale_lora(b16, target / strength);
    strength = target;
    double ref2 = 0, v2 = 0, paired2 = 0, two2 = 0, f32paired2 = 0, t_f32 = 0, t_paired = 0, t_two = 0;
    for (int i = 0; i < items; ++i) {
      const dt::Batch bf = batch_of(plan, i, sf, torch::kFloat), bb = batch_of(plan, i, sb, torch::kBFloat16);
      auto t0 = Clock::now();
      const at::Tensor ref = dt::lora_delta(*f32.denoiser, bf.x_t, bf.sigma, bf.text, false);
      t_f32 += seconds(t0);
      const at::Tensor f32_paired = dt::lora_delta(*f32.denoiser, bf.x_t, bf.sigma, bf.text, true);
      const at::Tensor v = dt::prior_prediction(*f32.denoiser, bf.x_t, bf.sigma, bf.text);
      t0 = Clock::now();
      const at::Tensor paired = dt::lora_delta(*b16.denoiser, bb.x_t, bb.sigma, bb.text, true);
      t_paired += seconds(t0);
      t0 = Clock::now();
      const at::Tensor two = dt::lora_delta(*b16.denoiser, bb.x_t, bb.sigma, bb.text, false);
      t_two += seconds(t0);
      ref2 += std::pow(l2(ref), 2);
      v2 += std::pow(l2(v), 2);
      paired2 += std::pow(l2(paired - ref), 2);
      two2 += std::pow(l2(two - ref), 2);
      f32paired2 += std::pow(l2(f32_paired - ref), 2);
    }
    std::printf("%-9.1f %10.4f %16.4f %16.4f %16.2e %12.2f %12.2f %12.2f\n", strength, std::sqrt(ref2 / v2),
                std::sqrt(paired2 / ref2), std::sqrt(two2 / ref2), std::sqrt(f32paired2 / ref2), t_f32 / items,
                t_paired / items, t_two / items);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dt::init_runtime();
  const std::string dtype_name = option(argc, argv, "--dtype", "fp32");
  const c10::ScalarType dtype = dtype_name == "bf16" ? torch::kBFloat16 : torch::kFloat;
  if (const std::string mode = option(argc, argv, "--memory", ""); !mode.empty())
    return memory_child(mode, option(argc, argv, "--store", ""), dtype);
  if (const std::string items = option(argc, argv, "--precision", ""); !items.empty())
    return precision(std::max(1, std::atoi(items.c_str())));
  const int steps = std::max(1, std::atoi(option(argc, argv, "--steps", "3").c_str()));

  const fs::path store_dir = fs::temp_directory_path() / ("transfer_bench_" + std::to_string(getpid()));
  fs::remove_all(store_dir);
  World w(dtype);
  Source source(w);
  dt::AdamW adam(w.adapters->parameters(), {});
  const dt::Plan plan = bench_plan(steps + 1);  // one warm-up record, then the timed ones

  dt::StoreManifest m;
  m.plan_hash = plan.hash;
  m.count = static_cast<uint64_t>(plan.item_count());
  m.family = "zimage";
  m.teacher_model = m.teacher_lora = m.latent_space = "bench";
  dt::DeltaStoreWriter writer(store_dir.string(), m, false);
  dt::RecordObjective record(writer, plan, source, /*exact=*/false, /*paired_forward=*/true);
  dt::FlowObjective flow;

  auto record_step = [&](int64_t i) {
    w.denoiser->module().eval();
    torch::NoGradGuard no_grad;  // as the loop runs an objective that does not train
    record.step(*w.denoiser, batch_of(plan, i, source, dtype));
  };
  auto plain_step = [&](int64_t i) {
    w.denoiser->module().train();
    train_step(flow, w, adam, batch_of(plan, i, source, dtype));
  };
  record_step(0);
  plain_step(0);
  double t_plain = 0, t_record = 0, t_learn = 0;
  for (int i = 1; i <= steps; ++i) {
    auto t0 = Clock::now();
    plain_step(i);
    t_plain += seconds(t0);
    t0 = Clock::now();
    record_step(i);
    t_record += seconds(t0);
  }
  writer.sync();

  auto store = dt::DeltaStore::open(store_dir.string());
  const dt::LearnPlan learn = dt::make_learn_plan(*store, plan.samples, "bench", 1, 1, "recorded", 0);
  dt::LearnObjective objective(store, learn, source, 3.0);
  w.denoiser->module().train();
  train_step(objective, w, adam, batch_of(learn.plan, 0, source, dtype));  // warm-up
  double t_plain2 = 0, t_target = 0;
  for (int i = 1; i <= steps; ++i) {
    const dt::Batch batch = batch_of(learn.plan, i, source, dtype);
    auto t0 = Clock::now();
    objective.target(*w.denoiser, batch);  // the part learn adds to a training step, timed alone
    t_target += seconds(t0);
    t0 = Clock::now();
    train_step(objective, w, adam, batch);
    t_learn += seconds(t0);
    t0 = Clock::now();
    plain_step(i);
    t_plain2 += seconds(t0);
  }

  const double rss_plain = child_peak("plain", store_dir.string(), dtype_name);
  const double rss_learn = child_peak("learn", store_dir.string(), dtype_name);
  const uint64_t latent_bytes = static_cast<uint64_t>(w.x0.numel()) * 4;
  const uint64_t bf16 = dt::record_bytes(16, {16, kSide, kSide}, "bf16", false);
  const uint64_t bf16_exact = dt::record_bytes(16, {16, kSide, kSide}, "bf16", true);
  const uint64_t fp32 = dt::record_bytes(16, {16, kSide, kSide}, "fp32", false);
  fs::remove_all(store_dir);

  std::printf("mid-size Z-Image (dim 1024, 8 layers, 1024 image + 128 caption tokens, rank-16 attn-mlp LoRA), %s, "
              "%d threads, %d timed steps each\n", dtype_name.c_str(), at::get_num_threads(), steps);
  std::printf("%-38s %10s %10s %8s\n", "", "s/step", "× plain", "target");
  // Each ratio against the plain steps timed beside it.
  std::printf("%-38s %10.3f %10.2f %8s\n", "plain training step", (t_plain + t_plain2) / (2 * steps), 1.0, "");
  std::printf("%-38s %10.3f %10.2f %8s\n", "record step (approximate, paired)", t_record / steps, t_record / t_plain, "≤ 0.70");
  std::printf("%-38s %10.3f %10.2f %8s\n", "learn step", t_learn / steps, t_learn / t_plain2, "≤ 1.35");
  std::printf("%-38s %10.3f %10.2f %8s\n", "  its target alone (read, S0, no grad)", t_target / steps, t_target / t_plain2, "");
  std::printf("plain steps beside record / beside learn: %.3f / %.3f s\n", t_plain / steps, t_plain2 / steps);
  std::printf("%-38s %10.2f %10.3f %8s\n", "peak RSS GiB: plain / learn", rss_plain, rss_learn / rss_plain, "≤ 1.05");
  std::printf("record bytes vs the fp32 latent (%llu B): bf16 %.3f×, bf16 exact %.3f×, fp32 %.3f×\n",
              static_cast<unsigned long long>(latent_bytes), double(bf16) / latent_bytes, double(bf16_exact) / latent_bytes,
              double(fp32) / latent_bytes);
  return 0;
}
