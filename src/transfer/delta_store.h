// The delta store: what step 1 (record) hands to step 2 (learn). A folder holding
//
//   manifest.json  what the records mean and where they came from (written once, atomically);
//   records.bin    a file header, then one record per plan item, in plan order, append-only.
//
// A record is self-describing and self-checking (little-endian):
//
//   u32 magic "DREC" | u64 record bytes (all of it, CRC included) | u64 item | u64 noise seed
//   f64 σ | u32 latent checksum | i32 caption index | u64 caption hash | u16 key bytes | u8 dtype
//   u8 tensor count | u8 rank | i64 shape[rank] | key | δc | [δu] | u32 CRC-32 of every byte before it
//
// A record on several ranks writes shards first: each rank appends the records of its batches to
// records.rank<r>-of-<n>.bin (the same format), and merge_record_shards() then writes records.bin
// from them in item order — byte for byte the file one process writes — and removes them.
//
// Appending is crash-safe: a record is written with one write() at the end of the file, and a
// store that was killed mid-record has a torn tail that reopening for append detects and cuts,
// so an interrupted store ends byte-identical to an uninterrupted one. Reading is random access
// through an index of record offsets built by walking the record headers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>

namespace dt {

constexpr int kDeltaStoreVersion = 2;  // 2: records carry their caption hash

struct StoreManifest {
  int version = kDeltaStoreVersion;
  std::string plan_hash;       // the plan the records follow, item by item
  uint64_t count = 0;          // records in a complete store (= plan items)
  std::string family;          // the teacher's model family
  std::string teacher_model;   // content identity of the teacher weights
  std::string teacher_lora;    // content hash of the teacher LoRA file
  std::string latent_space;    // VAE identity + latent normalization
  std::string dtype = "bf16";  // storage of δ: "bf16" or "fp32"
  std::string compute_dtype = "fp32";  // the teacher's compute dtype when δ was recorded
  bool exact = false;          // records hold δu as well as δc
  double noise_offset = 0;        // the plan's extra noise: part of ε, so learn must use the same
  double noise_perturbation = 0;

  std::string to_json() const;  // canonical text: the same manifest always gives the same bytes
  // Throws dt::Error naming `path` for malformed text or an unsupported version.
  static StoreManifest from_json(const std::string& text, const std::string& path);
};

struct DeltaRecord {
  uint64_t item = 0;            // index in the plan
  std::string sample_key;       // the sample in the dataset cache
  int32_t caption_index = 0;    // which of the sample's captions was c (−1: the empty caption)
  uint64_t caption_hash = 0;    // of that caption's text (caption_hash()): binds the record to it
  double sigma = 0;             // noise level of x_σ
  uint64_t noise_seed = 0;      // ε = the CPU generator's randn with this seed
  uint32_t latent_checksum = 0; // of the cached latent x0 (see latent_checksum())
  at::Tensor delta_c;           // T(c) − P(c), [C, h, w]
  at::Tensor delta_u;           // T(u) − P(u), same shape; undefined in the approximate form
};

// CRC-32 of a CPU tensor's dtype, shape and bytes: identifies a cached latent.
uint32_t latent_checksum(const at::Tensor& latent);
// The first 64 bits of the SHA-256 of a caption's text: identifies the text (and so the student's
// text-cache entry, which is keyed by it) that a record's δ was computed for.
uint64_t caption_hash(const std::string& caption);

// Bytes one record takes on disk.
uint64_t record_bytes(size_t key_bytes, const std::vector<int64_t>& shape, const std::string& dtype, bool exact);
// Prints what the store will need and throws dt::Error when the disk under `dir` has less free.
void check_disk_space(const std::string& dir, uint64_t needed_bytes, uint64_t records);

// Which shard of a record on several ranks a writer appends to (count 1: records.bin itself).
struct StoreShard {
  int rank = 0;
  int count = 1;
};

class DeltaStoreWriter {
 public:
  // Creates the store in `dir`, or with `resume` continues the one there. Resuming refuses a store
  // whose manifest differs from `manifest` (each field with its own message), or whose records
  // were written by another number of ranks, and cuts a torn last record. Without `resume` an
  // existing store is an error, never overwritten. A shard's writer (shard.count > 1) joins the
  // store its rank 0 created.
  DeltaStoreWriter(const std::string& dir, const StoreManifest& manifest, bool resume, StoreShard shard = {});
  ~DeltaStoreWriter();
  DeltaStoreWriter(const DeltaStoreWriter&) = delete;
  DeltaStoreWriter& operator=(const DeltaStoreWriter&) = delete;

  uint64_t done() const { return done_; }   // records in the file
  uint64_t next_item() const { return next_item_; }  // one past the last record's item (0: none)
  uint64_t bytes() const { return end_; }   // size of records.bin
  uint64_t torn_bytes_cut() const { return cut_; }
  // record.item must be next_item() (one file) or later (a shard).
  void append(const DeltaRecord& record);
  void sync();                              // fsync: everything appended so far is durable

 private:
  std::string dir_, path_;
  StoreManifest manifest_;
  bool shard_ = false;
  int fd_ = -1;
  uint64_t done_ = 0, next_item_ = 0, end_ = 0, cut_ = 0;
};

// Writes records.bin of `dir` from the complete shards of a record on `shards` ranks, in item
// order, and removes the shards. Throws dt::Error naming the shard that misses or repeats an item.
void merge_record_shards(const std::string& dir, const StoreManifest& manifest, int shards);

class DeltaStore {
 public:
  // Opens a complete store for reading; throws dt::Error for a missing, truncated, incomplete or
  // structurally broken store.
  static std::shared_ptr<DeltaStore> open(const std::string& dir);
  ~DeltaStore();

  const StoreManifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }
  uint64_t size() const { return offsets_.empty() ? 0 : offsets_.size() - 1; }
  // The record of plan item `item`, tensors on the CPU in float32; its CRC is checked first.
  DeltaRecord read(uint64_t item) const;
  // Only the fields before the tensors (no tensors, no CRC check: read() checks it later).
  DeltaRecord read_info(uint64_t item) const;
  // Refuses a store recorded in another latent space than the student's.
  void check_latent_space(const std::string& student_latent_space) const;

 private:
  DeltaStore() = default;
  DeltaRecord parse(uint64_t item, const std::string& bytes, bool tensors) const;
  std::string dir_, path_;
  StoreManifest manifest_;
  int fd_ = -1;
  std::vector<uint64_t> offsets_;  // record i starts at offsets_[i], ends at offsets_[i + 1]
};

}  // namespace dt
