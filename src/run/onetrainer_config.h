// Import of a OneTrainer training config (the JSON its UI saves and its presets) and its concepts
// file into a run config, for the fields that have a counterpart here.
#pragma once
#include <string>
#include <vector>

#include "run/run_config.h"

namespace dt {

// `concepts`: the concepts file; empty = the config's `concept_file_name` (relative to the JSON's
// folder) or its inline `concepts`. Every top-level field without a counterpart, and every value
// that cannot be carried over, is named in `warnings` (one line per kind). The result's paths are
// relative to the JSON's folder (base_dir is set to it).
RunConfig import_onetrainer_config(const std::string& path, const std::string& concepts,
                                   std::vector<std::string>& warnings);

}  // namespace dt
