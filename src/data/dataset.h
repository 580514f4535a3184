// The dataset scan: concepts (folders, or a OneTrainer concepts.json) → a manifest with one entry
// per (image, target resolution), sorted by key, with captions, bucket and crop fixed up front.
// The manifest is a pure function of the files and the [data] settings: the trainer's plan and the
// caches are keyed by it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/buckets.h"
#include "data/data_config.h"

namespace dt {

// A concept as the trainer sees it after the scan.
struct Concept {
  std::string name;
  double repeats = 1.0;  // effective: samples_per_epoch / image count when that was set
  double loss_weight = 1.0;
  double caption_dropout = 0.0;
  int64_t samples = 0;  // manifest entries of this concept
};

struct Sample {
  std::string key;           // "<concept>/<path relative to the concept folder>", plus "@<resolution>"
                             // when the config lists several resolutions; unique and stable
  std::string path;          // the image file
  std::string content_hash;  // SHA-256 of the file's bytes
  int concept_index = 0;     // into Manifest::concepts
  std::vector<std::string> captions;  // at least one (possibly ""); a plan item picks one by index
  int64_t width = 0, height = 0;      // upright source size
  Bucket bucket;                      // training size
  Crop crop;                          // how the source becomes bucket-sized
};

struct BadFile {
  std::string path, problem;
};

struct Manifest {
  std::vector<Concept> concepts;
  std::vector<Sample> samples;  // sorted by key
  std::string hash;             // SHA-256 over everything above: equal hash ⇔ same training data
  std::vector<BadFile> skipped;        // bad files left out (bad_files = "skip")
  std::vector<std::string> warnings;   // e.g. missing captions taken as empty
  const Concept& concept_of(const Sample& s) const { return concepts.at(s.concept_index); }
  const Sample* find(const std::string& key) const;  // binary search; null when absent
};

// Scans every enabled concept. `base_dir` resolves relative paths (the config file's folder);
// `pixel_multiple` is the family's. Bad files (corrupt, truncated, unsupported, empty, unreadable
// folders, missing captions under the error policy) are collected over the whole dataset, then
// either thrown as one dt::Error listing each file and its problem, or skipped (bad_files = skip).
// Image validity is remembered in <cache_dir>/images.json by content hash, so a rescan of
// unchanged files only hashes them.
Manifest scan_dataset(const DataConfig& config, const std::string& base_dir, int64_t pixel_multiple);

// The concepts of a OneTrainer concepts.json (a JSON array of concept objects), as configs;
// relative paths resolve against the file's folder. Settings deltatrain does not implement
// (augmentations, tag shuffling, ...) are reported in `warnings` when enabled.
std::vector<ConceptConfig> read_onetrainer_concepts(const std::string& path, std::vector<std::string>& warnings);

// The sample indices of one epoch with repeats applied: each sample ⌊repeats⌋ times, plus once
// more for a seeded fraction of the concept's samples; in manifest order (the plan shuffles).
std::vector<int64_t> epoch_samples(const Manifest& manifest, uint64_t seed, int64_t epoch);

}  // namespace dt
