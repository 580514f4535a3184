#include "models/tiny_pipeline.h"

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "text/tiny_tokenizer.h"
#include "vae/random_vae.h"

namespace dt {

void write_tiny_pipeline_parts(const std::string& dir, const TinyPipelineParts& p) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  fs::create_directories(root / "scheduler");
  write_random_qwen3((root / "text_encoder").string(), p.text_encoder, p.text_seed);
  write_tiny_tokenizer((root / "tokenizer").string(), p.vocab);
  vae::write_random_vae((root / "vae").string(), p.vae, p.vae_seed);
  write_file_atomic((root / "scheduler" / "scheduler_config.json").string(), p.scheduler.dump(2) + "\n");
  write_file_atomic((root / "model_index.json").string(), p.index.dump(2) + "\n");
}

}  // namespace dt

namespace dt {

nlohmann::json with_fields(nlohmann::json config, const std::string& changes) {
  const nlohmann::json parsed = nlohmann::json::parse(changes, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) throw Error("transformer config changes are not a JSON object: " + changes);
  for (const auto& [key, value] : parsed.items())
    if (!config.contains(key)) {
      std::string known;
      for (const auto& entry : config.items()) known += (known.empty() ? "" : ", ") + entry.key();
      throw Error("transformer config changes: '" + key + "' is not an entry of the config (" + known + ")");
    }
  config.update(parsed);
  return config;
}

}  // namespace dt
