// What a family's tiny pipeline folder (Family::write_tiny_pipeline) holds beside its transformer,
// written the same way for every family.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "text/qwen3.h"
#include "vae/config.h"

namespace dt {

struct TinyPipelineParts {
  Qwen3Config text_encoder;  // text_encoder/, random weights from text_seed
  int32_t vocab = 512;       // tokenizer/: the tiny Qwen3-style tokenizer
  VaeConfig vae;             // vae/, random weights from vae_seed
  uint64_t text_seed = 0, vae_seed = 0;
  nlohmann::json scheduler;  // scheduler/scheduler_config.json
  nlohmann::json index;      // model_index.json
};

void write_tiny_pipeline_parts(const std::string& dir, const TinyPipelineParts& parts);

// `config` with the fields of `changes` (the text of a JSON object) replacing its own; dt::Error
// when `changes` is not a JSON object or names a field `config` does not have.
nlohmann::json with_fields(nlohmann::json config, const std::string& changes);

}  // namespace dt
