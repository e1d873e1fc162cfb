// ProcessGroupGloo.hpp is compiled only under USE_C10D_GLOO (LibTorch defines it when it
// builds c10d with Gloo, as Debian's libtorch-dev does, but does not export the define).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include "mgd/distributed/communicator.h"

#include <c10/util/Exception.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MGD_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>

#include <string>
#include <thread>

#include "mgd/training/interrupt.h"
#include "wait.h"

namespace mgd::distributed {

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

namespace {

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

std::string where(const WorldInfo& w) {
  return "rank " + std::to_string(w.rank) + " of " + std::to_string(w.world_size) +
         ", rendezvous " + w.master_addr + ":" + std::to_string(w.master_port);
}

}  // namespace

namespace detail {

void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>>& works, const WorldInfo& world,
              const char* what) {
  const double start = training::monotonic_seconds();
  for (auto& w : works) {
    for (;;) {
      try {
        w->wait(std::chrono::milliseconds(100));
        break;
      } catch (const std::exception&) {
        // Our slice ran out -- or the work completed just after it did, and then its own
        // outcome counts: wait() without a timeout returns, or throws the real failure. (A
        // rethrown "Operation timed out!" here ended a rank whose collective had succeeded:
        // the other ranks then failed in the next one. Seen under load with sanitizers.)
        if (w->isCompleted()) {
          w->wait();
          break;
        }
      }
      if (training::stop_grace_expired(start)) {
        training::exit_for_stop(std::string("waiting for the other ranks in the ") + what +
                                " (" + where(world) +
                                "); they did not join it. The last checkpoint is kept");
      }
    }
  }
}

}  // namespace detail

Communicator::Communicator(WorldInfo world, CommunicatorOptions options)
    : world_(std::move(world)), options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

Communicator::~Communicator() = default;

std::shared_ptr<Communicator> Communicator::create(const WorldInfo& world,
                                                   const CommunicatorOptions& options) {
  TORCH_CHECK(world.world_size >= 1 && world.rank >= 0 && world.rank < world.world_size,
              "Invalid world: rank ", world.rank, " of ", world.world_size);
  TORCH_CHECK(options.timeout_seconds() > 0,
              "Invalid distributed timeout: ", options.timeout_seconds(), " s (expected > 0)");
  std::shared_ptr<Communicator> comm(new Communicator(world, options));
  if (!world.distributed()) return comm;
  const auto timeout = to_ms(options.timeout_seconds());

  // A signal while waiting for the other ranks ends the process at once (nothing to save).
  training::RendezvousScope waiting("waiting for the other ranks to join (" + where(world) + ")");
  // Rendezvous: rank 0 serves the store -- unless torchrun's agent serves it already (its
  // static rendezvous) -- and the others connect, retrying until the timeout.
  c10d::TCPStoreOptions store_opts;
  store_opts.port = static_cast<uint16_t>(world.master_port);
  store_opts.isServer = world.rank == 0 && !world.agent_store;
  store_opts.numWorkers = static_cast<size_t>(world.world_size);
  store_opts.waitWorkers = false;  // the world-size check below waits, with a clearer error
  store_opts.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, store_opts);
    // Keys of one attempt only: torchrun's store outlives a restarted attempt.
    store = c10::make_intrusive<c10d::PrefixStore>(
        "mgd/attempt_" + std::to_string(world.restart_count), store);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    TORCH_CHECK(!store_opts.isServer, "Rank 0 cannot serve the rendezvous on ", world.master_addr, ":",
                world.master_port, " (is the port in use, or the address not this machine's?): ",
                what.substr(0, what.find('\n')));
    TORCH_CHECK(false, "Cannot reach the rendezvous server (rank 0) at ", world.master_addr, ":",
                world.master_port, " within ", options.timeout_seconds(), " s (", where(world),
                "): ", what.substr(0, what.find('\n')));
  }

  // Every rank must agree on the world size; each announces it, and rank 0's is the truth.
  try {
    const std::string mine = std::to_string(world.world_size);
    if (world.rank == 0)
      store->set("mgd/world_size", std::vector<uint8_t>(mine.begin(), mine.end()));
    store->setTimeout(timeout);
    const auto theirs_bytes = store->get("mgd/world_size");
    const std::string theirs(theirs_bytes.begin(), theirs_bytes.end());
    TORCH_CHECK(theirs == mine, "World size mismatch: rank ", world.rank, " was started with ",
                mine, " processes but rank 0 at ", world.master_addr, ":", world.master_port,
                " with ", theirs);
    const int64_t joined = store->add("mgd/joined", 1);
    TORCH_CHECK(joined <= world.world_size, "More processes than the world size ", world.world_size,
                " joined the rendezvous at ", world.master_addr, ":", world.master_port,
                " (a rank started twice, or a stale job on this port?)");
    // Wait for all ranks before building the process group, so a missing one is named here.
    const auto t0 = std::chrono::steady_clock::now();
    while (store->add("mgd/joined", 0) < world.world_size) {
      TORCH_CHECK(std::chrono::steady_clock::now() - t0 < timeout, "Only ",
                  store->add("mgd/joined", 0), " of ", world.world_size,
                  " processes joined the rendezvous at ", world.master_addr, ":", world.master_port,
                  " within ", options.timeout_seconds(),
                  " s (a rank did not start, or they disagree on the world size)");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "Rendezvous failed (", where(world), "): ", e.what());
  }
  comm->impl_->store = store;

  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("mgd/pg", store);
  if (options.device().is_cuda()) {
#ifdef MGD_WITH_NCCL
    auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
    nccl_opts->timeout = timeout;
    comm->impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        prefixed, static_cast<int>(world.rank), static_cast<int>(world.world_size), nccl_opts);
    return comm;
#else
    TORCH_CHECK(false,
                "Data-parallel training on CUDA needs NCCL: rebuild mgd with "
                "-DMGD_WITH_NCCL=ON against a CUDA LibTorch");
#endif
  }
  auto gloo_opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // GLOO_SOCKET_IFNAME picks the interface as in PyTorch; a loopback master means one machine.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(world.master_addr)) {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    gloo_opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  gloo_opts->threads = 2;
  try {
    comm->impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        prefixed, static_cast<int>(world.rank), static_cast<int>(world.world_size), gloo_opts);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "Cannot connect the ranks (", where(world), "): ", e.what());
  }
  return comm;
}

void Communicator::all_reduce_sum(std::vector<torch::Tensor> tensors, const char* what) {
  if (!impl_->group || tensors.empty()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      works.push_back(impl_->group->allreduce(one, c10d::AllreduceOptions{}));
    }
    detail::wait_all(works, world_, what);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "Distributed ", what, " failed on ", where(world_),
                ": another rank died, hung for more than ", options_.timeout_seconds(),
                " s (--dist-timeout) or lost its connection: ", e.what());
  }
}

void Communicator::broadcast(std::vector<torch::Tensor> tensors, int64_t root, const char* what) {
  if (!impl_->group || tensors.empty()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  try {
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      works.push_back(impl_->group->broadcast(one, opts));
    }
    detail::wait_all(works, world_, what);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "Distributed ", what, " failed on ", where(world_),
                ": another rank died, hung for more than ", options_.timeout_seconds(),
                " s (--dist-timeout) or lost its connection: ", e.what());
  }
}

void Communicator::barrier() {
  // An all-reduce of one number: a barrier that fails like every other collective.
  all_reduce_sum({torch::zeros({1})}, "barrier");
}

}  // namespace mgd::distributed
