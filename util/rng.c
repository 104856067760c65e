// rng.c: PCG32 (XSH-RR variant). Deterministic across platforms, so the
// same seed gives the same initial weights, shuffles and dropout masks.
#include "util.h"

#include <math.h>

void rng_seed(Rng *r, uint64_t seed, uint64_t stream) {
  r->state = 0;
  r->inc = (stream << 1) | 1;
  rng_u32(r);
  r->state += seed;
  rng_u32(r);
}

uint32_t rng_u32(Rng *r) {
  uint64_t old = r->state;
  r->state = old * 6364136223846793005ULL + r->inc;
  uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
  uint32_t rot = (uint32_t)(old >> 59);
  return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

// Lemire's rejection method would be faster; this one is obviously unbiased.
uint32_t rng_below(Rng *r, uint32_t n) {
  if (n <= 1)
    return 0;
  uint32_t threshold = (uint32_t)(-n) % n;
  for (;;) {
    uint32_t x = rng_u32(r);
    if (x >= threshold)
      return x % n;
  }
}

double rng_uniform(Rng *r) {
  uint64_t hi = rng_u32(r) >> 5, lo = rng_u32(r) >> 6;   // 27 + 26 bits
  return (hi * 67108864.0 + lo) / 9007199254740992.0;
}

float rng_uniformf(Rng *r) { return (rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

double rng_normal(Rng *r) {
  double u1 = rng_uniform(r), u2 = rng_uniform(r);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
