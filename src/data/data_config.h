// The [data] section of a run config and its [[data.concepts]] (see core/config.h for the table
// mechanism). Paths are relative to the config file's folder.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dt {

// One folder of images with the settings that apply to all of them.
struct ConceptConfig {
  std::string name;  // empty: the folder's name
  std::string path;
  bool enabled = true;
  bool include_subfolders = true;
  double repeats = 1.0;
  int64_t samples_per_epoch = 0;
  double loss_weight = 1.0;
  std::string caption_source = "txt";
  std::string caption = "";
  std::string missing_caption = "";
  double caption_dropout = 0.0;

  template <class V>
  void fields(V& v) {
    v("name", name, "concept name, part of every sample key (empty: the folder's name)");
    v("path", path, "folder of images (.jpg .jpeg .png .webp)");
    v("enabled", enabled, "false leaves the concept out");
    v("include_subfolders", include_subfolders, "also take images from subfolders, at any depth");
    v("repeats", repeats, "times each image is seen per epoch (fractions allowed: 0.5 = every other epoch)");
    v("samples_per_epoch", samples_per_epoch, "if > 0: images drawn from this concept per epoch, overriding repeats");
    v("loss_weight", loss_weight, "multiplies the loss of this concept's samples");
    v("caption_source", caption_source,
      "txt: same-name .txt beside each image (one caption per line); filename: the file name; "
      "text: the 'caption' setting; file: lines of the file named by 'caption'");
    v("caption", caption, "caption text (caption_source = text) or caption file (caption_source = file)");
    v("missing_caption", missing_caption, "error or empty, for images without a .txt (empty: use data.missing_caption)");
    v("caption_dropout", caption_dropout, "probability that a training step uses the empty caption instead");
  }
};

struct DataConfig {
  std::string cache_dir = "cache";
  std::vector<int64_t> resolutions{1024};
  std::vector<double> aspect_ratios{1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0};
  std::string crop = "center";
  int64_t crop_seed = 0;
  std::string background = "#ffffff";
  std::string missing_caption = "error";
  std::string bad_files = "error";
  std::string concepts_json = "";
  std::vector<ConceptConfig> concepts;

  template <class V>
  void fields(V& v) {
    v("cache_dir", cache_dir, "folder of cached latents and text embeddings, reused across runs");
    v("resolutions", resolutions,
      "target resolutions (side of the equal-area square, pixels); with several, each image is used at each");
    v("aspect_ratios", aspect_ratios,
      "bucket aspect ratios (long side / short side, each used both ways); [1] = square crops only");
    v("crop", crop, "center, or random (a fixed crop per image, seeded by crop_seed and the sample key)");
    v("crop_seed", crop_seed, "seed of random crops");
    v("background", background, "colour behind transparent pixels: #rrggbb, white, black or gray");
    v("missing_caption", missing_caption, "an image without its .txt: error, or empty (empty caption, with a warning)");
    v("bad_files", bad_files, "unreadable or corrupt images: error (stop before training, listing all) or skip");
    v("concepts_json", concepts_json, "a OneTrainer concepts.json whose concepts are added to [[data.concepts]]");
    v("concepts", concepts, "one table per concept (folder of images)");
  }
};

// `path` when absolute or empty, else base_dir / path (how every path of [data] is read).
std::string resolve_path(const std::string& base_dir, const std::string& path);

// Throws dt::Error (naming `file`) when a setting holds a value outside its choices.
void validate(const DataConfig& config, const std::string& file);

}  // namespace dt
