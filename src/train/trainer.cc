#include "train/trainer.h"

#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/listing.h"
#include "core/progress.h"
#include "dist/group.h"
#include "io/atomic_file.h"
#include "train/gradient_sum.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/train_checkpoint.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

// Fails before any step when an output cannot be written (better now than after hours).
void check_writable(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || access(dir.c_str(), W_OK) != 0) throw file_error(dir, "cannot write here (output location)");
  AtomicFile probe((fs::path(dir) / ".write-test").string());  // removed again when it goes out of scope
}

// This rank's share of a batch of `n` items: positions [first, end), the remainder going to the
// lowest ranks (so rank 0's share is empty only when the batch is).
std::pair<int64_t, int64_t> share_of(int64_t n, const dist::Group& ranks) {
  const int64_t base = n / ranks.size(), extra = n % ranks.size(), r = ranks.rank();
  const int64_t first = r * base + std::min(r, extra);
  return {first, first + base + (r < extra ? 1 : 0)};
}

// This rank's part of plan batch `index` in the loop: a training objective shares each batch's
// items (one gradient per global batch); one that does not train (record) shares whole batches,
// each computed as one process computes it.
std::pair<int64_t, int64_t> part_of_batch(const Plan& plan, int64_t index, bool trains, const dist::Group& ranks) {
  const auto items = static_cast<int64_t>(plan.batches[index].items.size());
  if (trains) return share_of(items, ranks);
  return index % ranks.size() == ranks.rank() ? std::pair<int64_t, int64_t>{0, items} : std::pair<int64_t, int64_t>{0, 0};
}

Batch make_batch(const Plan& plan, int64_t index, int64_t first, int64_t end, SampleSource& source, c10::Device device,
                 c10::ScalarType dtype) {
  Batch b;
  b.plan = &plan;
  b.index = index;
  b.first = first;
  const auto& items = plan.batches[index].items;
  b.items.assign(items.begin() + first, items.begin() + end);
  std::vector<at::Tensor> x0, noise;
  std::vector<float> sigma, weight;
  for (const PlanItem& it : b.items) {
    x0.push_back(source.latent(it.sample).to(torch::kFloat));
    noise.push_back(plan_noise(it.noise_seed, x0.back().sizes().vec(), plan.noise));
    sigma.push_back(it.sigma);
    weight.push_back(static_cast<float>(plan.samples[it.sample].loss_weight));
    b.text.push_back(source.text(it.sample, it.caption).to(device, dtype));
  }
  b.x0 = torch::stack(x0);
  b.noise = torch::stack(noise);
  b.sigma = torch::tensor(sigma, torch::kFloat);
  b.x_t = noised(b.x0, b.noise, b.sigma).to(device, dtype);  // in float32 on the CPU: the same bits everywhere
  b.x0 = b.x0.to(device);
  b.noise = b.noise.to(device);
  b.sigma = b.sigma.to(device);
  b.loss_weight = torch::tensor(weight, torch::kFloat).to(device);
  return b;
}

// Checkpoint names of the trained tensors: this prefix + the tensor's name.
const std::string kTrainedPrefix = "trained.";

// Copies a checkpoint's trained tensors back into `trained` in place; the names and shapes must be
// exactly those of the run (else the checkpoint belongs to another model or adapter choice).
void restore_trained(const NamedTensors& trained, const std::map<std::string, at::Tensor>& checkpoint,
                     const std::string& path) {
  std::vector<std::string> problems;
  std::set<std::string> names;
  for (const auto& [name, tensor] : trained) {
    names.insert(kTrainedPrefix + name);
    auto it = checkpoint.find(kTrainedPrefix + name);
    if (it == checkpoint.end())
      problems.push_back(name + " (missing)");
    else if (it->second.sizes() != tensor.sizes())
      problems.push_back(name + " (shape " + c10::str(it->second.sizes()) + ", the run's " + c10::str(tensor.sizes()) + ")");
  }
  for (const auto& entry : checkpoint)
    if (entry.first.rfind(kTrainedPrefix, 0) == 0 && !names.count(entry.first))
      problems.push_back(entry.first.substr(kTrainedPrefix.size()) + " (not trained by this run)");
  if (!problems.empty()) {
    throw file_error(path, "does not hold this run's trained tensors (" + join(problems, 5) +
                               "); resume with the same [model], [lora] and train.method or start a new run directory");
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : trained) tensor.copy_(checkpoint.at(kTrainedPrefix + name));
}

// The generator states of every rank: rank 0's under their own names, rank r's as "rng.rank<r>.*"
// (gathered through `device`: NCCL moves only GPU tensors).
std::map<std::string, at::Tensor> every_rank_rng_state(const dist::Group& ranks, c10::Device device, int64_t step) {
  std::map<std::string, at::Tensor> out = rng_state();
  if (ranks.size() == 1) return out;
  for (const auto& [name, state] : rng_state()) {
    const std::vector<at::Tensor> all = ranks.all_gather(state.to(device), "the gathering of the generator states for the checkpoint of step " + std::to_string(step));
    for (int r = 1; r < ranks.size(); ++r) out["rng.rank" + std::to_string(r) + name.substr(3)] = all[r].cpu();
  }
  return out;
}

// This rank's generator states in a checkpoint of every_rank_rng_state(); false when it has none
// (a checkpoint written with fewer ranks).
bool restore_rank_rng_state(const dist::Group& ranks, const std::map<std::string, at::Tensor>& checkpoint) {
  if (ranks.rank() == 0) {
    set_rng_state(checkpoint);
    return true;
  }
  const std::string prefix = "rng.rank" + std::to_string(ranks.rank()) + ".";
  std::map<std::string, at::Tensor> own;
  for (const auto& [name, state] : checkpoint)
    if (name.rfind(prefix, 0) == 0) own["rng." + name.substr(prefix.size())] = state;
  set_rng_state(own);
  return !own.empty();
}

// Of batches [from, to), the first with the most pixels (items × width × height): the one whose
// pass needs the most memory.
int64_t largest_batch(const Plan& plan, int64_t from, int64_t to) {
  int64_t best = from, best_pixels = -1;
  for (int64_t b = from; b < to; ++b) {
    const auto& items = plan.batches[b].items;
    if (items.empty()) continue;
    const PlanSample& s = plan.samples[items.front().sample];
    const int64_t pixels = static_cast<int64_t>(items.size()) * s.width * s.height;
    if (pixels > best_pixels) best = b, best_pixels = pixels;
  }
  return best;
}

// Runs `work` (optimizer step `step`, or 0 for the warm-up pass), turning LibTorch's and the
// allocator's out-of-memory into one line naming the settings to change.
template <class Work>
void naming_out_of_memory(const LoopSettings& s, int64_t step, Work&& work) {
  const auto out_of_memory = [&] {
    throw Error("out of memory " + (step > 0 ? "at step " + std::to_string(step) : std::string("in the warm-up pass")) +
                " (" + s.memory_settings + "): lower train.batch_size (raise train.gradient_accumulation to keep the " +
                "effective batch), set model.gradient_checkpointing = true, or use model.dtype = \"bf16\"");
  };
  try {
    work();
  } catch (const c10::Error& e) {
    if (is_out_of_memory(e.what())) out_of_memory();
    throw;
  } catch (const std::bad_alloc&) {
    out_of_memory();
  }
}

// The warm-up pass (LoopSettings::warm_up_pass): the objective's computation on plan batch
// `index` (the largest still to run), forward and (when it trains) backward, with nothing kept: gradients
// dropped, the default generators put back, nothing written. The process thereby takes the
// memory of its largest pass before the first step (the kernel zeroes each new page on its first
// touch, a fixed cost that made the first step of a small model 1.3–1.7× a later one:
// bench/RESULTS.md, "First passes"), and a batch that does not fit fails now rather than when it
// comes. Returns the seconds it took.
double warm_up_pass(const LoopSettings& t, Denoiser& model, const std::vector<at::Tensor>& params, const Plan& plan,
                    int64_t index, SampleSource& source, Objective& objective, const dist::Group& ranks) {
  const auto start = std::chrono::steady_clock::now();
  const bool trains = objective.trains();
  const auto [first, end] = part_of_batch(plan, index, trains, ranks);
  if (first == end) return 0;
  const std::map<std::string, at::Tensor> generators = rng_state();
  naming_out_of_memory(t, 0, [&] {
    const Batch batch = make_batch(plan, index, first, end, source, t.device, t.dtype);
    if (trains) {
      objective.warm_up(model, batch).loss.backward();
    } else {
      torch::NoGradGuard no_grad;
      objective.warm_up(model, batch);
    }
  });
  for (at::Tensor p : params) p.mutable_grad().reset();
  set_rng_state(generators);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int64_t loop_batches(const Plan& plan, int64_t max_steps, int64_t gradient_accumulation) {
  const auto all = static_cast<int64_t>(plan.batches.size());
  return max_steps > 0 ? std::min(all, max_steps * gradient_accumulation) : all;
}

LoopResult run_loop(const LoopSettings& t, Denoiser& model, const NamedTensors& trained, const Plan& plan,
                    SampleSource& source, Objective& objective, bool resume, const AfterStep& after_step) {
  const std::string& run_dir = t.run_dir;
  const bool trains = objective.trains();
  // In a data-parallel run every rank takes its share of each batch; rank 0 alone writes.
  const dist::Group& ranks = dist::world();
  const bool writes = ranks.is_main();
  const c10::Device device = t.device;
  const c10::ScalarType dtype = t.dtype;
  if (t.gradient_accumulation < 1) throw Error("train.gradient_accumulation must be at least 1");
  learning_rate_at(t.schedule, 0, 1);  // validates lr_schedule before the first step

  // Checked before anything is computed.
  if (writes) check_writable(run_dir);
  if (trains && writes) check_writable(fs::path(t.output_path).parent_path().empty() ? "." : fs::path(t.output_path).parent_path().string());

  const int64_t accumulation = t.gradient_accumulation;
  const int64_t total_batches = loop_batches(plan, t.max_steps, accumulation);
  const int64_t total_steps = (total_batches + accumulation - 1) / accumulation;

  std::vector<at::Tensor> params;
  if (trains)
    for (const auto& named : trained) params.push_back(named.second);
  AdamW optimizer(params, t.adamw);
  std::optional<GradientSum> gradient_sum;  // the ranks' gradients summed: each rank computes its share
  if (trains && ranks.size() > 1) gradient_sum.emplace(ranks, params);
  int64_t next_batch = 0, step = 0;
  double loss_smooth = 0;
  std::string last_checkpoint;
  torch::manual_seed(t.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(ranks.rank()));  // dropout's generators

  if (resume && trains) {
    if (auto c = latest_train_checkpoint(run_dir)) {
      if (c->plan_hash != plan.hash)
        throw file_error(c->path, "belongs to another plan (the data or the [train] settings changed); "
                                  "resume with the same config or start a new run directory");
      std::map<std::string, at::Tensor> adam_state;
      for (const auto& [name, tensor] : c->tensors)
        if (name.rfind("adamw.", 0) == 0) adam_state[name] = tensor;
      restore_trained(trained, c->tensors, c->path);
      optimizer.load_state(adam_state);
      if (!restore_rank_rng_state(ranks, c->tensors))
        std::cerr << "warning: " << c->path << " holds no generator state of rank " << ranks.rank()
                  << " (written by fewer ranks): its dropout draws differ from an uninterrupted run's\n";
      next_batch = c->next_batch;
      step = c->optimizer_steps;
      loss_smooth = c->loss_smooth;
      last_checkpoint = c->path;
      std::cout << "resuming from " << c->path << " (step " << step << ")\n";
    }
    ranks.agree("checkpoint to resume from", last_checkpoint.empty() ? "none" : fs::path(last_checkpoint).filename().string(),
                "on several machines the run folder (output.run_dir) must be on a file system they share");
  }
  if (auto done = objective.completed_batches(); resume && done) next_batch = *done;
  if (!resume && writes) fs::remove_all(fs::path(run_dir) / "checkpoints");

  // An objective that does not train (record, learn's prior pass) logs no steps and leaves the
  // run folder's metrics as they are.
  std::optional<MetricsLog> metrics;
  if (writes && trains) metrics.emplace(run_dir, t.tensorboard, resume ? step : 0);
  model.set_gradient_checkpointing(t.gradient_checkpointing && trains);
  if (trains) model.module().train();
  else model.module().eval();
  objective.begin(model, plan);

  auto save_checkpoint = [&]() {
    objective.flush();
    if (!trains || t.checkpoint_every <= 0) return;
    TrainCheckpoint c;
    c.next_batch = next_batch;
    c.optimizer_steps = step;
    c.loss_smooth = loss_smooth;
    c.plan_hash = plan.hash;
    for (const auto& [name, tensor] : trained) c.tensors[kTrainedPrefix + name] = tensor.detach();
    for (const auto& [name, tensor] : optimizer.state()) c.tensors[name] = tensor;
    for (const auto& [name, tensor] : every_rank_rng_state(ranks, device, step)) c.tensors[name] = tensor;
    if (writes) last_checkpoint = write_train_checkpoint(run_dir, std::move(c), t.keep_checkpoints);
  };

  if (t.warm_up_pass && next_batch < total_batches) {
    const int64_t index = largest_batch(plan, next_batch, total_batches);
    const auto& items = plan.batches[index].items;
    const PlanSample& size = plan.samples[items.front().sample];
    char line[160];
    // Said before it runs: on a large model the pass takes as long as a step.
    std::snprintf(line, sizeof line, "warm-up pass on the largest batch (%zu × %lld×%lld), nothing kept: ", items.size(),
                  static_cast<long long>(size.width), static_cast<long long>(size.height));
    if (writes) std::cout << line << std::flush;
    const double seconds = warm_up_pass(t, model, params, plan, index, source, objective, ranks);
    std::snprintf(line, sizeof line, "%.3f s\n", seconds);
    if (writes) std::cout << line;
  }

  Progress progress(objective.name(), trains ? total_steps : total_batches);
  progress.skip(trains ? step : next_batch);
  double step_loss = 0;
  int64_t step_items = 0;
  auto step_start = std::chrono::steady_clock::now();
  while (next_batch < total_batches) {
    const int64_t group_start = next_batch - next_batch % accumulation;
    const int64_t group_size = std::min(accumulation, total_batches - group_start);
    StepResult r;
    const int64_t batch_items = static_cast<int64_t>(plan.batches[next_batch].items.size());
    const auto [first, end] = part_of_batch(plan, next_batch, trains, ranks);
    naming_out_of_memory(t, step + 1, [&] {
      step_items += end - first;
      if (first == end) {
        // Nothing of this batch falls to this rank: it adds nothing to the step's sums.
      } else if (trains) {
        r = objective.step(model, make_batch(plan, next_batch, first, end, source, device, dtype));
        const double value = r.loss.item<double>();
        if (!std::isfinite(value))
          throw Error("the loss is " + std::string(std::isnan(value) ? "NaN" : "infinite") + " at step " +
                      std::to_string(step + 1) + " (batch " + std::to_string(next_batch) + "); stopped" +
                      (last_checkpoint.empty() ? "" : ", the last good checkpoint is " + last_checkpoint));
        // The objective's loss is the mean over this rank's items; its share of the global batch's
        // mean is that times (items here / items in the batch).
        const double share = ranks.size() == 1 ? 1.0 : static_cast<double>(end - first) / static_cast<double>(batch_items);
        if (gradient_sum && next_batch + 1 - group_start == group_size) gradient_sum->arm(step + 1);
        (ranks.size() == 1 ? r.loss / static_cast<double>(group_size) : r.loss * (share / static_cast<double>(group_size))).backward();
        step_loss += value * share / static_cast<double>(group_size);
      } else {
        torch::NoGradGuard no_grad;
        r = objective.step(model, make_batch(plan, next_batch, first, end, source, device, dtype));
      }
    });
    ++next_batch;
    if (!trains) {
      progress.advance();
      if (t.checkpoint_every > 0 && next_batch % t.checkpoint_every == 0) objective.flush();
      continue;
    }
    if (next_batch - group_start < group_size) continue;

    // One optimizer step.
    const double reduce_seconds = gradient_sum ? gradient_sum->finish(step_loss, step_items, step + 1) : 0;
    const double norm = gradient_norm(params);
    if (!std::isfinite(norm))
      throw Error("the gradient norm is " + std::string(std::isnan(norm) ? "NaN" : "infinite") + " at step " +
                  std::to_string(step + 1) + "; stopped" +
                  (last_checkpoint.empty() ? "" : ", the last good checkpoint is " + last_checkpoint));
    clip_gradients(params, norm, t.clip_grad_norm);
    const double lr = learning_rate_at(t.schedule, step, total_steps);
    optimizer.step(lr);
    optimizer.zero_grad();
    ++step;
    loss_smooth = step == 1 ? step_loss : t.loss_smoothing * loss_smooth + (1 - t.loss_smoothing) * step_loss;

    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - step_start).count();
    StepMetrics m{step, plan.batches[next_batch - 1].epoch, step_loss, loss_smooth, lr, norm, seconds,
                  static_cast<double>(step_items) / std::max(seconds, 1e-9), r.metrics};
    // The wait for the gradient sum after the backward pass (the slowest rank included): what data
    // parallelism costs beyond the part of the sum that overlapped the backward.
    if (gradient_sum) m.extra["allreduce_s"] = reduce_seconds;
    if (metrics) metrics->write(m);
    char note[96];
    std::snprintf(note, sizeof(note), "loss %.4f  lr %.2e", loss_smooth, lr);
    progress.set_note(note);
    progress.advance();
    step_loss = 0;
    step_items = 0;

    if (writes && t.save_every > 0 && step % t.save_every == 0 && next_batch < total_batches) {
      t.save((fs::path(run_dir) / t.save_name(step)).string());
    }
    if (t.checkpoint_every > 0 && step % t.checkpoint_every == 0 && next_batch < total_batches) save_checkpoint();
    if (after_step && writes) after_step(step, next_batch >= total_batches);
    step_start = std::chrono::steady_clock::now();  // step time and rate leave the saving (and sampling) out
  }
  progress.finish();
  objective.end();
  if (trains) {
    save_checkpoint();
    if (writes) t.save(t.output_path);
    ranks.barrier("the wait for rank 0's final save");
  }
  return {step, next_batch, loss_smooth};
}

}  // namespace dt
