#include "transfer/delta_store.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "testing/support.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

class DeltaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dt_store_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static StoreManifest manifest(bool exact, const std::string& dtype = "bf16", uint64_t count = 6) {
    StoreManifest m;
    m.plan_hash = "plan-1";
    m.count = count;
    m.family = "zimage";
    m.teacher_model = "base-weights";
    m.teacher_lora = "crc32:01234567:100";
    m.latent_space = "vae-1/zimage-norm";
    m.dtype = dtype;
    m.exact = exact;
    return m;
  }

  // Records of varying shape (buckets) and key length.
  static DeltaRecord record(uint64_t item, bool exact) {
    torch::manual_seed(static_cast<uint64_t>(item) + 7);
    DeltaRecord r;
    r.item = item;
    r.sample_key = "images/sample_" + std::to_string(item * 37) + ".png";
    r.caption_index = static_cast<int32_t>(item % 3) - 1;
    r.caption_hash = caption_hash("caption " + std::to_string(item));
    r.sigma = 0.05 + 0.1 * static_cast<double>(item);
    r.noise_seed = 0x9e3779b97f4a7c15ull * (item + 1);
    r.latent_checksum = static_cast<uint32_t>(1000 + item);
    const int64_t h = 2 + static_cast<int64_t>(item % 2), w = 3;
    r.delta_c = torch::randn({4, h, w});
    if (exact) r.delta_u = torch::randn({4, h, w});
    return r;
  }

  std::string write_store(const std::string& name, bool exact, const std::string& dtype = "bf16") {
    const std::string dir = (dir_ / name).string();
    DeltaStoreWriter w(dir, manifest(exact, dtype), false);
    for (uint64_t i = 0; i < 6; ++i) w.append(record(i, exact));
    return dir;
  }

  fs::path dir_;
};

TEST_F(DeltaStoreTest, ShardsOfSeveralRanksMergeIntoTheOneProcessFile) {
  const std::string one = write_store("one", true);
  // Three ranks, whole batches of two items each: rank r holds items 2r, 2r + 1.
  const std::string dir = (dir_ / "sharded").string();
  {
    std::vector<std::unique_ptr<DeltaStoreWriter>> writers;
    for (int r = 0; r < 3; ++r) writers.push_back(std::make_unique<DeltaStoreWriter>(dir, manifest(true), false, StoreShard{r, 3}));
    for (uint64_t i : {4, 0, 2, 5, 1, 3}) writers[i / 2]->append(record(i, true));
    EXPECT_EQ(writers[1]->next_item(), 4u);
    EXPECT_THROW(writers[1]->append(record(2, true)), Error);  // a shard's items only grow
  }
  EXPECT_THROW(DeltaStore::open(dir), Error);  // no records.bin before the merge
  merge_record_shards(dir, manifest(true), 3);
  EXPECT_EQ(read_file(one + "/records.bin"), read_file(dir + "/records.bin"));
  EXPECT_FALSE(fs::exists(dir + "/records.rank0-of-3.bin"));
  EXPECT_EQ(DeltaStore::open(dir)->size(), 6u);
}

TEST_F(DeltaStoreTest, MergeRefusesAMissingItemAndResumeAnotherRankCount) {
  const std::string dir = (dir_ / "sharded").string();
  {
    DeltaStoreWriter first(dir, manifest(false), false, StoreShard{0, 2});
    DeltaStoreWriter second(dir, manifest(false), false, StoreShard{1, 2});
    for (uint64_t i : {0, 1, 2}) first.append(record(i, false));
    for (uint64_t i : {4, 5}) second.append(record(i, false));  // item 3 never recorded
  }
  try {
    merge_record_shards(dir, manifest(false), 2);
    FAIL() << "merged without item 3";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lack item 3"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/records.bin"));
  EXPECT_THROW(DeltaStoreWriter(dir, manifest(false), true), Error);                 // one process
  EXPECT_THROW(DeltaStoreWriter(dir, manifest(false), true, StoreShard{0, 3}), Error);  // three ranks
  DeltaStoreWriter resumed(dir, manifest(false), true, StoreShard{1, 2});
  EXPECT_EQ(resumed.done(), 2u);
  EXPECT_EQ(resumed.next_item(), 6u);
}

TEST_F(DeltaStoreTest, RoundTripBf16AndFp32BothForms) {
  for (bool exact : {false, true}) {
    for (std::string dtype : {"bf16", "fp32"}) {
      const std::string dir = write_store(dtype + (exact ? "_exact" : "_approx"), exact, dtype);
      auto store = DeltaStore::open(dir);
      ASSERT_EQ(store->size(), 6u);
      EXPECT_EQ(store->manifest().to_json(), manifest(exact, dtype).to_json());
      for (uint64_t i : {3u, 0u, 5u, 1u}) {  // random access
        const DeltaRecord want = record(i, exact), got = store->read(i);
        EXPECT_EQ(got.item, i);
        EXPECT_EQ(got.sample_key, want.sample_key);
        EXPECT_EQ(got.caption_index, want.caption_index);
        EXPECT_EQ(got.caption_hash, want.caption_hash);
        EXPECT_EQ(got.sigma, want.sigma);
        EXPECT_EQ(got.noise_seed, want.noise_seed);
        EXPECT_EQ(got.latent_checksum, want.latent_checksum);
        const auto type = dtype == "fp32" ? torch::kFloat : torch::kBFloat16;
        EXPECT_TRUE(torch::equal(got.delta_c, want.delta_c.to(type).to(torch::kFloat)));
        EXPECT_EQ(got.delta_u.defined(), exact);
        if (exact) {
          EXPECT_TRUE(torch::equal(got.delta_u, want.delta_u.to(type).to(torch::kFloat)));
        }
      }
      const uint64_t want_bytes = 16 + [&] {
        uint64_t s = 0;
        for (uint64_t i = 0; i < 6; ++i) {
          const DeltaRecord r = record(i, exact);
          s += record_bytes(r.sample_key.size(), r.delta_c.sizes().vec(), dtype, exact);
        }
        return s;
      }();
      EXPECT_EQ(fs::file_size(fs::path(dir) / "records.bin"), want_bytes);
    }
  }
}

// Every possible cut inside the last two records (a kill mid-write), resumed, ends byte-identical.
TEST_F(DeltaStoreTest, TornTailIsCutAndResumedByteIdentical) {
  const std::string full_dir = write_store("full", true);
  const std::string full = read_file(full_dir + "/records.bin");
  const auto m = manifest(true);
  const uint64_t last_two = record_bytes(record(4, true).sample_key.size(), record(4, true).delta_c.sizes().vec(), "bf16", true) +
                            record_bytes(record(5, true).sample_key.size(), record(5, true).delta_c.sizes().vec(), "bf16", true);
  int resumed = 0;
  for (uint64_t cut = full.size() - last_two; cut < full.size(); cut += 13) {
    const std::string dir = (dir_ / "cut").string();
    fs::remove_all(dir);
    fs::create_directories(dir);
    write_file_atomic(dir + "/manifest.json", m.to_json());
    write_file_atomic(dir + "/records.bin", full.substr(0, cut));
    {
      DeltaStoreWriter w(dir, m, /*resume=*/true);
      EXPECT_LT(w.done(), 6u);
      EXPECT_GE(w.done(), 4u);
      for (uint64_t i = w.done(); i < 6; ++i) w.append(record(i, true));
    }
    ASSERT_EQ(read_file(dir + "/records.bin"), full) << "cut at " << cut;
    ++resumed;
  }
  EXPECT_GT(resumed, 10);
}

// A whole-length last record whose bytes did not all reach the disk fails its CRC: cut too.
TEST_F(DeltaStoreTest, LastRecordWithBadCrcIsTreatedAsTorn) {
  const std::string dir = write_store("s", false);
  const std::string full = read_file(dir + "/records.bin");
  std::string broken = full;
  broken[broken.size() - 10] ^= 0x5a;
  write_file_atomic(dir + "/records.bin", broken);
  DeltaStoreWriter w(dir, manifest(false), true);
  EXPECT_EQ(w.done(), 5u);
  EXPECT_GT(w.torn_bytes_cut(), 0u);
  w.append(record(5, false));
  w.sync();
  EXPECT_EQ(read_file(dir + "/records.bin"), full);
}

TEST_F(DeltaStoreTest, EveryMismatchOrCorruptionHasItsOwnMessage) {
  const std::string dir = write_store("s", false);
  const std::string records = read_file(dir + "/records.bin"), manifest_text = read_file(dir + "/manifest.json");
  auto restore = [&] {
    write_file_atomic(dir + "/records.bin", records);
    write_file_atomic(dir + "/manifest.json", manifest_text);
  };

  // Format version (manifest and records file).
  for (int other : {1, 3}) {  // the store before captions were bound, and a newer one
    const std::string version = "format version " + std::to_string(other) + " is not supported";
    std::string text = manifest_text;
    text.replace(text.find("\"version\": 2"), 12, "\"version\": " + std::to_string(other));
    write_file_atomic(dir + "/manifest.json", text);
    EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find(version), std::string::npos);
    restore();
    std::string bytes = records;
    bytes[8] = static_cast<char>(other);
    write_file_atomic(dir + "/records.bin", bytes);
    EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find(version), std::string::npos);
    restore();
  }

  // Latent space.
  auto store = DeltaStore::open(dir);
  EXPECT_NE(dt::testing::error_of([&] { store->check_latent_space("other-vae"); }).find("latent space differs"), std::string::npos);
  EXPECT_EQ(dt::testing::error_of([&] { store->check_latent_space("vae-1/zimage-norm"); }), "(no error)");
  store.reset();

  // CRC failure in the middle of the store (read), and when resuming.
  std::string flipped = records;
  flipped[16 + 100] ^= 1;
  write_file_atomic(dir + "/records.bin", flipped);
  store = DeltaStore::open(dir);
  EXPECT_NE(dt::testing::error_of([&] { store->read(0); }).find("record 0 is corrupt (CRC mismatch)"), std::string::npos);
  EXPECT_EQ(dt::testing::error_of([&] { store->read(1); }), "(no error)");
  store.reset();
  EXPECT_NE(dt::testing::error_of([&] { DeltaStoreWriter(dir, manifest(false), true); }).find("record 0 is corrupt (CRC mismatch)"), std::string::npos);
  restore();

  // Truncated record, incomplete store.
  write_file_atomic(dir + "/records.bin", records.substr(0, records.size() - 7));
  EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find("record 5 is truncated"), std::string::npos);
  const uint64_t last = record_bytes(record(5, false).sample_key.size(), record(5, false).delta_c.sizes().vec(), "bf16", false);
  write_file_atomic(dir + "/records.bin", records.substr(0, records.size() - last));
  EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find("incomplete: 5 of 6 records"), std::string::npos);
  restore();

  // Bad magic: corruption, not a torn tail.
  std::string bad_magic = records;
  bad_magic[16] = 'X';
  write_file_atomic(dir + "/records.bin", bad_magic);
  EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find("corrupt (bad magic)"), std::string::npos);
  restore();

  // Plan, teacher, LoRA, latent space, dtypes, form mismatches on resume.
  auto changed = [&](auto edit) {
    StoreManifest m = manifest(false);
    edit(m);
    return dt::testing::error_of([&] { DeltaStoreWriter(dir, m, true); });
  };
  EXPECT_NE(changed([](StoreManifest& m) { m.plan_hash = "plan-2"; }).find("the plan differs"), std::string::npos);
  EXPECT_NE(changed([](StoreManifest& m) { m.teacher_model = "x"; }).find("the teacher model differs"), std::string::npos);
  EXPECT_NE(changed([](StoreManifest& m) { m.teacher_lora = "x"; }).find("the teacher LoRA differs"), std::string::npos);
  EXPECT_NE(changed([](StoreManifest& m) { m.latent_space = "x"; }).find("the latent space differs"), std::string::npos);
  EXPECT_NE(changed([](StoreManifest& m) { m.dtype = "fp32"; }).find("the dtype differs"), std::string::npos);
  EXPECT_NE(changed([](StoreManifest& m) { m.compute_dtype = "bf16"; }).find("the compute dtype differs"), std::string::npos);
  EXPECT_NE(changed([](StoreManifest& m) { m.exact = true; }).find("the form differs"), std::string::npos);
  EXPECT_NE(dt::testing::error_of([&] { DeltaStoreWriter(dir, manifest(false), false); }).find("already here"), std::string::npos);

  // Records of another store beside this manifest.
  const std::string other = write_store("other", true);
  write_file_atomic(dir + "/records.bin", read_file(other + "/records.bin"));
  EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find("belong to another manifest"), std::string::npos);
  restore();

  // Missing store, garbage manifest.
  EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open((dir_ / "none").string()); }).find("no delta store here"), std::string::npos);
  write_file_atomic(dir + "/manifest.json", "{\"format\": 3}");
  EXPECT_NE(dt::testing::error_of([&] { DeltaStore::open(dir); }).find("not a delta store manifest"), std::string::npos);
  restore();
}

TEST_F(DeltaStoreTest, DiskSpaceIsCheckedBeforeStarting) {
  EXPECT_EQ(dt::testing::error_of([&] { check_disk_space(dir_.string(), 1024, 1); }), "(no error)");
  EXPECT_NE(dt::testing::error_of([&] { check_disk_space((dir_ / "new/sub").string(), 1ull << 62, 10); }).find("not enough disk space"),
            std::string::npos);
}

TEST_F(DeltaStoreTest, LatentChecksumSeesValuesShapeAndDtype) {
  at::Tensor a = torch::randn({4, 2, 3});
  const uint32_t c = latent_checksum(a);
  EXPECT_EQ(latent_checksum(a.clone()), c);
  at::Tensor b = a.clone();
  b[1][1][1] += 1e-6;
  EXPECT_NE(latent_checksum(b), c);
  EXPECT_NE(latent_checksum(a.view({4, 3, 2})), c);
  EXPECT_NE(latent_checksum(a.to(torch::kBFloat16)), c);
}

}  // namespace
}  // namespace dt
