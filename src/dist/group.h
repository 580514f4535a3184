// The ranks of a data-parallel run, on c10d: PyTorch's own distributed engine (the one DDP and
// torchrun use), with its TCPStore rendezvous and the Gloo backend on CPUs, NCCL on CUDA. One
// process per rank; each rank learns its place from torchrun's environment contract.
//
// Every collective names what it does ("the gradient all-reduce at step 12"), and a collective
// that fails says which rank stopped and why, from what the ranks leave in the store: the error a
// rank posts before it exits, the process id it registered at start (a local rank that vanished),
// or the last collective each rank entered (a rank that hangs behind the others).
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/util/intrusive_ptr.h>

namespace c10d {
class Store;
}

namespace dt::dist {

// torchrun's environment contract: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
struct Launch {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
};

// The launch this process was started for: one process when none of the variables is set.
// Throws dt::Error naming the variable that is malformed, missing or inconsistent.
Launch launch_from_env();

struct GroupOptions {
  std::string backend = "gloo";  // gloo | nccl
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};  // of every collective and of the rendezvous
  // The address the Gloo transport binds to; empty = this machine's hostname (GLOO_SOCKET_IFNAME,
  // when set, names the network interface instead).
  std::string bind_address;
};

// A sum over the ranks started by Group::start_sum: the tensor holds the sum after wait().
class PendingSum {
 public:
  PendingSum();
  ~PendingSum();
  PendingSum(PendingSum&&) noexcept;
  PendingSum& operator=(PendingSum&&) noexcept;
  // Throws dt::Error naming the rank at fault (as a collective of Group does) when the sum failed.
  void wait();

 private:
  friend class Group;
  struct State;
  std::unique_ptr<State> state_;
};

class Group {
 public:
  Group() = default;  // one process: rank 0 of 1, every collective a no-op
  // Rank `rank` of `size` over `store` (TCPStore across processes, HashStore in tests).
  Group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, const GroupOptions& options);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_main() const { return rank_ == 0; }

  // Starts summing one contiguous tensor (on the backend's device) over the ranks in place and
  // returns at once; every rank starts its sums in the same order. `what` names the operation in a
  // failure ("the gradient sum of step 12").
  PendingSum start_sum(const at::Tensor& tensor, const std::string& what) const;
  // Every rank's copy of `tensor` (same shape and dtype on every rank), in rank order.
  std::vector<at::Tensor> all_gather(const at::Tensor& tensor, const std::string& what) const;
  void barrier(const std::string& what) const;
  // Goes on only when every rank gives the same `value`; otherwise throws dt::Error naming the
  // first rank whose value differs from rank 0's, followed by `hint`.
  void agree(const std::string& what, const std::string& value, const std::string& hint) const;
  // Leaves this rank's reason to stop where the others will read it when their next collective
  // fails. Never throws.
  void post_failure(const std::string& message) const noexcept;

 private:
  friend class PendingSum;
  struct Impl;
  std::shared_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
};

// The group of this process: one process until join() (the commands that run data-parallel join
// at start).
const Group& world();
// Joins the ranks of `launch` through a TCPStore at its master address (rank 0 serves it).
// Throws dt::Error when the rendezvous does not complete within options.timeout.
void join(const Launch& launch, const GroupOptions& options);

}  // namespace dt::dist
