#include "run/distill_run.h"

#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "core/progress.h"
#include "distill/distill_objective.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "run/train_run.h"
#include "sample/sampler.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

std::string trajectories_dir(const RunConfig& run) {
  return run.distill.trajectories.empty() ? (fs::path(run.resolve(run.output.run_dir)) / "trajectories").string()
                                          : run.resolve(run.distill.trajectories);
}

int64_t student_steps(const RunConfig& run, const Family& family) {
  const int64_t steps = run.distill.steps > 0 ? run.distill.steps : family.defaults().sample_steps_distilled;
  if (steps < 1) throw Error("distill.steps must be at least 1");
  return steps;
}

double teacher_cfg(const RunConfig& run, const Family& family) {
  const double cfg = run.distill.cfg > 0 ? run.distill.cfg : family.defaults().transfer_cfg;
  if (cfg < 1) throw Error("distill.cfg must be at least 1 (1 = no guidance)");
  return cfg;
}

// The recipe of the trajectories: every caption of every sample, seeds_per_caption noise seeds each
// (seed = train.seed mixed with the trajectory's index, so two runs with different seeds differ).
TrajectoryRecipe recipe_of(const RunConfig& run, const Family& family, const RunData& data, int64_t height, int64_t width) {
  if (run.distill.seeds_per_caption < 1) throw Error("distill.seeds_per_caption must be at least 1");
  if (run.distill.substeps < 1) throw Error("distill.substeps must be at least 1");
  TrajectoryRecipe r;
  r.teacher = family.transformer_identity(run.resolve(run.model.base));
  r.data = data.manifest->hash;
  r.sigmas = family.sigmas(static_cast<int>(student_steps(run, family)), height, width);
  r.substeps = run.distill.substeps;
  r.cfg = teacher_cfg(run, family);
  for (size_t s = 0; s < data.manifest->samples.size(); ++s)
    for (size_t c = 0; c < data.manifest->samples[s].captions.size(); ++c)
      for (int64_t k = 0; k < run.distill.seeds_per_caption; ++k)
        r.specs.push_back({static_cast<int32_t>(s), static_cast<int32_t>(c),
                           static_cast<uint64_t>(run.train.seed) * 1'000'003ULL + r.specs.size()});
  return r;
}

// The dataset's one image size (distillation trains at one resolution, as its σ grid is per size).
std::pair<int64_t, int64_t> one_size(const RunData& data) {
  const auto& s = data.plan.samples.at(0);
  for (const auto& other : data.plan.samples)
    if (other.width != s.width || other.height != s.height)
      throw Error("distill needs one image size for the whole dataset (data.resolutions), found " + std::to_string(s.width) +
                  "x" + std::to_string(s.height) + " and " + std::to_string(other.width) + "x" + std::to_string(other.height));
  return {s.height, s.width};
}

// The Base's guided Euler walk from the noise down the fine grid (each student interval split
// evenly into `substeps`), kept at the student's grid points: [K+1, C, h, w] per trajectory.
std::vector<at::Tensor> walk(Denoiser& teacher, const TrajectoryRecipe& r, const std::vector<at::Tensor>& noise,
                             const std::vector<TextFeatures>& positive, const std::vector<TextFeatures>& negative,
                             const LoadOptions& o) {
  torch::NoGradGuard no_grad;
  at::Tensor x = torch::stack(noise).to(o.device);  // float32
  std::vector<at::Tensor> kept = {x.cpu()};
  const auto n = x.size(0);
  for (size_t k = 0; k + 1 < r.sigmas.size(); ++k) {
    for (int64_t j = 0; j < r.substeps; ++j) {
      const double from = r.sigmas[k] + (r.sigmas[k + 1] - r.sigmas[k]) * static_cast<double>(j) / static_cast<double>(r.substeps);
      const double to = r.sigmas[k] + (r.sigmas[k + 1] - r.sigmas[k]) * static_cast<double>(j + 1) / static_cast<double>(r.substeps);
      const at::Tensor sigma = torch::full({n}, from, torch::TensorOptions(o.device).dtype(torch::kFloat));
      const at::Tensor xs = x.to(o.compute_dtype);
      at::Tensor v = teacher.velocity(xs, sigma, positive);
      if (r.cfg > 1) v = guided_velocity(v, teacher.velocity(xs, sigma, negative), r.cfg);
      x = euler_step(x, v, from, to);
    }
    kept.push_back(x.cpu());
  }
  std::vector<at::Tensor> paths;
  const at::Tensor all = torch::stack(kept, 1);  // [n, K+1, C, h, w]
  for (int64_t i = 0; i < n; ++i) paths.push_back(all[i].clone());
  return paths;
}

void mark_distilled(const std::string& folder) {
  const fs::path index = fs::path(folder) / "model_index.json";
  if (!fs::exists(index)) return;  // a bare transformer folder has no pipeline index to say it
  nlohmann::json j = read_json_file(index.string());
  j["is_distilled"] = true;
  write_file_atomic(index.string(), j.dump(2) + "\n");  // a new file: the Base's hard link is left as it was
}

// The store of the run's recipe (its shards of another recipe removed).
TrajectoryStore open_store(const RunConfig& run, const Family& family, const RunData& data) {
  const auto [height, width] = one_size(data);
  return TrajectoryStore(trajectories_dir(run), recipe_of(run, family, data, height, width));
}

// Records the shards `store` is missing with the Base (loaded here and freed on return).
void record(const RunConfig& run, const Family& family, const RunData& data, const TrajectoryStore& store) {
  const TrajectoryRecipe& r = store.recipe();
  const auto [height, width] = one_size(data);
  int64_t missing = 0, missing_trajectories = 0;
  for (int64_t s = 0; s < store.shards(); ++s)
    if (!store.has_shard(s)) {
      ++missing;
      missing_trajectories += std::min<int64_t>(kShardSize, static_cast<int64_t>(r.specs.size()) - s * kShardSize);
    }
  std::cout << "distill record: " << r.specs.size() << " Base trajectories (CFG " << r.cfg << ", " << r.sigmas.size() - 1
            << " student steps × " << r.substeps << "), " << store.shards() - missing << " of " << store.shards()
            << " shards already in " << trajectories_dir(run) << "\n";
  if (missing == 0) return;

  LoadOptions o = load_options(run.model);
  const std::unique_ptr<Denoiser> teacher = family.load_transformer(run.resolve(run.model.base), o);
  teacher->module().eval();
  const std::vector<int64_t> shape = family.latent_shape(height, width);
  const int64_t batch = std::max<int64_t>(1, run.distill.record_batch_size);
  Progress progress("record", missing_trajectories);
  for (int64_t shard = 0; shard < store.shards(); ++shard) {
    if (store.has_shard(shard)) continue;
    const int64_t first = shard * kShardSize;
    const int64_t last = std::min<int64_t>(first + kShardSize, static_cast<int64_t>(r.specs.size()));
    std::vector<at::Tensor> paths;
    for (int64_t at = first; at < last; at += batch) {
      std::vector<at::Tensor> noise;
      std::vector<TextFeatures> positive, negative;
      for (int64_t i = at; i < std::min(last, at + batch); ++i) {
        const TrajectorySpec& spec = r.specs[i];
        noise.push_back(sample_noise(spec.seed, shape));
        positive.push_back(data.source->text(spec.sample, spec.caption).to(o.device, o.compute_dtype));
        negative.push_back(data.source->text(spec.sample, kEmptyCaption).to(o.device, o.compute_dtype));
      }
      for (at::Tensor& p : walk(*teacher, r, noise, positive, negative, o)) paths.push_back(std::move(p));
      progress.advance(static_cast<int64_t>(noise.size()));
    }
    store.write_shard(shard, paths);
  }
  progress.finish();
}

}  // namespace

std::string record_trajectories(const RunConfig& run) {
  const Family& family = family_of(run, run.model);
  const std::unique_ptr<RunData> data = prepare_data(run, run.model);
  record(run, family, *data, open_store(run, family, *data));
  return trajectories_dir(run);
}

LoopResult distill(const RunConfig& run, bool resume) {
  check_method(run, {"full"});
  check_full_training(run.model);  // before the Base records anything
  const Family& family = family_of(run, run.model);
  const std::unique_ptr<RunData> data = prepare_data(run, run.model);
  const TrajectoryStore store = open_store(run, family, *data);
  record(run, family, *data, store);  // the teacher is freed when it returns
  std::vector<at::Tensor> paths = store.read_all();
  const TrajectoryRecipe& r = store.recipe();
  const Plan plan = distill_plan(r.specs, data->plan.samples, r.sigmas, data->manifest->hash + ":" + r.key(), run.train.epochs,
                                 run.train.batch_size, static_cast<uint64_t>(run.train.seed));
  TrajectorySource source(*data->source, r.specs, paths);
  DistillObjective objective(std::move(paths), r.sigmas, LossFunction::from_settings(run.train.loss, run.train.huber_delta));
  LoadedModel student = load_model_full(run, run.model);
  std::cout << "distill learn: student from " << run.model.base << ", " << r.specs.size() << " trajectories × "
            << r.sigmas.size() - 1 << " steps in " << plan.batches.size() << " batches\n";
  LoopSettings settings = loop_settings(run, student);
  const auto save = settings.save;
  settings.save = [save](const std::string& path) {
    save(path);
    mark_distilled(path);
  };
  return run_loop(settings, *student.denoiser, trained_tensors(student), plan, source, objective, resume);
}

}  // namespace dt
