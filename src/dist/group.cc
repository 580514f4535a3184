#include "dist/group.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <torch/version.h>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "core/error.h"

namespace dt::dist {
namespace {

// LibTorch 2 split the backends (Gloo, NCCL) off the ProcessGroup front end.
#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::string this_host() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

std::string text(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }
std::vector<uint8_t> bytes(const std::string& text) { return {text.begin(), text.end()}; }

// Whether process `pid` of this machine has ended (gone, or a zombie its parent has not reaped).
bool process_ended(long pid) {
  if (kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto name_end = line.rfind(')');
  return name_end != std::string::npos && name_end + 2 < line.size() && line[name_end + 2] == 'Z';
}

int env_int(const char* name, int fallback, int min) {
  const char* value = std::getenv(name);
  if (!value) return fallback;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(value, &end, 10);
  if (errno || end == value || *end || n < min || n > (1 << 24))
    throw Error(std::string("environment variable ") + name + "='" + value + "' is not a whole number of at least " +
                std::to_string(min));
  return static_cast<int>(n);
}

bool is_loopback(const std::string& address) { return address == "localhost" || address.rfind("127.", 0) == 0; }

}  // namespace

Launch launch_from_env() {
  Launch l;
  l.world_size = env_int("WORLD_SIZE", 1, 1);
  l.rank = env_int("RANK", 0, 0);
  l.local_rank = env_int("LOCAL_RANK", l.rank, 0);
  if (l.world_size == 1 && l.rank == 0) return l;
  if (l.rank >= l.world_size)
    throw Error("environment variable RANK=" + std::to_string(l.rank) + " is not below WORLD_SIZE=" +
                std::to_string(l.world_size));
  for (const char* name : {"RANK", "MASTER_ADDR", "MASTER_PORT"})
    if (!std::getenv(name))
      throw Error(std::string("WORLD_SIZE is ") + std::to_string(l.world_size) + " but environment variable " + name +
                  " is not set (torchrun's contract: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)");
  l.master_addr = std::getenv("MASTER_ADDR");
  l.master_port = env_int("MASTER_PORT", 0, 1);
  if (l.master_port > 65535) throw Error("environment variable MASTER_PORT=" + std::to_string(l.master_port) + " is not a port");
  return l;
}

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Backend> backend;
  int rank = 0, size = 1;
  std::chrono::milliseconds timeout{0};
  mutable int64_t entered = 0;  // collectives this rank has entered

  std::string key(const std::string& kind, int r) const { return "deltatrain/" + kind + "/" + std::to_string(r); }

  // Runs collective `body`, first leaving in the store which collective this rank is at, so that a
  // failure elsewhere can name a rank that stays behind.
  template <class Body>
  void run(const std::string& what, Body&& body) const {
    try {
      ++entered;
      store->set(key("at", rank), bytes(std::to_string(entered) + " " + what));
      body();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(what, e.what());
    }
  }

  // Why `what` failed on this rank, as far as the store can tell.
  [[noreturn]] void fail(const std::string& what, const std::string& cause) const {
    const std::string prefix = what + " failed: ";
    std::string reason;
    try {
      store->setTimeout(std::chrono::seconds(5));
      const std::string host = this_host();
      // A rank that dies closes its connections a moment before its process has ended: look again
      // for a while before calling it behind.
      for (int look = 0; look < 20 && reason.empty(); ++look) {
        if (look > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        for (int r = 0; r < size && reason.empty(); ++r)
          if (r != rank && store->check({key("failed", r)}))
            reason = "rank " + std::to_string(r) + " stopped: " + text(store->get(key("failed", r)));
        if (!reason.empty()) store->set(key("read", rank), bytes("1"));
        for (int r = 0; r < size && reason.empty(); ++r) {
          if (r == rank || !store->check({key("process", r)})) continue;
          std::istringstream process(text(store->get(key("process", r))));
          std::string process_host;
          long pid = 0;
          if (process >> process_host >> pid && process_host == host && process_ended(pid))
            reason = "rank " + std::to_string(r) + " (process " + std::to_string(pid) +
                     ") ended without a word: killed, or out of memory";
        }
      }
      for (int r = 0; r < size && reason.empty(); ++r) {
        if (r == rank) continue;
        int64_t at = 0;
        std::string at_what = "the start";
        if (store->check({key("at", r)})) {
          std::istringstream entry(text(store->get(key("at", r))));
          entry >> at;
          std::getline(entry >> std::ws, at_what);
        }
        if (at < entered)
          reason = "rank " + std::to_string(r) + " is still at " + at_what + " (it hangs, or takes longer than " +
                   "distributed.timeout = " + std::to_string(timeout.count() / 1000) + " s)";
      }
    } catch (const std::exception&) {
      reason = "the rendezvous store of rank 0 no longer answers: rank 0 stopped (" + first_line(cause) + ")";
    }
    throw Error(prefix + (reason.empty() ? first_line(cause) : reason));
  }
};

Group::Group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, const GroupOptions& options)
    : rank_(rank), size_(size) {
  auto impl = std::make_shared<Impl>();
  impl->store = store;
  impl->rank = rank;
  impl->size = size;
  impl->timeout = options.timeout;
  store->setTimeout(options.timeout);
  store->set(impl->key("process", rank), bytes(this_host() + " " + std::to_string(getpid())));
  const auto backend_store = c10::make_intrusive<c10d::PrefixStore>("backend", store);
  try {
    if (options.backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(options.timeout);
      if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"))
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      else if (!options.bind_address.empty())
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(options.bind_address));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(backend_store, rank, size, o);
    } else if (options.backend == "nccl") {
#ifdef USE_C10D_NCCL
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      impl->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(backend_store, rank, size, o);
#else
      throw Error("distributed.backend = \"nccl\": this build of LibTorch has no NCCL (a CUDA build has)");
#endif
    } else {
      throw Error("distributed.backend '" + options.backend + "' is not one of gloo, nccl");
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(rank) + " could not connect to the other ranks (" + options.backend +
                "): " + first_line(e.what()));
  }
  impl_ = std::move(impl);
}

struct PendingSum::State {
  std::shared_ptr<Group::Impl> group;
  c10::intrusive_ptr<c10d::Work> work;
  std::string what;
};

PendingSum::PendingSum() = default;
PendingSum::~PendingSum() = default;
PendingSum::PendingSum(PendingSum&&) noexcept = default;
PendingSum& PendingSum::operator=(PendingSum&&) noexcept = default;

void PendingSum::wait() {
  if (!state_ || !state_->work) return;
  try {
    state_->work->wait();
  } catch (const std::exception& e) {
    state_->group->fail(state_->what, e.what());
  }
  state_->work.reset();
}

PendingSum Group::start_sum(const at::Tensor& tensor, const std::string& what) const {
  PendingSum pending;
  if (size_ == 1) return pending;
  pending.state_ = std::make_unique<PendingSum::State>();
  pending.state_->group = impl_;
  pending.state_->what = what;
  impl_->run(what, [&] {
    std::vector<at::Tensor> one{tensor};
    pending.state_->work = impl_->backend->allreduce(one);
  });
  return pending;
}

std::vector<at::Tensor> Group::all_gather(const at::Tensor& tensor, const std::string& what) const {
  if (size_ == 1) return {tensor};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size_; ++r) outputs[0].push_back(torch::empty_like(tensor));
  impl_->run(what, [&] {
    std::vector<at::Tensor> input{tensor.contiguous()};
    impl_->backend->allgather(outputs, input)->wait();
  });
  return outputs[0];
}

void Group::barrier(const std::string& what) const {
  if (size_ == 1) return;
  impl_->run(what, [&] { impl_->backend->barrier()->wait(); });
}

void Group::agree(const std::string& what, const std::string& value, const std::string& hint) const {
  if (size_ == 1) return;
  impl_->run("the check that every rank has the same " + what, [&] {
    const std::string kind = "agree-" + std::to_string(impl_->entered);
    impl_->store->set(impl_->key(kind, rank_), bytes(value));
    for (int r = 0; r < size_; ++r) {
      if (r == rank_ || (rank_ != 0 && r != 0)) continue;  // rank 0 reads every rank; the others, rank 0
      const std::string other = text(impl_->store->get(impl_->key(kind, r)));
      if (other != value) {
        const int differs = rank_ == 0 ? r : rank_;
        throw Error("rank " + std::to_string(differs) + "'s " + what + " differs from rank 0's: " + hint);
      }
    }
  });
}

void Group::post_failure(const std::string& message) const noexcept {
  if (size_ == 1) return;
  try {
    impl_->store->set(impl_->key("failed", rank_), bytes(message));
    if (rank_ != 0) return;
    // Rank 0 serves the store: it stays a moment so that the others can read why it stops.
    impl_->store->setTimeout(std::chrono::milliseconds(100));
    for (int tries = 0; tries < 50; ++tries) {
      bool all_read = true;
      for (int r = 1; r < size_; ++r)  // read it, or stopped on an error of its own
        all_read = all_read && (impl_->store->check({impl_->key("read", r)}) || impl_->store->check({impl_->key("failed", r)}));
      if (all_read) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } catch (...) {
  }
}

namespace {
Group& the_world() {
  static Group group;
  return group;
}
}  // namespace

const Group& world() { return the_world(); }

void join(const Launch& launch, const GroupOptions& options) {
  if (launch.world_size == 1) return;
  // Under torchrun the agent already serves the store at the master address: every rank is a client.
  const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(launch.master_port);
  store_options.isServer = launch.rank == 0 && !(agent_store && std::string(agent_store) == "True");
  store_options.numWorkers = launch.world_size;
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  const std::string where = launch.master_addr + ":" + std::to_string(launch.master_port);
  try {
    store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, store_options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(launch.rank) + " of " + std::to_string(launch.world_size) +
                " found no rendezvous at " + where + " within distributed.timeout (" + first_line(e.what()) + ")");
  }
  GroupOptions o = options;
  if (o.bind_address.empty() && is_loopback(launch.master_addr)) o.bind_address = "127.0.0.1";
  // A restarted torchrun attempt meets in the same store: its keys must not see the last attempt's.
  const char* attempt = std::getenv("TORCHELASTIC_RESTART_COUNT");
  const auto attempt_store =
      c10::make_intrusive<c10d::PrefixStore>(std::string("attempt-") + (attempt ? attempt : "0"), store);
  the_world() = Group(attempt_store, launch.rank, launch.world_size, o);
}

}  // namespace dt::dist
