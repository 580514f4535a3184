#include "core/progress.h"

#include <gtest/gtest.h>

namespace dt {
namespace {

TEST(Progress, LineShowsCountRateAndEta) {
  EXPECT_EQ(progress_line("latents", 25, 100, 10.0), "latents  25/100  2.50 it/s  0:10  ETA 0:30");
  EXPECT_EQ(progress_line("text", 3, 10, 12.0, "loss 0.1"), "text  3/10  4.00 s/it  0:12  ETA 0:28  loss 0.1");
  EXPECT_EQ(progress_line("x", 10, 10, 4000.0), "x  10/10  400.00 s/it  1:06:40");
  EXPECT_EQ(progress_line("x", 0, 0, 0.0), "x  0  0.00 it/s  0:00");
}

TEST(Progress, FirstItemAgainstTheMedianOfTheOthers) {
  EXPECT_EQ(first_and_later({0.9, 0.3}), "");
  EXPECT_EQ(first_and_later({0.9, 0.3, 0.5, 0.4, 7.0}), "first 0.900 s, later 0.500 s");
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  {
    Progress p("work", 3, f);
    p.advance(3);
  }
  std::rewind(f);
  char buf[256] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string out(buf, n);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_NE(out.find("work  3/3"), std::string::npos);
  EXPECT_EQ(out.back(), '\n');
}

}  // namespace
}  // namespace dt
