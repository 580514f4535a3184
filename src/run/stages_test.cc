#include "run/stages.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/hash.h"
#include "io/atomic_file.h"
#include "testing/support.h"

namespace dt {
namespace {
namespace fs = std::filesystem;

// A stage runs once; a second job on the folder finds it cached; changed inputs, a changed earlier
// stage or a lost output run it again. The key is sha256 of "after\nname\ninputs", the key world
// build's folders were written with, so their caches stay valid.
TEST(Stages, RunOnceThenCachedUntilAnInputOrTheOutputChanges) {
  testing::ScratchDir dir("stages");
  int runs = 0;
  auto make = [&](const std::string& key) {
    ++runs;
    write_file_atomic(dir / "a/out.txt", key);
  };
  std::string key;
  {
    Stages stages(dir.str(), 1, "jobs/keys.json");
    key = stages.run("a", "before", "inputs", "a/out.txt", [&](const std::string& k) {
      fs::create_directories(dir / "a");
      make(k);
    });
  }
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(key, sha256_hex("before\na\ninputs"));
  EXPECT_EQ(read_file(dir / "a/out.txt"), key);
  EXPECT_TRUE(fs::exists(dir / "jobs/keys.json"));

  Stages again(dir.str(), 4, "jobs/keys.json");
  EXPECT_EQ(again.run("a", "before", "inputs", "a/out.txt", make), key);
  EXPECT_EQ(runs, 1);
  again.run("a", "before", "other inputs", "a/out.txt", make);
  EXPECT_EQ(runs, 2);
  again.run("a", "changed before", "other inputs", "a/out.txt", make);
  EXPECT_EQ(runs, 3);
  fs::remove(dir / "a/out.txt");
  again.run("a", "changed before", "other inputs", "a/out.txt", make);
  EXPECT_EQ(runs, 4);
  Stages other_job(dir.str(), 1, "other.json");  // a second job's keys are its own
  other_job.run("a", "changed before", "other inputs", "a/out.txt", make);
  EXPECT_EQ(runs, 5);
}

// A stage that fails is not recorded: the rerun runs it again.
TEST(Stages, AFailedStageRunsAgain) {
  testing::ScratchDir dir("stages_fail");
  int runs = 0;
  {
    Stages stages(dir.str(), 1);
    EXPECT_THROW(stages.run("a", "", "", "out.txt",
                            [&](const std::string&) {
                              ++runs;
                              write_file_atomic(dir / "out.txt", "partial");
                              throw Error("killed");
                            }),
                 Error);
  }
  Stages stages(dir.str(), 1);
  stages.run("a", "", "", "out.txt", [&](const std::string&) { ++runs; });
  EXPECT_EQ(runs, 2);
}

}  // namespace
}  // namespace dt
