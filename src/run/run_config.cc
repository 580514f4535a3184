#include "run/run_config.h"

#include <filesystem>

#include "core/config.h"
#include "io/atomic_file.h"

namespace dt {

PlanOptions TrainConfig::plan_options() const {
  PlanOptions o;
  o.seed = static_cast<uint64_t>(seed);
  o.epochs = epochs;
  o.batch_size = batch_size;
  o.timesteps = {timestep_distribution, logit_mean, logit_std, sigmoid_scale, sigmoid_bias,
                 min_sigma,             max_sigma,  shift,     dynamic_shift};
  o.noise = {offset_noise, perturbation_noise};
  return o;
}

std::string RunConfig::resolve(const std::string& path) const {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig config;
  read_config_text(read_file(path), path, overrides, config);
  const auto parent = std::filesystem::path(path).parent_path();
  config.base_dir = parent.empty() ? "." : parent.string();
  return config;
}

std::string default_run_config_toml() {
  RunConfig defaults;
  return "# deltatrain run config: every setting with its default.\n" + config_to_toml(defaults);
}

}  // namespace dt
