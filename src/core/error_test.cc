#include "core/error.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace dt {
namespace {

// The allocator's own failure (whatever LibTorch's wording) is recognised; other errors are not.
TEST(Error, AFailedAllocationIsOutOfMemory) {
  try {
    at::empty({int64_t{1} << 50});  // 4 PiB
    FAIL() << "the allocation succeeded";
  } catch (const c10::Error& e) {
    EXPECT_TRUE(is_out_of_memory(e.what())) << e.what();
  }
  EXPECT_TRUE(is_out_of_memory("CUDA out of memory. Tried to allocate 20.00 MiB"));
  EXPECT_FALSE(is_out_of_memory("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"));
}

}  // namespace
}  // namespace dt
