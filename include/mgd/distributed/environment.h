// Where this process stands in a data-parallel job (spec 8): its rank, the world size and the
// rendezvous address, read from the environment the way the usual launchers set it.
//
//   torchrun / mgd launch: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; torchrun's
//                          TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_RESTART_COUNT
//   SLURM (srun):          SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master is
//                          MASTER_ADDR or else the first host of SLURM_JOB_NODELIST
//   Open MPI (mpirun):     OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK
// Checked in that order; MASTER_PORT (default 29500) and MASTER_ADDR (default 127.0.0.1)
// complete SLURM and Open MPI. Without any of them the process is a world of one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mgd::distributed {

struct WorldInfo {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none";  ///< "torchrun", "slurm", "openmpi" or "none"
  /// torchrun's static rendezvous (TORCHELASTIC_USE_AGENT_STORE=True): the launcher itself
  /// serves the store on MASTER_PORT, so rank 0 connects to it like every other rank.
  bool agent_store = false;
  /// torchrun's restart count (TORCHELASTIC_RESTART_COUNT): keys of a restarted attempt
  /// must not meet the previous attempt's in the launcher's store.
  int64_t restart_count = 0;
  bool distributed() const { return world_size > 1; }
};

/// Reads the environment through `lookup` (default: std::getenv; returns null when unset).
/// Throws c10::Error naming the variable on a malformed or inconsistent value.
WorldInfo detect_world(const std::function<const char*(const char*)>& lookup = {});

/// The first host of a SLURM node list: "node[01-04,07],gpu3" -> "node01", "a,b" -> "a".
/// Throws c10::Error on a list it cannot read.
std::string first_slurm_host(const std::string& nodelist);

}  // namespace mgd::distributed
