#include "io/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"

namespace dt {
namespace {

namespace fs = std::filesystem;

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

// Outputs (PNGs, LoRAs, configs) get the mode any tool's output gets: 0666 less the umask.
TEST(AtomicFile, ModeFollowsTheUmask) {
  const fs::path dir = fs::temp_directory_path() / ("dt_atomic_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const mode_t old = ::umask(022);
  write_file_atomic((dir / "shared.txt").string(), "a");
  ::umask(077);
  write_file_atomic((dir / "private.txt").string(), "b");
  ::umask(002);
  write_file_atomic((dir / "group.txt").string(), "c");
  ::umask(old);
  EXPECT_EQ(mode_of((dir / "shared.txt").string()), 0644u);
  EXPECT_EQ(mode_of((dir / "private.txt").string()), 0600u);
  EXPECT_EQ(mode_of((dir / "group.txt").string()), 0664u);
  EXPECT_EQ(read_file((dir / "group.txt").string()), "c");
  fs::remove_all(dir);
}

// An uncommitted file leaves nothing behind, and an existing file is untouched until commit.
TEST(AtomicFile, UncommittedLeavesTheOldFile) {
  const fs::path dir = fs::temp_directory_path() / ("dt_atomic_old_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "f.txt").string();
  write_file_atomic(path, "old");
  {
    AtomicFile f(path);
    f.write("new");
  }
  EXPECT_EQ(read_file(path), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dt
