#include "mgd/distributed/environment.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

namespace mgd::distributed {
namespace {

int64_t parse_int(const char* name, const char* text, int64_t min_value) {
  TORCH_CHECK(text && *text, "Environment variable ", name, " is empty");
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  TORCH_CHECK(end && *end == '\0' && v >= min_value, "Invalid environment variable ", name, "='",
              text, "' (expected an integer >= ", min_value, ")");
  return static_cast<int64_t>(v);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  TORCH_CHECK(!first.empty(), "Cannot read the SLURM node list '", nodelist,
              "'; set MASTER_ADDR to the first node's address");
  const auto open = first.find('[');
  if (open == std::string::npos) return first;
  const auto close = first.find(']', open);
  TORCH_CHECK(close != std::string::npos && open > 0, "Cannot read the SLURM node list '", nodelist,
              "'; set MASTER_ADDR to the first node's address");
  std::string range = first.substr(open + 1, close - open - 1);
  range = range.substr(0, range.find_first_of(",-"));
  TORCH_CHECK(!range.empty(), "Cannot read the SLURM node list '", nodelist,
              "'; set MASTER_ADDR to the first node's address");
  return first.substr(0, open) + range + first.substr(close + 1);
}

WorldInfo detect_world(const std::function<const char*(const char*)>& lookup_fn) {
  auto get = [&](const char* name) -> const char* {
    return lookup_fn ? lookup_fn(name) : std::getenv(name);
  };
  WorldInfo w;
  const char *rank = nullptr, *size = nullptr, *local = nullptr;
  const char *rank_name = "", *size_name = "", *local_name = "";
  if (get("RANK") && get("WORLD_SIZE")) {
    w.source = "torchrun";
    rank_name = "RANK", size_name = "WORLD_SIZE", local_name = "LOCAL_RANK";
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    w.source = "slurm";
    rank_name = "SLURM_PROCID", size_name = "SLURM_NTASKS", local_name = "SLURM_LOCALID";
  } else if (get("OMPI_COMM_WORLD_RANK") && get("OMPI_COMM_WORLD_SIZE")) {
    w.source = "openmpi";
    rank_name = "OMPI_COMM_WORLD_RANK", size_name = "OMPI_COMM_WORLD_SIZE";
    local_name = "OMPI_COMM_WORLD_LOCAL_RANK";
  } else {
    return w;
  }
  rank = get(rank_name), size = get(size_name), local = get(local_name);
  w.rank = parse_int(rank_name, rank, 0);
  w.world_size = parse_int(size_name, size, 1);
  w.local_rank = local ? parse_int(local_name, local, 0) : 0;
  TORCH_CHECK(w.rank < w.world_size, "Environment variable ", rank_name, "=", w.rank,
              " is not below ", size_name, "=", w.world_size);
  if (const char* addr = get("MASTER_ADDR"); addr && *addr) {
    w.master_addr = addr;
  } else if (w.source == "slurm" && get("SLURM_JOB_NODELIST")) {
    w.master_addr = first_slurm_host(get("SLURM_JOB_NODELIST"));
  } else if (w.source == "torchrun" && w.world_size > 1) {
    TORCH_CHECK(false, "RANK and WORLD_SIZE are set but MASTER_ADDR is not");
  }
  if (const char* port = get("MASTER_PORT"); port && *port) {
    w.master_port = static_cast<int>(parse_int("MASTER_PORT", port, 1));
    TORCH_CHECK(w.master_port <= 65535, "Invalid environment variable MASTER_PORT='", port,
                "' (expected 1..65535)");
  } else {
    TORCH_CHECK(w.source != "torchrun" || w.world_size == 1,
                "RANK and WORLD_SIZE are set but MASTER_PORT is not");
  }
  if (w.source == "torchrun") {
    if (const char* agent = get("TORCHELASTIC_USE_AGENT_STORE")) {
      const std::string v = agent;
      w.agent_store = v == "True" || v == "true" || v == "1";
    }
    if (const char* restarts = get("TORCHELASTIC_RESTART_COUNT"); restarts && *restarts) {
      w.restart_count = parse_int("TORCHELASTIC_RESTART_COUNT", restarts, 0);
    }
  }
  return w;
}

}  // namespace mgd::distributed
