// Two ranks in one process (two threads over a HashStore, Gloo over 127.0.0.1): the collectives'
// results, the config check and the one-line failures. The multi-process runs are
// tests/distributed_test.sh.
#include "dist/group.h"

#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/torch.h>

#include <cstdlib>
#include <functional>
#include <thread>

#include "core/error.h"

namespace dt::dist {
namespace {

GroupOptions loopback(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  GroupOptions o;
  o.bind_address = "127.0.0.1";
  o.timeout = timeout;
  return o;
}

// Runs body(rank's group) on two ranks at once; returns each rank's error message ("" = none).
std::vector<std::string> on_two_ranks(const std::function<void(const Group&)>& body,
                                      const GroupOptions& options = loopback()) {
  const auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      try {
        Group group(store, r, 2, options);
        body(group);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : ranks) t.join();
  return errors;
}

TEST(Group, StartedSumsEndWithTheSumOnEveryRank) {
  std::vector<std::vector<at::Tensor>> results(2);
  const auto errors = on_two_ranks([&](const Group& g) {
    std::vector<at::Tensor> tensors{torch::full({3000, 3000}, 1.0f + g.rank()), torch::arange(6, torch::kDouble) * (g.rank() + 1)};
    std::vector<PendingSum> pending;
    for (const at::Tensor& t : tensors) pending.push_back(g.start_sum(t, "the test sum"));
    for (PendingSum& p : pending) p.wait();
    results[g.rank()] = tensors;
  });
  EXPECT_EQ(errors, std::vector<std::string>(2));
  for (const auto& r : results) {
    ASSERT_EQ(r.size(), 2u);
    EXPECT_TRUE(torch::equal(r[0], torch::full({3000, 3000}, 3.0f)));
    EXPECT_TRUE(torch::equal(r[1], torch::arange(6, torch::kDouble) * 3));
  }
}

TEST(Group, AllGatherGivesEveryRanksTensorInRankOrder) {
  std::vector<std::vector<at::Tensor>> results(2);
  const auto errors = on_two_ranks([&](const Group& g) {
    results[g.rank()] = g.all_gather(torch::full({4}, static_cast<uint8_t>(10 + g.rank()), torch::kUInt8), "gather");
  });
  EXPECT_EQ(errors, std::vector<std::string>(2));
  for (const auto& r : results) {
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0][3].item<int>(), 10);
    EXPECT_EQ(r[1][0].item<int>(), 11);
  }
}

TEST(Group, AgreeRefusesADifferentValueOnEveryRank) {
  EXPECT_EQ(on_two_ranks([](const Group& g) { g.agree("config", "abc", "hint"); }), std::vector<std::string>(2));
  const auto errors = on_two_ranks([](const Group& g) { g.agree("config", g.rank() == 0 ? "abc" : "abd", "run the same"); });
  for (const auto& e : errors) EXPECT_NE(e.find("rank 1's config differs from rank 0's: run the same"), std::string::npos) << e;
}

TEST(Group, AFailedCollectiveNamesTheRankThatStoppedAndWhy) {
  const auto errors = on_two_ranks([](const Group& g) {
    if (g.rank() == 1) {
      g.post_failure("the loss is NaN at step 3");
      throw Error("stopped");  // its group goes away, closing its connections
    }
    g.start_sum(torch::ones({4}), "the gradient sum of step 3").wait();
  });
  EXPECT_EQ(errors[0], "the gradient sum of step 3 failed: rank 1 stopped: the loss is NaN at step 3");
}

TEST(Group, ATimedOutCollectiveNamesTheRankBehind) {
  const auto errors = on_two_ranks(
      [](const Group& g) {
        const at::Tensor t = torch::ones({4});
        g.start_sum(t, "the gradient sum of step 1").wait();
        if (g.rank() == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(3));  // hangs past the timeout
          return;
        }
        g.start_sum(t, "the gradient sum of step 2").wait();
      },
      loopback(std::chrono::milliseconds(1000)));
  EXPECT_EQ(errors[0],
            "the gradient sum of step 2 failed: rank 1 is still at the gradient sum of step 1 (it hangs, "
            "or takes longer than distributed.timeout = 1 s)");
}

TEST(Launch, ReadsTorchrunsEnvironmentAndRefusesBadValues) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(name);
  EXPECT_EQ(launch_from_env().world_size, 1);
  setenv("WORLD_SIZE", "4", 1);
  setenv("RANK", "3", 1);
  setenv("LOCAL_RANK", "1", 1);
  EXPECT_THROW(
      {
        try {
          launch_from_env();
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("MASTER_ADDR is not set"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
  setenv("MASTER_ADDR", "10.0.0.1", 1);
  setenv("MASTER_PORT", "29500", 1);
  const Launch l = launch_from_env();
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world_size, 4);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.master_addr, "10.0.0.1");
  EXPECT_EQ(l.master_port, 29500);
  setenv("RANK", "4", 1);
  EXPECT_THROW(launch_from_env(), Error);
  setenv("RANK", "x", 1);
  EXPECT_THROW(launch_from_env(), Error);
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(name);
}

}  // namespace
}  // namespace dt::dist
