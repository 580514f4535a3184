// `deltatrain cache CONFIG`: scan the dataset and fill the latent and text caches, one model in
// memory at a time. Training does the same first; running it apart lets a machine without room
// for the transformer prepare the data.
#include <CLI/CLI.hpp>

#include <iostream>
#include <set>

#include "cli/command.h"
#include "data/cache.h"
#include "data/dataset.h"
#include "dist/group.h"
#include "run/distributed.h"
#include "run/run_config.h"
#include "run/train_run.h"

namespace dt {

int run_cache(int argc, char** argv) {
  CLI::App app("Scan the dataset of a run config and fill its latent and text caches.", argv[0]);
  std::string path;
  std::vector<std::string> overrides;
  bool quiet = false;
  app.add_option("CONFIG", path, "run config (TOML)")->required();
  app.add_option("--set", overrides, "override a setting: key=value (TOML value), repeatable");
  app.add_flag("--quiet", quiet, "no progress display");
  int code = 0;
  if (!parse_args(app, argc, argv, code)) return code;

  RunConfig run = load_run_config(path, overrides);
  join_ranks(run, "cache");  // several ranks each encode a share
  validate(run.data, path);
  const CacheModels models = cache_models(run);
  const Manifest manifest = scan_dataset(run.data, run.base_dir, models.family->pixel_multiple());
  for (const auto& w : manifest.warnings) std::cerr << "warning: " << w << "\n";
  for (const auto& b : manifest.skipped) std::cerr << "skipped: " << b.path << ": " << b.problem << "\n";
  std::set<std::pair<int64_t, int64_t>> buckets;
  for (const auto& s : manifest.samples) buckets.insert({s.bucket.width, s.bucket.height});
  std::cout << "dataset: " << manifest.samples.size() << " samples in " << manifest.concepts.size() << " concept"
            << (manifest.concepts.size() == 1 ? "" : "s") << ", " << buckets.size() << " bucket"
            << (buckets.size() == 1 ? "" : "s") << ", manifest " << manifest.hash.substr(0, 16) << "\n";

  FillStats stats;
  fill_cache(manifest, run.data, run.base_dir, models, !quiet, &stats);
  std::cout << "latents: " << stats.latents_computed << " computed" << (dist::world().size() > 1 ? " here" : "") << ", "
            << stats.latents_reused << " reused\n"
            << "text: " << stats.texts_computed << " computed" << (dist::world().size() > 1 ? " here" : "") << ", "
            << stats.texts_reused << " reused\n";
  return 0;
}

}  // namespace dt
