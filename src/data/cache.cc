#include "data/cache.h"

#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/hash.h"
#include "core/progress.h"
#include "data/resize.h"
#include "dist/group.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

// Bump when the image preparation (decode, composite, resize) changes its pixels.
constexpr const char* kImagePipeline = "lanczos3-v1";

std::string latent_key(const Sample& s, const std::string& background, const std::string& vae) {
  const Crop& c = s.crop;
  return nlohmann::json{{"image", s.content_hash},
                        {"bucket", {s.bucket.width, s.bucket.height}},
                        {"crop", {c.resized_width, c.resized_height, c.x, c.y, c.width, c.height}},
                        {"background", background},
                        {"pipeline", kImagePipeline},
                        {"vae", vae}}
      .dump();
}

std::string text_key(const std::string& caption, const std::string& encoder) {
  return nlohmann::json{{"caption", caption}, {"encoder", encoder}}.dump();
}

std::string tensor_hash(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return sha256_hex(std::string_view(static_cast<const char*>(c.data_ptr()), size_t(c.nbytes())));
}

// Entries live at <dir>/<kind>/<h[0:2]>/<h>.safetensors, h = SHA-256 of the key.
std::string entry_path(const std::string& dir, const std::string& kind, const std::string& key) {
  const std::string h = sha256_hex(key);
  return (fs::path(dir) / kind / h.substr(0, 2) / (h + ".safetensors")).string();
}

enum class Entry { kMissing, kValid, kCorrupt };

// Reads an entry; `problem` says what is wrong with a corrupt one.
Entry read_entry(const std::string& path, const std::string& key, at::Tensor* out, std::string& problem) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Entry::kMissing;
  try {
    auto file = SafetensorsFile::open(path);
    auto k = file->metadata().find("key"), h = file->metadata().find("sha256");
    if (k == file->metadata().end() || k->second != key) {
      problem = "holds another key";
      return Entry::kCorrupt;
    }
    if (!file->contains("value") || h == file->metadata().end()) {
      problem = "incomplete entry";
      return Entry::kCorrupt;
    }
    at::Tensor value = file->get("value");
    if (tensor_hash(value) != h->second) {
      problem = "checksum mismatch";
      return Entry::kCorrupt;
    }
    if (out) *out = value;
    return Entry::kValid;
  } catch (const Error& e) {
    problem = e.what();
    return Entry::kCorrupt;
  }
}

void write_entry(const std::string& path, const std::string& key, const at::Tensor& value) {
  const at::Tensor v = value.detach().to(at::kCPU, at::kFloat).contiguous();
  fs::create_directories(fs::path(path).parent_path());
  write_safetensors(path, {{"value", v}}, {{"key", key}, {"sha256", tensor_hash(v)}});
}

// A cheap fingerprint of a model's files (names, sizes, modification times), under which the
// identity a loaded model reported is remembered, so an unchanged model need not be loaded to
// know that its cache entries are complete.
std::string source_fingerprint(const std::string& kind, const std::string& family, const std::string& path,
                               c10::ScalarType dtype) {
  std::vector<std::string> lines;
  std::error_code ec;
  auto add = [&](const fs::path& p) {
    const auto size = fs::file_size(p, ec);
    const auto time = fs::last_write_time(p, ec).time_since_epoch().count();
    lines.push_back(p.lexically_relative(path).generic_string() + " " + std::to_string(size) + " " +
                    std::to_string(time));
  };
  if (fs::is_directory(path, ec)) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file(ec)) add(it->path());
  } else {
    add(path);
  }
  std::sort(lines.begin(), lines.end());
  std::string all = kind + "\n" + family + "\n" + fs::absolute(path).lexically_normal().string() + "\n" +
                    c10::toString(dtype) + "\n";
  for (const auto& l : lines) all += l + "\n";
  return sha256_hex(all);
}

class KnownIdentities {
 public:
  explicit KnownIdentities(std::string path) : path_(std::move(path)) {
    try {
      if (fs::exists(path_)) map_ = nlohmann::json::parse(read_file(path_)).get<std::map<std::string, std::string>>();
    } catch (const std::exception&) {
      std::cerr << "warning: " << path_ << ": unreadable, models will be loaded to identify them\n";
    }
  }
  std::string find(const std::string& fingerprint) const {
    auto it = map_.find(fingerprint);
    return it == map_.end() ? "" : it->second;
  }
  void set(const std::string& fingerprint, const std::string& identity) {
    map_[fingerprint] = identity;
    fs::create_directories(fs::path(path_).parent_path());
    write_file_atomic(path_, nlohmann::json(map_).dump(1) + "\n");
  }

 private:
  std::string path_;
  std::map<std::string, std::string> map_;
};

struct Job {
  std::string path, key;
  const Sample* sample = nullptr;  // latents
  std::string caption;             // texts
};

// Splits work into entries to compute and entries already valid; corrupt ones are recomputed.
// Every size-th job from position rank on: this rank's share of the work of all ranks.
std::vector<Job> share_of(std::vector<Job> jobs, const dist::Group& ranks) {
  std::vector<Job> share;
  for (size_t i = static_cast<size_t>(ranks.rank()); i < jobs.size(); i += static_cast<size_t>(ranks.size()))
    share.push_back(std::move(jobs[i]));
  return share;
}

std::vector<Job> missing(std::vector<Job> jobs, int64_t& reused) {
  std::vector<Job> out;
  for (auto& j : jobs) {
    std::string problem;
    const Entry e = read_entry(j.path, j.key, nullptr, problem);
    if (e == Entry::kValid) {
      ++reused;
      continue;
    }
    if (e == Entry::kCorrupt) std::cerr << "warning: " << j.path << ": corrupt cache entry (" << problem << "), recomputing\n";
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<Job> latent_jobs(const Manifest& m, const std::string& dir, const std::string& background,
                             const std::string& vae) {
  std::vector<Job> jobs;
  std::set<std::string> seen;
  for (const Sample& s : m.samples) {
    Job j;
    j.key = latent_key(s, background, vae);
    j.path = entry_path(dir, "latents", j.key);
    j.sample = &s;
    if (seen.insert(j.key).second) jobs.push_back(std::move(j));
  }
  return jobs;
}

std::vector<Job> text_jobs(const Manifest& m, const std::string& dir, const std::string& encoder) {
  std::set<std::string> captions = {""};
  for (const Sample& s : m.samples) captions.insert(s.captions.begin(), s.captions.end());
  std::vector<Job> jobs;
  for (const auto& c : captions) {
    Job j;
    j.caption = c;
    j.key = text_key(c, encoder);
    j.path = entry_path(dir, "text", j.key);
    jobs.push_back(std::move(j));
  }
  return jobs;
}

std::string with_dtype(const std::string& identity, c10::ScalarType dtype) {
  return identity + "|" + c10::toString(dtype);
}

// Fills the entries of one cache kind ("latent", "text"); returns the identity they are stored
// under. The model is loaded only when an entry is missing or its identity is not known for these
// files yet, and freed on return. In a data-parallel run every rank first lists what is missing
// (all before any writes: the same list) and computes its share; after all have, each computes
// what it still does not see (another machine's share, when the cache folder is not shared).
template <class Model, class Load, class Jobs, class Encode>
std::string fill_entries(const std::string& kind, const std::string& fingerprint, c10::ScalarType dtype,
                         KnownIdentities& known, bool progress, int64_t& computed, int64_t& reused, const Load& load,
                         const Jobs& jobs, const Encode& encode) {
  const dist::Group& ranks = dist::world();
  const int passes = ranks.size() > 1 ? 2 : 1;
  std::string identity;
  for (int pass = 0; pass < passes; ++pass) {
    const bool share = passes == 2 && pass == 0;
    int64_t reused_again = 0;  // a second pass's look-ups are not counted
    int64_t& counted = pass == 0 ? reused : reused_again;
    identity = known.find(fingerprint);
    std::vector<Job> todo;
    if (!identity.empty()) todo = missing(jobs(identity), counted);
    std::unique_ptr<Model> model;
    if (identity.empty() || !todo.empty()) {
      model = load();
      const std::string loaded = with_dtype(model->identity(), dtype);
      if (loaded != identity) {
        counted = 0;
        identity = loaded;
        todo = missing(jobs(identity), counted);
      }
    }
    if (share) {
      ranks.barrier("the listing of the " + kind + " cache's missing entries");
      todo = share_of(std::move(todo), ranks);
    }
    if (model) {
      std::optional<Progress> bar;
      if (progress && !todo.empty()) bar.emplace(kind == "latent" ? "latents" : kind, int64_t(todo.size()));
      for (const Job& j : todo) {
        write_entry(j.path, j.key, encode(*model, j));
        ++computed;
        if (bar) bar->advance();
      }
      known.set(fingerprint, identity);
    }
    if (share) ranks.barrier("the wait for every rank's share of the " + kind + " cache");
  }
  return identity;
}

}  // namespace

Image load_training_image(const Sample& sample, Rgb background) {
  const std::string bytes = read_file(sample.path);
  if (sha256_hex(bytes) != sample.content_hash)
    throw file_error(sample.path, "changed since the dataset was scanned; scan again");
  const Image upright = decode_image(bytes, sample.path);
  if (upright.width != sample.width || upright.height != sample.height)
    throw file_error(sample.path, "decoded size differs from the scanned size");
  return resize_crop(composite(upright, background), sample.crop);
}

CacheIdentities fill_cache(const Manifest& manifest, const DataConfig& config, const std::string& base_dir,
                           const CacheModels& models, bool progress, FillStats* stats) {
  if (!models.family) throw Error("fill_cache: no model family");
  const std::string dir = resolve_path(base_dir, config.cache_dir);
  const Rgb background = parse_color(config.background);
  KnownIdentities known((fs::path(dir) / "models.json").string());
  FillStats local;
  FillStats& st = stats ? *stats : local;
  c10::NoGradGuard no_grad;
  const std::string family = models.family->name();
  const c10::ScalarType dtype = models.options.compute_dtype;
  CacheIdentities ids;

  ids.vae = fill_entries<Autoencoder>(
      "latent", source_fingerprint("vae", family, models.vae_path, dtype), dtype, known, progress, st.latents_computed,
      st.latents_reused, [&] { return models.family->load_vae(models.vae_path, models.options); },
      [&](const std::string& identity) { return latent_jobs(manifest, dir, config.background, identity); },
      [&](Autoencoder& vae, const Job& j) {
        at::Tensor image = image_to_tensor(load_training_image(*j.sample, background)).unsqueeze(0);
        return vae.encode(image.to(models.options.device)).squeeze(0);
      });
  // After the VAE is freed. One caption per forward: an entry is then the caption's own encoding,
  // whatever else is cached beside it (a row of a batched GEMM need not equal the unbatched
  // product bitwise).
  ids.text = fill_entries<TextEncoder>(
      "text", source_fingerprint("text", family, models.text_encoder_path, dtype), dtype, known, progress,
      st.texts_computed, st.texts_reused,
      [&] { return models.family->load_text_encoder(models.text_encoder_path, models.options); },
      [&](const std::string& identity) { return text_jobs(manifest, dir, identity); },
      [&](TextEncoder& encoder, const Job& j) {
        std::vector<TextFeatures> features = encoder.encode({j.caption});
        if (features.size() != 1) throw Error("text encoder returned the wrong number of features");
        return features[0];
      });
  return ids;
}

DataCache::DataCache(const DataConfig& config, const std::string& base_dir, CacheIdentities identities)
    : dir_(resolve_path(base_dir, config.cache_dir)), background_(config.background), identities_(std::move(identities)) {}

at::Tensor DataCache::latent(const Sample& sample) const {
  const std::string key = latent_key(sample, background_, identities_.vae);
  const std::string path = entry_path(dir_, "latents", key);
  at::Tensor value;
  std::string problem;
  switch (read_entry(path, key, &value, problem)) {
    case Entry::kValid: return value;
    case Entry::kMissing: throw Error("no cached latent for sample '" + sample.key + "' (run deltatrain cache)");
    case Entry::kCorrupt: break;
  }
  throw file_error(path, "corrupt cached latent of sample '" + sample.key + "' (" + problem + "; run deltatrain cache)");
}

TextFeatures DataCache::text(const std::string& caption) const {
  const std::string key = text_key(caption, identities_.text);
  const std::string path = entry_path(dir_, "text", key);
  at::Tensor value;
  std::string problem;
  switch (read_entry(path, key, &value, problem)) {
    case Entry::kValid: return value;
    case Entry::kMissing: throw Error("no cached text features for caption '" + caption + "' (run deltatrain cache)");
    case Entry::kCorrupt: break;
  }
  throw file_error(path, "corrupt cached text features (" + problem + "; run deltatrain cache)");
}

}  // namespace dt
