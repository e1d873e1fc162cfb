// The figures every benchmark writes with --json, in the one format scripts/bench merges:
// a list of {"name", "mgd", "baseline", "unit", "advantage", "target"} (advantage > 1: mgd is
// better; target: the advantage aimed at, null when none). Torch-free.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace mgd::bench {

struct Figure {
  std::string name;
  double mgd, baseline;
  std::string unit;
  double advantage;
  double target;  ///< NaN or <= 0: none (null)
};

/// Writes `figures` to `path`; false when the file cannot be written.
inline bool write_figures(const std::string& path, const std::vector<Figure>& figures) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f, "[\n");
  for (size_t i = 0; i < figures.size(); ++i) {
    const Figure& e = figures[i];
    std::fprintf(f,
                 "  {\"name\": \"%s\", \"mgd\": %.6g, \"baseline\": %.6g, \"unit\": \"%s\", "
                 "\"advantage\": %.6g, \"target\": ",
                 e.name.c_str(), e.mgd, e.baseline, e.unit.c_str(), e.advantage);
    if (e.target > 0) {
      std::fprintf(f, "%.6g}", e.target);
    } else {
      std::fprintf(f, "null}");
    }
    std::fprintf(f, i + 1 < figures.size() ? ",\n" : "\n");
  }
  std::fprintf(f, "]\n");
  return std::fclose(f) == 0;
}

}  // namespace mgd::bench
