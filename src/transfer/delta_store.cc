#include "transfer/delta_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "core/hash.h"
#include "io/atomic_file.h"

namespace dt {
namespace {

static_assert(std::endian::native == std::endian::little, "the store is written in the host byte order");

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kFileMagic[8] = {'D', 'T', 'D', 'E', 'L', 'T', 'A', 'S'};
constexpr uint64_t kFileHeaderBytes = 16;  // magic, u32 version, u32 CRC of the manifest text
constexpr uint32_t kRecordMagic = 0x43455244;  // "DREC"
// magic, bytes, item, seed, σ, checksum, caption index, caption hash, key bytes, dtype, tensor count, rank
constexpr uint64_t kRecordFixedBytes = 4 + 8 + 8 + 8 + 8 + 4 + 4 + 8 + 2 + 1 + 1 + 1;
constexpr int kMaxRank = 8;

uint32_t crc32_of(const void* data, size_t size, uint32_t crc = 0) {
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib takes uInt lengths
    const uInt n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = static_cast<uint32_t>(::crc32(crc, p, n));
    p += n;
    size -= n;
  }
  return crc;
}

int dtype_code(const std::string& dtype) { return dtype == "fp32" ? 0 : 1; }
at::ScalarType dtype_type(int code) { return code == 0 ? at::kFloat : at::kBFloat16; }

template <class T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// A bounds-checked little-endian cursor over one record's bytes.
class Cursor {
 public:
  Cursor(const std::string& bytes, std::string what) : bytes_(bytes), what_(std::move(what)) {}
  template <class T>
  T get() {
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  const char* take(uint64_t n) {
    if (n > bytes_.size() - pos_) throw Error(what_ + " is malformed (its fields overrun its length)");
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  uint64_t left() const { return bytes_.size() - pos_; }

 private:
  const std::string& bytes_;
  std::string what_;
  uint64_t pos_ = 0;
};

uint64_t file_size(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw file_error(path, std::string("stat failed: ") + std::strerror(errno));
  return static_cast<uint64_t>(st.st_size);
}

std::string file_header(const StoreManifest& m) {
  std::string h(kFileMagic, sizeof kFileMagic);
  put<uint32_t>(h, static_cast<uint32_t>(m.version));
  const std::string text = m.to_json();
  put<uint32_t>(h, crc32_of(text.data(), text.size()));
  return h;
}

// Checks records.bin's header against the manifest beside it.
void check_file_header(int fd, const StoreManifest& m, const std::string& path) {
  if (file_size(fd, path) < kFileHeaderBytes) throw file_error(path, "truncated: the file header is incomplete");
  std::string h(kFileHeaderBytes, '\0');
  read_all_at(fd, h.data(), h.size(), 0, path);
  if (h.compare(0, sizeof kFileMagic, kFileMagic, sizeof kFileMagic) != 0)
    throw file_error(path, "not a delta store records file (bad magic)");
  uint32_t version, manifest_crc;
  std::memcpy(&version, h.data() + 8, 4);
  std::memcpy(&manifest_crc, h.data() + 12, 4);
  if (static_cast<int>(version) != kDeltaStoreVersion)
    throw file_error(path, "delta store format version " + std::to_string(version) + " is not supported (this deltatrain reads version " +
                               std::to_string(kDeltaStoreVersion) + ")");
  if (h != file_header(m)) throw file_error(path, "the records belong to another manifest than the manifest.json beside them");
}

// Walks record headers from the file header on. Stops at the end of the file, or at a tail that
// is not a whole record (returned in `torn`, with a reason). Bad magic is corruption: thrown.
struct Walk {
  std::vector<uint64_t> offsets;
  uint64_t end = kFileHeaderBytes;  // end of the last whole record
  std::string torn;                 // why the bytes after `end` are not a record; empty if none
};

Walk walk_records(int fd, const std::string& path) {
  Walk w;
  const uint64_t size = file_size(fd, path);
  while (w.end < size) {
    const uint64_t item = w.offsets.size();
    if (size - w.end < 12) {
      w.torn = "record " + std::to_string(item) + " is truncated (its header is incomplete)";
      break;
    }
    char head[12];
    read_all_at(fd, head, sizeof head, w.end, path);
    uint32_t magic;
    uint64_t bytes;
    std::memcpy(&magic, head, 4);
    std::memcpy(&bytes, head + 4, 8);
    if (magic != kRecordMagic)
      throw file_error(path, "record " + std::to_string(item) + " at byte " + std::to_string(w.end) + " is corrupt (bad magic)");
    if (bytes < kRecordFixedBytes + 4)
      throw file_error(path, "record " + std::to_string(item) + " is corrupt (impossible length " + std::to_string(bytes) + ")");
    if (bytes > size - w.end) {
      w.torn = "record " + std::to_string(item) + " is truncated (it needs " + std::to_string(bytes) + " bytes, the file has " +
               std::to_string(size - w.end) + " left)";
      break;
    }
    w.offsets.push_back(w.end);
    w.end += bytes;
  }
  return w;
}

std::string read_record_bytes(int fd, uint64_t begin, uint64_t end, const std::string& path) {
  std::string bytes(end - begin, '\0');
  read_all_at(fd, bytes.data(), bytes.size(), begin, path);
  return bytes;
}

bool crc_ok(const std::string& bytes) {
  uint32_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
  return crc32_of(bytes.data(), bytes.size() - 4) == stored;
}

std::string serialize(const DeltaRecord& r, const std::string& dtype, bool exact) {
  TORCH_CHECK(r.delta_c.defined(), "delta record without δc");
  TORCH_CHECK(exact == r.delta_u.defined(), "delta record form does not match the store");
  const auto shape = r.delta_c.sizes().vec();
  if (exact) TORCH_CHECK(r.delta_u.sizes().vec() == shape, "δu and δc differ in shape");
  if (r.sample_key.size() > std::numeric_limits<uint16_t>::max()) throw Error("sample key too long: " + r.sample_key);
  const at::ScalarType type = dtype_type(dtype_code(dtype));
  const uint64_t total = record_bytes(r.sample_key.size(), shape, dtype, exact);
  std::string out;
  out.reserve(total);
  put<uint32_t>(out, kRecordMagic);
  put<uint64_t>(out, total);
  put<uint64_t>(out, r.item);
  put<uint64_t>(out, r.noise_seed);
  put<double>(out, r.sigma);
  put<uint32_t>(out, r.latent_checksum);
  put<int32_t>(out, r.caption_index);
  put<uint64_t>(out, r.caption_hash);
  put<uint16_t>(out, static_cast<uint16_t>(r.sample_key.size()));
  put<uint8_t>(out, static_cast<uint8_t>(dtype_code(dtype)));
  put<uint8_t>(out, exact ? 2 : 1);
  put<uint8_t>(out, static_cast<uint8_t>(shape.size()));
  for (int64_t d : shape) put<int64_t>(out, d);
  out += r.sample_key;
  for (const at::Tensor* t : {&r.delta_c, &r.delta_u}) {
    if (!t->defined()) continue;
    at::Tensor c = t->detach().to(at::kCPU).to(type).contiguous();
    out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  }
  put<uint32_t>(out, crc32_of(out.data(), out.size()));
  TORCH_CHECK(out.size() == total, "delta record size mismatch");
  return out;
}

}  // namespace

// ---- manifest ----------------------------------------------------------------------------------

std::string StoreManifest::to_json() const {
  json j = json::object();  // nlohmann sorts keys: the text is canonical
  j["format"] = "deltatrain delta store";
  j["version"] = version;
  j["plan_hash"] = plan_hash;
  j["count"] = count;
  j["family"] = family;
  j["teacher_model"] = teacher_model;
  j["teacher_lora"] = teacher_lora;
  j["latent_space"] = latent_space;
  j["dtype"] = dtype;
  j["compute_dtype"] = compute_dtype;
  j["form"] = exact ? "exact" : "approximate";
  j["noise_offset"] = noise_offset;
  j["noise_perturbation"] = noise_perturbation;
  return j.dump(2) + "\n";
}

StoreManifest StoreManifest::from_json(const std::string& text, const std::string& path) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("format") || j["format"] != "deltatrain delta store")
    throw file_error(path, "not a delta store manifest");
  StoreManifest m;
  try {
    m.version = j.at("version").get<int>();
    if (m.version != kDeltaStoreVersion)
      throw file_error(path, "delta store format version " + std::to_string(m.version) +
                                 " is not supported (this deltatrain reads version " + std::to_string(kDeltaStoreVersion) + ")");
    m.plan_hash = j.at("plan_hash").get<std::string>();
    m.count = j.at("count").get<uint64_t>();
    m.family = j.at("family").get<std::string>();
    m.teacher_model = j.at("teacher_model").get<std::string>();
    m.teacher_lora = j.at("teacher_lora").get<std::string>();
    m.latent_space = j.at("latent_space").get<std::string>();
    m.dtype = j.at("dtype").get<std::string>();
    m.compute_dtype = j.at("compute_dtype").get<std::string>();
    const std::string form = j.at("form").get<std::string>();
    if (form != "exact" && form != "approximate") throw file_error(path, "form must be \"exact\" or \"approximate\"");
    m.exact = form == "exact";
    m.noise_offset = j.at("noise_offset").get<double>();
    m.noise_perturbation = j.at("noise_perturbation").get<double>();
  } catch (const json::exception& e) {
    throw file_error(path, std::string("malformed manifest: ") + e.what());
  }
  if (m.dtype != "bf16" && m.dtype != "fp32") throw file_error(path, "dtype must be \"bf16\" or \"fp32\", not \"" + m.dtype + "\"");
  return m;
}

// ---- helpers -----------------------------------------------------------------------------------

uint32_t latent_checksum(const at::Tensor& latent) {
  at::Tensor c = latent.to(at::kCPU).contiguous();
  std::string head = c10::toString(c.scalar_type());
  for (int64_t d : c.sizes()) head.append(",").append(std::to_string(d));
  uint32_t crc = crc32_of(head.data(), head.size());
  return crc32_of(c.data_ptr(), c.numel() * c.element_size(), crc);
}

uint64_t caption_hash(const std::string& caption) {
  Sha256 h;
  h.update(caption);
  const std::array<uint8_t, 32> d = h.digest();
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | d[i];
  return v;
}

uint64_t record_bytes(size_t key_bytes, const std::vector<int64_t>& shape, const std::string& dtype, bool exact) {
  uint64_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<uint64_t>(d);
  const uint64_t element = dtype == "fp32" ? 4 : 2;
  return kRecordFixedBytes + 8 * shape.size() + key_bytes + numel * element * (exact ? 2 : 1) + 4;
}

void check_disk_space(const std::string& dir, uint64_t needed_bytes, uint64_t records) {
  std::error_code ec;
  fs::path probe = dir;
  while (!probe.empty() && !fs::exists(probe, ec)) probe = probe.parent_path();
  const fs::space_info space = fs::space(probe.empty() ? fs::path(".") : probe, ec);
  if (ec) throw file_error(dir, "cannot read the free disk space: " + ec.message());
  auto mib = [](uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB"; };
  std::printf("%llu records to write to %s: %s needed, %s free on its disk\n", static_cast<unsigned long long>(records),
              dir.c_str(), mib(needed_bytes).c_str(), mib(space.available).c_str());
  std::fflush(stdout);
  if (space.available < needed_bytes)
    throw file_error(dir, "not enough disk space for the store: it needs " + mib(needed_bytes) + ", the disk has " +
                              mib(space.available) + " free");
}

// ---- writer ------------------------------------------------------------------------------------

namespace {

std::string shard_path(const std::string& dir, int rank, int count) {
  return (fs::path(dir) / ("records.rank" + std::to_string(rank) + "-of-" + std::to_string(count) + ".bin")).string();
}

// Refuses to continue records that another number of ranks wrote: their batches were divided
// otherwise.
void check_rank_count(const std::string& dir, int count) {
  const std::string suffix = "-of-" + std::to_string(count) + ".bin";
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool shard = name.rfind("records.rank", 0) == 0;
    const bool other = shard ? (count == 1 || name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
                             : (name == "records.bin" && count > 1);
    if (other)
      throw file_error(entry.path().string(), std::string("was written by a record on ") +
                                                  (shard ? "another number of ranks" : "one process") + " than this one (" +
                                                  std::to_string(count) + "): resume it with as many ranks as began it");
  }
}

// The item of the record at `offset` (the field after its magic and length).
uint64_t item_at(int fd, uint64_t offset, const std::string& path) {
  uint64_t item = 0;
  read_all_at(fd, &item, sizeof item, offset + 12, path);
  return item;
}

}  // namespace

DeltaStoreWriter::DeltaStoreWriter(const std::string& dir, const StoreManifest& manifest, bool resume, StoreShard shard)
    : dir_(dir),
      path_(shard.count == 1 ? (fs::path(dir) / "records.bin").string() : shard_path(dir, shard.rank, shard.count)),
      manifest_(manifest),
      shard_(shard.count > 1) {
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  const bool exists = fs::exists(manifest_path);
  if (exists && !resume && !(shard_ && shard.rank > 0))
    throw file_error(dir, "a delta store is already here; resume it (--resume) or choose another store path");
  if (exists) {
    const StoreManifest old = StoreManifest::from_json(read_file(manifest_path), manifest_path);
    auto differ = [&](const char* what, const std::string& was, const std::string& now, const char* hint) {
      if (was != now)
        throw file_error(manifest_path, std::string(what) + " differs: the store has " + was + ", this run has " + now + " (" + hint + ")");
    };
    differ("the plan", old.plan_hash, manifest.plan_hash, "data, seed, epochs, batch or timestep settings changed since recording");
    differ("the record count", std::to_string(old.count), std::to_string(manifest.count), "the plan changed");
    differ("the teacher model", old.teacher_model, manifest.teacher_model, "another Base checkpoint");
    differ("the teacher LoRA", old.teacher_lora, manifest.teacher_lora, "another LoRA file");
    differ("the latent space", old.latent_space, manifest.latent_space, "another VAE or latent normalization");
    differ("the dtype", old.dtype, manifest.dtype, "transfer.store_dtype changed");
    differ("the compute dtype", old.compute_dtype, manifest.compute_dtype, "transfer.record_dtype or model.dtype changed");
    differ("the form", old.exact ? "exact" : "approximate", manifest.exact ? "exact" : "approximate", "transfer.exact changed");
    differ("the family", old.family, manifest.family, "another model family");
    if (old.to_json() != manifest.to_json()) throw file_error(manifest_path, "the manifest differs from this run's");
  } else if (shard_ && shard.rank > 0) {
    throw file_error(dir, "no manifest.json: a shard's writer joins the store its rank 0 created");
  } else {
    fs::create_directories(dir);
    write_file_atomic(manifest_path, manifest.to_json());
  }
  check_rank_count(dir, shard.count);

  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw file_error(path_, std::string("cannot open for writing: ") + std::strerror(errno));
  if (file_size(fd_, path_) < kFileHeaderBytes) {  // new, or killed before its header was whole
    if (::ftruncate(fd_, 0) != 0) throw file_error(path_, std::string("truncate failed: ") + std::strerror(errno));
    const std::string header = file_header(manifest_);
    write_all(fd_, header.data(), header.size(), path_);
  }
  check_file_header(fd_, manifest_, path_);

  Walk w = walk_records(fd_, path_);
  // The last whole record may still be torn (its length reached the disk, not all its bytes).
  if (w.torn.empty() && !w.offsets.empty() && !crc_ok(read_record_bytes(fd_, w.offsets.back(), w.end, path_))) {
    w.end = w.offsets.back();
    w.offsets.pop_back();
  }
  for (size_t i = 0; i + 1 < w.offsets.size(); ++i)  // records before the last must be sound
    if (!crc_ok(read_record_bytes(fd_, w.offsets[i], w.offsets[i + 1], path_)))
      throw file_error(path_, "record " + std::to_string(i) + " is corrupt (CRC mismatch); the store cannot be resumed");
  const uint64_t size = file_size(fd_, path_);
  if (size > w.end) {
    if (::ftruncate(fd_, static_cast<off_t>(w.end)) != 0)
      throw file_error(path_, std::string("cannot cut the torn tail: ") + std::strerror(errno));
    cut_ = size - w.end;
  }
  done_ = w.offsets.size();
  next_item_ = w.offsets.empty() ? 0 : item_at(fd_, w.offsets.back(), path_) + 1;
  end_ = w.end;
  if (done_ > manifest_.count) throw file_error(path_, "holds more records than the plan has items");
  if (::lseek(fd_, static_cast<off_t>(end_), SEEK_SET) < 0) throw file_error(path_, std::string("seek failed: ") + std::strerror(errno));
}

DeltaStoreWriter::~DeltaStoreWriter() {
  if (fd_ >= 0) {
    ::fsync(fd_);
    ::close(fd_);
  }
}

void DeltaStoreWriter::append(const DeltaRecord& record) {
  if (shard_ ? record.item < next_item_ : record.item != next_item_)
    throw Error("delta store: record for item " + std::to_string(record.item) + " appended where item " +
                std::to_string(next_item_) + (shard_ ? " or later" : "") + " is due");
  if (record.item >= manifest_.count) throw Error("delta store: more records than the plan has items");
  const std::string bytes = serialize(record, manifest_.dtype, manifest_.exact);
  write_all(fd_, bytes.data(), bytes.size(), path_);
  end_ += bytes.size();
  ++done_;
  next_item_ = record.item + 1;
}

void merge_record_shards(const std::string& dir, const StoreManifest& manifest, int shards) {
  struct Shard {
    std::string path;
    int fd = -1;
    std::vector<uint64_t> offsets;  // one past the last: the end of its last record
    size_t next = 0;
    uint64_t item = 0;  // of record `next`
  };
  std::vector<Shard> all(static_cast<size_t>(shards));
  auto close_all = [&] {
    for (Shard& s : all)
      if (s.fd >= 0) ::close(s.fd);
  };
  const std::string target = (fs::path(dir) / "records.bin").string();
  try {
    for (int r = 0; r < shards; ++r) {
      Shard& s = all[static_cast<size_t>(r)];
      s.path = shard_path(dir, r, shards);
      s.fd = ::open(s.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (s.fd < 0) throw file_error(s.path, std::string("cannot open: ") + std::strerror(errno));
      check_file_header(s.fd, manifest, s.path);
      Walk w = walk_records(s.fd, s.path);
      if (!w.torn.empty()) throw file_error(s.path, w.torn + "; resume transfer record to repair it");
      s.offsets = std::move(w.offsets);
      s.offsets.push_back(w.end);
      if (s.offsets.size() > 1) s.item = item_at(s.fd, s.offsets[0], s.path);
    }
    AtomicFile out(target);  // whole, or not there
    const std::string header = file_header(manifest);
    out.write(header.data(), header.size());
    for (uint64_t item = 0; item < manifest.count; ++item) {
      // The shard whose next record is `item`: the shards hold disjoint items, each in order.
      Shard* from = nullptr;
      for (Shard& s : all)
        if (s.next + 1 < s.offsets.size() && s.item == item) from = &s;
      if (!from) throw file_error(dir, "the shards of a record on " + std::to_string(shards) + " ranks lack item " + std::to_string(item) + " (resume transfer record to finish it)");
      const std::string bytes = read_record_bytes(from->fd, from->offsets[from->next], from->offsets[from->next + 1], from->path);
      if (!crc_ok(bytes)) throw file_error(from->path, "record of item " + std::to_string(item) + " is corrupt (CRC mismatch)");
      out.write(bytes.data(), bytes.size());
      ++from->next;
      if (from->next + 1 < from->offsets.size()) from->item = item_at(from->fd, from->offsets[from->next], from->path);
    }
    for (const Shard& s : all)
      if (s.next + 1 != s.offsets.size()) throw file_error(s.path, "holds records beyond the plan's items or out of order");
    out.commit();
  } catch (...) {
    close_all();
    throw;
  }
  close_all();
  for (const Shard& s : all) fs::remove(s.path);
}

void DeltaStoreWriter::sync() {
  if (::fsync(fd_) != 0) throw file_error(path_, std::string("fsync failed: ") + std::strerror(errno));
}

// ---- reader ------------------------------------------------------------------------------------

std::shared_ptr<DeltaStore> DeltaStore::open(const std::string& dir) {
  std::shared_ptr<DeltaStore> s(new DeltaStore());
  s->dir_ = dir;
  s->path_ = (fs::path(dir) / "records.bin").string();
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(manifest_path)) throw file_error(dir, "no delta store here (manifest.json missing); run transfer record first");
  s->manifest_ = StoreManifest::from_json(read_file(manifest_path), manifest_path);
  s->fd_ = ::open(s->path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (s->fd_ < 0) throw file_error(s->path_, std::string("cannot open: ") + std::strerror(errno));
  check_file_header(s->fd_, s->manifest_, s->path_);
  Walk w = walk_records(s->fd_, s->path_);
  if (!w.torn.empty()) throw file_error(s->path_, w.torn + "; resume transfer record to repair it");
  if (w.offsets.size() != s->manifest_.count)
    throw file_error(s->path_, "incomplete: " + std::to_string(w.offsets.size()) + " of " + std::to_string(s->manifest_.count) +
                                   " records; resume transfer record to finish it");
  s->offsets_ = std::move(w.offsets);
  s->offsets_.push_back(w.end);
  return s;
}

DeltaStore::~DeltaStore() {
  if (fd_ >= 0) ::close(fd_);
}

DeltaRecord DeltaStore::read(uint64_t item) const {
  if (item >= size()) throw Error("delta store: no record " + std::to_string(item) + " (the store has " + std::to_string(size()) + ")");
  const std::string bytes = read_record_bytes(fd_, offsets_[item], offsets_[item + 1], path_);
  if (!crc_ok(bytes)) throw Error(path_ + ": record " + std::to_string(item) + " is corrupt (CRC mismatch)");
  return parse(item, bytes, true);
}

DeltaRecord DeltaStore::read_info(uint64_t item) const {
  if (item >= size()) throw Error("delta store: no record " + std::to_string(item) + " (the store has " + std::to_string(size()) + ")");
  const uint64_t prefix = kRecordFixedBytes + 8 * kMaxRank + std::numeric_limits<uint16_t>::max();
  const uint64_t end = std::min(offsets_[item + 1], offsets_[item] + prefix);
  return parse(item, read_record_bytes(fd_, offsets_[item], end, path_), false);
}

DeltaRecord DeltaStore::parse(uint64_t item, const std::string& bytes, bool tensors) const {
  const std::string what = path_ + ": record " + std::to_string(item);
  Cursor c(bytes, what);
  c.take(12);  // magic and length, checked by the walk
  DeltaRecord r;
  r.item = c.get<uint64_t>();
  r.noise_seed = c.get<uint64_t>();
  r.sigma = c.get<double>();
  r.latent_checksum = c.get<uint32_t>();
  r.caption_index = c.get<int32_t>();
  r.caption_hash = c.get<uint64_t>();
  const uint16_t key_bytes = c.get<uint16_t>();
  const uint8_t dtype = c.get<uint8_t>(), count = c.get<uint8_t>(), rank = c.get<uint8_t>();
  if (r.item != item) throw Error(what + " is out of place (it holds item " + std::to_string(r.item) + ")");
  if (dtype != dtype_code(manifest_.dtype) || count != (manifest_.exact ? 2 : 1) || rank > kMaxRank)
    throw Error(what + " does not match the manifest (dtype, form or rank)");
  std::vector<int64_t> shape(rank);
  uint64_t numel = 1;
  for (auto& d : shape) {
    d = c.get<int64_t>();
    if (d <= 0 || static_cast<uint64_t>(d) > (1ull << 32) || numel > (1ull << 40) / static_cast<uint64_t>(d))
      throw Error(what + " has an impossible shape");
    numel *= static_cast<uint64_t>(d);
  }
  r.sample_key.assign(c.take(key_bytes), key_bytes);
  if (!tensors) return r;
  const at::ScalarType type = dtype_type(dtype);
  const uint64_t tensor_bytes = numel * static_cast<uint64_t>(c10::elementSize(type));
  if (c.left() != tensor_bytes * count + 4) throw Error(what + " is malformed (its length does not fit its shape)");
  for (int i = 0; i < count; ++i) {
    const char* p = c.take(tensor_bytes);
    at::Tensor t = torch::empty(shape, at::TensorOptions().dtype(type));
    std::memcpy(t.data_ptr(), p, tensor_bytes);
    (i == 0 ? r.delta_c : r.delta_u) = t.to(at::kFloat);
  }
  return r;
}

void DeltaStore::check_latent_space(const std::string& student_latent_space) const {
  if (manifest_.latent_space != student_latent_space)
    throw file_error(dir_, "latent space differs: the store was recorded in " + manifest_.latent_space + ", the student uses " +
                               student_latent_space + " (teacher and student must share the VAE and latent normalization)");
}

}  // namespace dt
