#include "core/runtime.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

namespace dt {
namespace {

// After init_runtime a write to a pipe (or socket) nobody reads is an error the caller sees, not a
// SIGPIPE that ends the process: what lets a rank name a peer that died.
TEST(Runtime, AWriteToAClosedPipeFailsInsteadOfEndingTheProcess) {
  init_runtime();
  int ends[2];
  ASSERT_EQ(pipe(ends), 0);
  close(ends[0]);
  errno = 0;
  EXPECT_EQ(write(ends[1], "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  close(ends[1]);
}

}  // namespace
}  // namespace dt
