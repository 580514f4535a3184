// Per-step metrics of a run: one JSON object per line in <run_dir>/metrics.jsonl and, optionally,
// TensorBoard scalars in <run_dir>/tensorboard/.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "train/tensorboard.h"

namespace dt {

struct StepMetrics {
  int64_t step = 0;  // optimizer steps done (1-based at the first logged step)
  int64_t epoch = 0;
  double loss = 0, loss_smooth = 0, lr = 0, grad_norm = 0, step_time_s = 0, items_per_s = 0;
  std::map<std::string, double> extra;  // the objective's own scalars
};

class MetricsLog {
 public:
  // `resumed_step` > 0: a resumed run; lines of steps after it (written after the checkpoint the
  // run resumes from) are dropped so the file reads as one uninterrupted run.
  MetricsLog(const std::string& run_dir, bool tensorboard, int64_t resumed_step);
  void write(const StepMetrics& m);

 private:
  std::string jsonl_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

}  // namespace dt
