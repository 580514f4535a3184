// The [distill] section of a run config: how `deltatrain distill` turns a Base (model.base) into a
// few-step student that needs no CFG. The data, plan, optimizer, schedule, checkpoints and output
// come from the other sections, as for `deltatrain train` with train.method = "full".
#pragma once
#include <cstdint>
#include <string>

namespace dt {

struct DistillConfig {
  int64_t steps = 0;
  int64_t substeps = 8;
  double cfg = 0;
  int64_t seeds_per_caption = 1;
  int64_t record_batch_size = 16;
  std::string trajectories;

  template <class V>
  void fields(V& v) {
    v("steps", steps, "the student's sampling steps (its σ grid is the family's schedule for this many); 0 = the family's distilled default");
    v("substeps", substeps, "Base Euler steps per student step: the teacher walks steps × substeps steps of the same grid, subdivided evenly in σ");
    v("cfg", cfg, "the standard CFG weight w of the teacher (v_neg + w·(v_pos − v_neg), empty negative prompt) that the student learns to match without CFG; 0 = the family's (the weight its distilled model was distilled at)");
    v("seeds_per_caption", seeds_per_caption, "teacher trajectories per caption of the dataset, each from its own noise seed");
    v("record_batch_size", record_batch_size, "trajectories the teacher samples at once");
    v("trajectories", trajectories, "folder of the recorded teacher trajectories; empty = <run_dir>/trajectories");
  }
};

}  // namespace dt
