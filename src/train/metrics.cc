#include "train/metrics.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"

namespace dt {

MetricsLog::MetricsLog(const std::string& run_dir, bool tensorboard, int64_t resumed_step)
    : jsonl_((std::filesystem::path(run_dir) / "metrics.jsonl").string()) {
  if (std::filesystem::exists(jsonl_)) {
    std::string kept;
    if (resumed_step > 0) {
      std::istringstream lines(read_file(jsonl_));
      for (std::string line; std::getline(lines, line);) {
        const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.value("step", int64_t{0}) <= resumed_step) kept += line + "\n";
      }
    }
    write_file_atomic(jsonl_, kept);
  }
  if (tensorboard) tensorboard_ = std::make_unique<TensorBoardWriter>((std::filesystem::path(run_dir) / "tensorboard").string());
}

void MetricsLog::write(const StepMetrics& m) {
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  nlohmann::json j = {{"step", m.step},           {"epoch", m.epoch},   {"loss", m.loss},
                      {"loss_smooth", m.loss_smooth}, {"lr", m.lr},     {"grad_norm", m.grad_norm},
                      {"step_time_s", m.step_time_s}, {"items_per_s", m.items_per_s}, {"time", now}};
  for (const auto& [k, v] : m.extra) j[k] = v;
  std::ofstream out(jsonl_, std::ios::app);
  out << j.dump() << "\n";
  if (!out.flush()) throw file_error(jsonl_, "cannot append metrics");
  if (!tensorboard_) return;
  std::vector<std::pair<std::string, double>> values{{"loss/step", m.loss},      {"loss/smooth", m.loss_smooth},
                                                     {"lr", m.lr},               {"grad_norm", m.grad_norm},
                                                     {"perf/step_time_s", m.step_time_s}, {"perf/items_per_s", m.items_per_s}};
  for (const auto& [k, v] : m.extra) values.emplace_back(k, v);
  tensorboard_->scalars(m.step, values, now);
}

}  // namespace dt
