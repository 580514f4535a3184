// Teacher trajectories for guidance- and step-distillation (docs/distill.md): for each (caption,
// noise seed) the Base's guided Euler path sampled on a fine grid, kept at the student's coarse σ
// grid σ_0 = 1 > σ_1 > … > σ_K = 0. A student that moves from x_k to x_{k+1} in one step, without
// CFG, draws what the Base draws with CFG in K·substeps steps.
//
// On disk: shards of up to kShardSize trajectories, `shard-NNNNN.safetensors`, each written
// atomically, holding `x.<i>` [K+1, C, h, w] float32 per trajectory and in its metadata the
// recipe's key (the Base, the grid, the weight, the data), so an interrupted recording resumes
// at the first missing shard and a changed recipe is never mixed with an old one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace dt {

// One trajectory: which caption of which dataset sample it follows, from which noise seed.
struct TrajectorySpec {
  int32_t sample = 0;
  int32_t caption = 0;
  uint64_t seed = 0;
};

struct TrajectoryRecipe {
  std::string teacher;          // the Base transformer's identity
  std::string data;             // the dataset's manifest hash
  std::vector<double> sigmas;   // the student grid, K + 1 values from 1 down to 0
  int64_t substeps = 0;
  double cfg = 1;
  std::vector<TrajectorySpec> specs;
  std::string key() const;  // a hash of everything above
};

constexpr int64_t kShardSize = 256;

class TrajectoryStore {
 public:
  // Opens (creates) `dir` for `recipe`; shards written for another recipe are removed.
  TrajectoryStore(std::string dir, TrajectoryRecipe recipe);
  const TrajectoryRecipe& recipe() const { return recipe_; }
  int64_t shards() const;                // how many shards the recipe needs
  bool has_shard(int64_t shard) const;   // written completely for this recipe
  // Writes shard `shard`: paths[i] is trajectory shard·kShardSize + i, [K+1, C, h, w].
  void write_shard(int64_t shard, const std::vector<at::Tensor>& paths) const;
  // Every trajectory, in spec order (dt::Error naming the shard when one is missing or not this
  // recipe's, or a path has the wrong number of grid points).
  std::vector<at::Tensor> read_all() const;

 private:
  std::string shard_path(int64_t shard) const;
  std::string dir_;
  TrajectoryRecipe recipe_;
  std::string key_;
};

}  // namespace dt
