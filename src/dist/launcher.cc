#include "dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <thread>

#include "core/error.h"
#include "core/runtime.h"

namespace dt::dist {
namespace {

std::atomic<int> forwarded_signal{0};
void remember_signal(int signal) { forwarded_signal = signal; }

// A port no one listens on now (the kernel's choice), for a rendezvous on this machine.
int free_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) throw Error(std::string("deltatrain launch: no socket for a free port: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  const bool ok = bind(s, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  getsockname(s, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  close(s);
  if (!ok) throw Error(std::string("deltatrain launch: no free port on 127.0.0.1: ") + std::strerror(errno));
  return ntohs(address.sin_port);
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    return "was killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

int exit_code(int status) { return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status); }

}  // namespace

void parse_master(const std::string& text, LaunchPlan& plan) {
  const auto colon = text.rfind(':');
  const std::string port = colon == std::string::npos ? "" : text.substr(colon + 1);
  char* end = nullptr;
  const long n = port.empty() ? 0 : std::strtol(port.c_str(), &end, 10);
  if (colon == 0 || colon == std::string::npos || port.empty() || *end || n < 1 || n > 65535)
    throw Error("--master '" + text + "' is not ADDR:PORT (rank 0's machine and a free port on it, e.g. node1:29500)");
  plan.master_addr = text.substr(0, colon);
  plan.master_port = static_cast<int>(n);
}

int launch_ranks(const LaunchPlan& plan, const std::string& program, const std::vector<std::string>& args) {
  if (plan.nproc_per_node < 1) throw Error("--nproc-per-node must be at least 1");
  if (plan.nnodes < 1) throw Error("--nnodes must be at least 1");
  if (plan.node_rank < 0 || plan.node_rank >= plan.nnodes)
    throw Error("--node-rank " + std::to_string(plan.node_rank) + " is not below --nnodes " + std::to_string(plan.nnodes));
  if (plan.nnodes > 1 && plan.master_addr.empty())
    throw Error("--nnodes " + std::to_string(plan.nnodes) + " needs --master ADDR:PORT (rank 0's machine, the same on every node)");
  if (args.empty()) throw Error("no command to launch (deltatrain launch --nproc-per-node N -- train run.toml)");
  const std::string addr = plan.master_addr.empty() ? "127.0.0.1" : plan.master_addr;
  const int port = plan.master_addr.empty() ? free_port() : plan.master_port;
  const int world_size = plan.nproc_per_node * plan.nnodes;
  const std::string threads = std::to_string(std::max(1, available_cores() / plan.nproc_per_node));

  struct sigaction forward {};
  forward.sa_handler = remember_signal;
  sigaction(SIGINT, &forward, nullptr);
  sigaction(SIGTERM, &forward, nullptr);

  std::vector<pid_t> pids;
  for (int local = 0; local < plan.nproc_per_node; ++local) {
    const int rank = plan.node_rank * plan.nproc_per_node + local;
    const pid_t pid = fork();
    if (pid < 0) throw Error(std::string("deltatrain launch: cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world_size).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(plan.nproc_per_node).c_str(), 1);
      setenv("GROUP_RANK", std::to_string(plan.node_rank).c_str(), 1);
      setenv("MASTER_ADDR", addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("DT_THREADS", threads.c_str(), 0);
      std::vector<char*> argv{const_cast<char*>(program.c_str())};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(program.c_str(), argv.data());
      std::cerr << "deltatrain launch: cannot run " << program << ": " << std::strerror(errno) << "\n";
      _exit(127);
    }
    pids.push_back(pid);
  }

  // Waits; after the first failure the others get `grace`, then SIGTERM, then SIGKILL.
  int first_failure = 0;
  size_t running = pids.size();
  std::chrono::steady_clock::time_point failed_at;
  bool terminated = false, killed = false;
  int signal_sent = 0;
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const auto it = std::find(pids.begin(), pids.end(), pid);
      if (it == pids.end()) continue;
      --running;
      const int rank = plan.node_rank * plan.nproc_per_node + static_cast<int>(it - pids.begin());
      *it = 0;
      if (exit_code(status) != 0 && first_failure == 0) {
        first_failure = exit_code(status);
        failed_at = std::chrono::steady_clock::now();
        if (!forwarded_signal)
          std::cerr << "deltatrain launch: rank " << rank << " (process " << pid << ") " << describe(status)
                    << (running ? "; stopping the other ranks" : "") << std::endl;
      }
      continue;
    }
    if (const int s = forwarded_signal; s && s != signal_sent) {
      for (pid_t p : pids)
        if (p) kill(p, s);
      signal_sent = s;
    }
    if (first_failure) {
      const auto waited = std::chrono::steady_clock::now() - failed_at;
      if (!terminated && waited > plan.grace) {
        for (pid_t p : pids)
          if (p) kill(p, SIGTERM);
        terminated = true;
      }
      if (!killed && waited > plan.grace + std::chrono::seconds(5)) {
        for (pid_t p : pids)
          if (p) kill(p, SIGKILL);
        killed = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (forwarded_signal && !first_failure) first_failure = 128 + forwarded_signal;
  return first_failure;
}

}  // namespace dt::dist
