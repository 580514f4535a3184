#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/hash.h"
#include "data/image.h"
#include "io/atomic_file.h"

namespace dt {
namespace fs = std::filesystem;
namespace {

const std::set<std::string> kImageExtensions = {".jpg", ".jpeg", ".png", ".webp"};
const std::set<std::string> kUnsupportedExtensions = {".gif",  ".bmp", ".tif", ".tiff", ".heic",
                                                      ".heif", ".avif", ".jxl", ".jp2"};

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The message of an error about `path` without the "path: " prefix file_error puts in front.
std::string problem(const Error& e, const std::string& path) {
  std::string m = e.what();
  return m.rfind(path + ": ", 0) == 0 ? m.substr(path.size() + 2) : m;
}

// Non-empty lines, trimmed: each is one caption.
std::vector<std::string> caption_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    const auto first = line.find_first_not_of(" \t\r\f\v"), last = line.find_last_not_of(" \t\r\f\v");
    if (first != std::string::npos) out.push_back(line.substr(first, last - first + 1));
    start = end + 1;
  }
  return out;
}

// Sizes of images already decoded once, by content hash: <cache_dir>/images.json.
class ImageSizes {
 public:
  explicit ImageSizes(std::string path, std::vector<std::string>& warnings) : path_(std::move(path)) {
    if (!fs::exists(path_)) return;
    try {
      auto j = nlohmann::json::parse(read_file(path_));
      for (const auto& [hash, size] : j.at("images").items())
        sizes_[hash] = {size.at(0).get<int64_t>(), size.at(1).get<int64_t>()};
    } catch (const std::exception&) {
      warnings.push_back(path_ + ": unreadable, every image is decoded again");
      sizes_.clear();
    }
  }
  const std::pair<int64_t, int64_t>* find(const std::string& hash) const {
    auto it = sizes_.find(hash);
    return it == sizes_.end() ? nullptr : &it->second;
  }
  void add(const std::string& hash, int64_t w, int64_t h) {
    sizes_[hash] = {w, h};
    changed_ = true;
  }
  void save() const {
    if (!changed_) return;
    nlohmann::json images = nlohmann::json::object();
    for (const auto& [hash, size] : sizes_) images[hash] = {size.first, size.second};
    fs::create_directories(fs::path(path_).parent_path());
    write_file_atomic(path_, nlohmann::json{{"images", images}}.dump() + "\n");
  }

 private:
  std::string path_;
  std::map<std::string, std::pair<int64_t, int64_t>> sizes_;
  bool changed_ = false;
};

struct Scan {
  const DataConfig& config;
  int64_t pixel_multiple;
  ImageSizes& sizes;
  std::vector<BadFile>& bad;
  std::vector<std::string>& warnings;
  std::map<int64_t, std::vector<Bucket>> buckets;  // per resolution

  // Image files of a concept folder, sorted; folders that cannot be read and unsupported image
  // files are reported.
  std::vector<fs::path> list_images(const fs::path& folder, bool recursive) {
    std::vector<fs::path> files;
    std::error_code ec;
    if (!fs::is_directory(folder, ec)) {
      bad.push_back({folder.string(), fs::exists(folder, ec) ? "not a folder" : "folder does not exist"});
      return files;
    }
    std::set<fs::path> visited;  // canonical paths, against symlink loops
    walk(folder, recursive, files, visited);
    std::sort(files.begin(), files.end());
    return files;
  }

  void walk(const fs::path& dir, bool recursive, std::vector<fs::path>& files, std::set<fs::path>& visited) {
    std::error_code ec;
    if (!visited.insert(fs::canonical(dir, ec)).second) return;
    std::vector<fs::path> subfolders;
    fs::directory_iterator it(dir, ec);
    for (fs::directory_iterator end; !ec && it != end; it.increment(ec)) {
      std::error_code e;
      if (it->is_directory(e)) {
        if (recursive) subfolders.push_back(it->path());
        continue;
      }
      const std::string ext = lower(it->path().extension().string());
      if (kImageExtensions.count(ext)) files.push_back(it->path());
      if (kUnsupportedExtensions.count(ext))
        bad.push_back({it->path().string(), "unsupported image format (use JPEG, PNG or WebP)"});
    }
    if (ec) bad.push_back({dir.string(), "cannot read folder: " + ec.message()});
    for (const auto& sub : subfolders) walk(sub, recursive, files, visited);
  }

  // Captions of one image by the concept's caption source; false when the image is bad.
  bool captions_of(const ConceptConfig& c, const fs::path& image, const std::vector<std::string>& concept_lines,
                   std::vector<std::string>& out) {
    if (c.caption_source == "filename") out = {image.stem().string()};
    if (c.caption_source == "text") out = {c.caption};
    if (c.caption_source == "file") out = concept_lines;
    if (c.caption_source == "txt") {
      fs::path txt = image;
      txt.replace_extension(".txt");
      std::error_code ec;
      if (fs::exists(txt, ec)) {
        try {
          out = caption_lines(read_file(txt.string()));
        } catch (const Error& e) {
          bad.push_back({txt.string(), problem(e, txt.string())});
          return false;
        }
        if (out.empty()) warnings.push_back(txt.string() + ": caption file is empty, training with an empty caption");
      } else {
        const std::string& policy = c.missing_caption.empty() ? config.missing_caption : c.missing_caption;
        if (policy == "error") {
          bad.push_back({image.string(), "missing caption file " + txt.filename().string()});
          return false;
        }
        warnings.push_back(image.string() + ": no caption file " + txt.filename().string() +
                           ", training with an empty caption");
      }
    }
    if (out.empty()) out = {""};
    return true;
  }

  void scan_concept(const ConceptConfig& c, const std::string& folder, int index, std::vector<Sample>& samples) {
    std::vector<std::string> concept_lines;
    if (c.caption_source == "file") {
      try {
        concept_lines = caption_lines(read_file(c.caption));
      } catch (const Error& e) {
        bad.push_back({c.caption, problem(e, c.caption)});
        return;
      }
    }
    const std::string name = c.name;
    for (const fs::path& file : list_images(folder, c.include_subfolders)) {
      const std::string path = file.string();
      Sample s;
      s.path = path;
      s.concept_index = index;
      try {
        const std::string bytes = read_file(path);
        s.content_hash = sha256_hex(bytes);
        if (const auto* size = sizes.find(s.content_hash)) {
          s.width = size->first, s.height = size->second;
        } else {
          const Image image = decode_image(bytes, path);
          s.width = image.width, s.height = image.height;
          sizes.add(s.content_hash, s.width, s.height);
        }
      } catch (const Error& e) {
        bad.push_back({path, problem(e, path)});
        continue;
      }
      if (!captions_of(c, file, concept_lines, s.captions)) continue;
      const std::string relative = file.lexically_relative(folder).generic_string();
      for (int64_t resolution : config.resolutions) {
        Sample r = s;
        r.key = name + "/" + relative + (config.resolutions.size() > 1 ? "@" + std::to_string(resolution) : "");
        auto& list = buckets[resolution];
        if (list.empty()) list = make_buckets(resolution, config.aspect_ratios, pixel_multiple);
        r.bucket = nearest_bucket(list, s.width, s.height);
        r.crop = choose_crop(s.width, s.height, r.bucket, config.crop == "random", uint64_t(config.crop_seed), r.key);
        samples.push_back(std::move(r));
      }
    }
  }
};

std::string manifest_hash(const Manifest& m) {
  nlohmann::json j;
  for (const Concept& c : m.concepts)
    j["concepts"].push_back({c.name, c.repeats, c.loss_weight, c.caption_dropout, c.samples});
  for (const Sample& s : m.samples)
    j["samples"].push_back({s.key, s.content_hash, s.concept_index, s.captions, s.width, s.height, s.bucket.width,
                            s.bucket.height, s.bucket.resolution, s.crop.resized_width, s.crop.resized_height,
                            s.crop.x, s.crop.y, s.crop.width, s.crop.height});
  return sha256_hex(j.dump());
}

}  // namespace

const Sample* Manifest::find(const std::string& key) const {
  auto it = std::lower_bound(samples.begin(), samples.end(), key,
                             [](const Sample& s, const std::string& k) { return s.key < k; });
  return it != samples.end() && it->key == key ? &*it : nullptr;
}

Manifest scan_dataset(const DataConfig& config, const std::string& base_dir, int64_t pixel_multiple) {
  Manifest m;
  std::vector<ConceptConfig> concepts = config.concepts;
  for (auto& c : concepts) {
    c.path = resolve_path(base_dir, c.path);
    if (c.caption_source == "file") c.caption = resolve_path(base_dir, c.caption);
  }
  if (!config.concepts_json.empty()) {
    auto imported = read_onetrainer_concepts(resolve_path(base_dir, config.concepts_json), m.warnings);
    concepts.insert(concepts.end(), imported.begin(), imported.end());
  }
  std::erase_if(concepts, [](const ConceptConfig& c) { return !c.enabled; });
  if (concepts.empty()) throw Error("the dataset has no enabled concepts (add [[data.concepts]] or data.concepts_json)");

  ImageSizes sizes((fs::path(resolve_path(base_dir, config.cache_dir)) / "images.json").string(), m.warnings);
  std::vector<Sample> samples;
  Scan scan{config, pixel_multiple, sizes, m.skipped, m.warnings, {}};
  std::set<std::string> names;
  for (auto& c : concepts) {
    if (c.name.empty()) c.name = fs::path(c.path).lexically_normal().filename().string();
    if (c.name.empty()) c.name = fs::path(c.path).lexically_normal().parent_path().filename().string();
    if (!names.insert(c.name).second)
      throw Error("two concepts are named '" + c.name + "' (give them distinct names)");
    scan.scan_concept(c, c.path, int(m.concepts.size()), samples);
    m.concepts.push_back({c.name, c.repeats, c.loss_weight, c.caption_dropout, 0});
  }
  sizes.save();
  if (!m.skipped.empty() && config.bad_files != "skip") {
    std::string list;
    for (const BadFile& b : m.skipped) list += "\n  " + b.path + ": " + b.problem;
    throw Error(std::to_string(m.skipped.size()) + " bad file" + (m.skipped.size() > 1 ? "s" : "") +
                " in the dataset (fix or remove them, or set data.bad_files = \"skip\"):" + list);
  }
  std::sort(samples.begin(), samples.end(), [](const Sample& a, const Sample& b) { return a.key < b.key; });
  for (size_t i = 1; i < samples.size(); ++i)
    if (samples[i].key == samples[i - 1].key) throw Error("two images have the sample key '" + samples[i].key + "'");
  if (samples.empty()) throw Error("the dataset has no usable images");
  for (const Sample& s : samples) m.concepts[size_t(s.concept_index)].samples++;
  for (size_t i = 0; i < m.concepts.size(); ++i)
    if (concepts[i].samples_per_epoch > 0 && m.concepts[i].samples > 0)
      m.concepts[i].repeats = double(concepts[i].samples_per_epoch) / double(m.concepts[i].samples);
  m.samples = std::move(samples);
  m.hash = manifest_hash(m);
  return m;
}

std::vector<int64_t> epoch_samples(const Manifest& manifest, uint64_t seed, int64_t epoch) {
  // Per concept, the samples that get the fractional extra repeat this epoch: the first
  // round(fraction · count) when ordered by a hash of (seed, epoch, key).
  std::vector<std::vector<std::pair<std::string, int64_t>>> by_concept(manifest.concepts.size());
  for (size_t i = 0; i < manifest.samples.size(); ++i) {
    const Sample& s = manifest.samples[i];
    by_concept[size_t(s.concept_index)].push_back(
        {sha256_hex(std::to_string(seed) + ":" + std::to_string(epoch) + ":" + s.key), int64_t(i)});
  }
  std::vector<int64_t> extra(manifest.samples.size(), 0);
  for (size_t c = 0; c < by_concept.size(); ++c) {
    auto& list = by_concept[c];
    const double fraction = manifest.concepts[c].repeats - std::floor(manifest.concepts[c].repeats);
    const auto take = size_t(std::llround(fraction * double(list.size())));
    std::sort(list.begin(), list.end());
    for (size_t k = 0; k < take && k < list.size(); ++k) extra[size_t(list[k].second)] = 1;
  }
  std::vector<int64_t> out;
  for (size_t i = 0; i < manifest.samples.size(); ++i) {
    const auto times = int64_t(std::floor(manifest.concept_of(manifest.samples[i]).repeats)) + extra[i];
    for (int64_t k = 0; k < times; ++k) out.push_back(int64_t(i));
  }
  return out;
}

}  // namespace dt
