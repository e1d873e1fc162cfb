#include "mgd/data/rng.h"

#include <c10/util/Exception.h>

#include <numeric>

namespace mgd {
namespace data {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

uint64_t mix_seed(uint64_t seed, uint64_t salt) {
  uint64_t state = seed + 0x9e3779b97f4a7c15ULL * salt;
  return splitmix64(state);
}

Rng::Rng(uint64_t seed) {
  uint64_t state = seed;
  for (auto& s : s_) s = splitmix64(state);
}

Rng Rng::for_sample(uint64_t seed, int64_t epoch, int64_t index) {
  // Chained SplitMix64 finalisers: each input perturbs the whole state before the next is added.
  uint64_t state = seed;
  uint64_t h = splitmix64(state);
  state = h ^ static_cast<uint64_t>(epoch);
  h = splitmix64(state);
  state = h ^ static_cast<uint64_t>(index);
  return Rng(splitmix64(state));
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

double Rng::uniform(double low, double high) {
  return low + (high - low) * uniform();
}

int64_t Rng::randint(int64_t low, int64_t high) {
  TORCH_CHECK(high > low, "Rng::randint: empty range [", low, ", ", high, ")");
  // Lemire's multiply-and-reject: unbiased without a division in the common case.
  const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * range;
  uint64_t l = static_cast<uint64_t>(m);
  if (l < range) {
    const uint64_t threshold = -range % range;
    while (l < threshold) {
      m = static_cast<unsigned __int128>(next_u64()) * range;
      l = static_cast<uint64_t>(m);
    }
  }
  return low + static_cast<int64_t>(m >> 64);
}

std::vector<int64_t> random_permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.randint(0, i + 1)]);
  return perm;
}

}  // namespace data
}  // namespace mgd
