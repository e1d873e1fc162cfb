// Explicit, portable random numbers for the data pipeline.
//
// Every random choice an augmentation makes is drawn from an Rng the caller passes in, never
// from a global, so a sample's augmentation is a pure function of the seed it was given. The
// loader gives every sample its own Rng seeded from (seed, epoch, dataset index): batches are
// then the same whatever the number of worker threads or their timing.
//
// The generator is xoshiro256** (Blackman & Vigna, "Scrambled linear pseudorandom number
// generators", 2018) seeded through SplitMix64. The distributions are written here rather than
// taken from <random>, whose distributions differ between standard libraries: a seed gives the
// same augmentations with any compiler.
#pragma once

#include <cstdint>
#include <vector>

namespace mgd {
namespace data {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  /// The stream for one sample. The three values are hashed together, so neighbouring indices
  /// or epochs give unrelated streams.
  static Rng for_sample(uint64_t seed, int64_t epoch, int64_t index);

  /// 64 uniformly random bits.
  uint64_t next_u64();
  /// Uniform on [0, 1), 53 random bits.
  double uniform();
  /// Uniform on [low, high).
  double uniform(double low, double high);
  /// Uniform integer on [low, high), like torch.randint (unbiased). Requires high > low.
  int64_t randint(int64_t low, int64_t high);
  /// True with probability p.
  bool bernoulli(double p) { return uniform() < p; }

 private:
  uint64_t s_[4];
};

/// A seed for a stream of its own, derived from `seed` and `salt` (one SplitMix64 step from
/// seed + salt * 2^64/phi): neighbouring salts give unrelated seeds.
uint64_t mix_seed(uint64_t seed, uint64_t salt);

/// A uniformly random permutation of 0..n-1 (Fisher-Yates), drawn from `rng`.
std::vector<int64_t> random_permutation(int64_t n, Rng& rng);

}  // namespace data
}  // namespace mgd
