// On-disk caches of what training consumes: VAE latents per (image bytes, bucket, crop, VAE) and
// text features per (caption, text encoder identity). One safetensors file per entry, written
// atomically, named by the SHA-256 of its key and holding the key in its metadata; an entry whose
// file is unreadable or whose key does not match is recomputed (with a warning).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

#include "data/data_config.h"
#include "data/dataset.h"
#include "models/family.h"

namespace dt {

// The spaces the cache entries belong to: Autoencoder::identity and TextEncoder::identity, each
// with the compute dtype appended ("...|BFloat16"), as fill_cache returns them.
struct CacheIdentities {
  std::string vae, text;
};

// Where the models come from when something must be computed.
struct CacheModels {
  const Family* family = nullptr;
  std::string vae_path;           // as Family::load_vae takes it
  std::string text_encoder_path;  // as Family::load_text_encoder takes it
  LoadOptions options;
};

struct FillStats {
  int64_t latents_computed = 0, latents_reused = 0, texts_computed = 0, texts_reused = 0;
};

// Makes sure every latent of the manifest and every caption's features (plus the empty caption's,
// the unconditional input) are cached. Each model is loaded only when something is missing (or
// its identity is not known for these model files yet), used, and freed before the next one
// loads. Shows a progress bar per model when `progress` is set. Returns the identities the
// entries were looked up under. Training calls it first: with everything cached and the model
// files unchanged it loads nothing and only checks the entries.
CacheIdentities fill_cache(const Manifest& manifest, const DataConfig& config, const std::string& base_dir,
                           const CacheModels& models, bool progress = true, FillStats* stats = nullptr);

// Read access for training. Throws dt::Error when an entry is missing (run `deltatrain cache`).
class DataCache {
 public:
  DataCache(const DataConfig& config, const std::string& base_dir, CacheIdentities identities);
  // x0 of a sample in the family's normalized layout, [C, h, w] float, on the CPU.
  at::Tensor latent(const Sample& sample) const;
  // The features of one caption (Sample::captions[i], or "" for the unconditional input).
  TextFeatures text(const std::string& caption) const;
  const CacheIdentities& identities() const { return identities_; }

 private:
  std::string dir_;
  std::string background_;  // as configured: part of the latent key
  CacheIdentities identities_;
};

// The bucket-sized RGB image a sample's latent is computed from: decode, upright, composite on
// the background, resize, crop.
Image load_training_image(const Sample& sample, Rgb background);

}  // namespace dt
