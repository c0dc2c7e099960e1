// NumPy's default_rng(seed): SeedSequence entropy mixing → PCG64 (XSL-RR 128/64) seeding, and the ±1 sign draw of
// Generator.choice([-1, 1], size=n) that JANG uses for the MXTQ rotation (bundle-formats §8.2 step 1).
#include <array>
#include <vector>

#include "tensor/quant_formats.h"

namespace zaya::quant {

namespace {

__extension__ typedef unsigned __int128 u128;

// SeedSequence constants (from NumPy's bit_generator; pool of 4 uint32 words).
constexpr uint32_t kInitA = 0x43b0d7e5u;
constexpr uint32_t kMultA = 0x931e8875u;
constexpr uint32_t kInitB = 0x8b51f9ddu;
constexpr uint32_t kMultB = 0x58f38dedu;
constexpr uint32_t kMixMultL = 0xca01f9ddu;
constexpr uint32_t kMixMultR = 0x4973f715u;
constexpr int kXShift = 16;
constexpr int kPoolSize = 4;

struct HashMix {
  uint32_t hash_const = kInitA;
  uint32_t operator()(uint32_t value) {
    value ^= hash_const;
    hash_const *= kMultA;
    value *= hash_const;
    value ^= value >> kXShift;
    return value;
  }
};

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t r = kMixMultL * x - kMixMultR * y;
  r ^= r >> kXShift;
  return r;
}

// The pool of SeedSequence(entropy) for an integer entropy split into little-endian uint32 words.
std::array<uint32_t, kPoolSize> seed_pool(uint64_t seed) {
  std::vector<uint32_t> entropy;
  if (seed == 0) entropy.push_back(0);  // NumPy coerces 0 to one zero word
  for (uint64_t s = seed; s > 0; s >>= 32) entropy.push_back(static_cast<uint32_t>(s));
  std::array<uint32_t, kPoolSize> pool{};
  HashMix hm;
  for (int i = 0; i < kPoolSize; ++i) pool[i] = hm(i < static_cast<int>(entropy.size()) ? entropy[i] : 0u);
  // Every word influences every other, so late entropy bits reach the early words.
  for (int src = 0; src < kPoolSize; ++src)
    for (int dst = 0; dst < kPoolSize; ++dst)
      if (src != dst) pool[dst] = mix(pool[dst], hm(pool[src]));
  for (size_t src = kPoolSize; src < entropy.size(); ++src)
    for (int dst = 0; dst < kPoolSize; ++dst) pool[dst] = mix(pool[dst], hm(entropy[src]));
  return pool;
}

// SeedSequence.generate_state(n64, uint64): 2·n64 uint32 words cycled from the pool, viewed as little-endian u64.
std::vector<uint64_t> generate_state_u64(const std::array<uint32_t, kPoolSize>& pool, int n64) {
  std::vector<uint32_t> words(static_cast<size_t>(2 * n64));
  uint32_t hash_const = kInitB;
  for (size_t i = 0; i < words.size(); ++i) {
    uint32_t v = pool[i % kPoolSize];
    v ^= hash_const;
    hash_const *= kMultB;
    v *= hash_const;
    v ^= v >> kXShift;
    words[i] = v;
  }
  std::vector<uint64_t> out(static_cast<size_t>(n64));
  for (int i = 0; i < n64; ++i) out[i] = static_cast<uint64_t>(words[2 * i]) | (static_cast<uint64_t>(words[2 * i + 1]) << 32);
  return out;
}

constexpr u128 kPcgMult = (static_cast<u128>(0x2360ED051FC65DA4ull) << 64) | 0x4385DF649FCCF645ull;

Pcg64State to_state(u128 state, u128 inc) {
  return {static_cast<uint64_t>(state >> 64), static_cast<uint64_t>(state), static_cast<uint64_t>(inc >> 64),
          static_cast<uint64_t>(inc)};
}

u128 join(uint64_t hi, uint64_t lo) { return (static_cast<u128>(hi) << 64) | lo; }

}  // namespace

Pcg64State pcg64_seeded_state(uint64_t seed) {
  const std::vector<uint64_t> v = generate_state_u64(seed_pool(seed), 4);
  const u128 initstate = (static_cast<u128>(v[0]) << 64) | v[1];
  const u128 initseq = (static_cast<u128>(v[2]) << 64) | v[3];
  // pcg_setseq_128_srandom: state 0, odd increment from the sequence, step, add initstate, step.
  const u128 inc = (initseq << 1) | 1u;
  u128 state = 0;
  state = state * kPcgMult + inc;
  state += initstate;
  state = state * kPcgMult + inc;
  return to_state(state, inc);
}

Pcg64::Pcg64(uint64_t seed) {
  const Pcg64State s = pcg64_seeded_state(seed);
  state_hi_ = s.state_hi;
  state_lo_ = s.state_lo;
  inc_hi_ = s.inc_hi;
  inc_lo_ = s.inc_lo;
}

uint64_t Pcg64::next64() {
  // Advance first, then output (XSL-RR: xor of the halves rotated by the top 6 bits).
  const u128 state = join(state_hi_, state_lo_) * kPcgMult + join(inc_hi_, inc_lo_);
  state_hi_ = static_cast<uint64_t>(state >> 64);
  state_lo_ = static_cast<uint64_t>(state);
  const uint64_t x = state_hi_ ^ state_lo_;
  const unsigned rot = static_cast<unsigned>(state_hi_ >> 58);
  return (x >> rot) | (x << ((64u - rot) & 63u));
}

uint32_t Pcg64::next32() {
  if (has_buf_) {
    has_buf_ = false;
    return buf_;
  }
  const uint64_t v = next64();
  buf_ = static_cast<uint32_t>(v >> 32);
  has_buf_ = true;
  return static_cast<uint32_t>(v);
}

double Pcg64::next_double() { return static_cast<double>(next64() >> 11) * (1.0 / 9007199254740992.0); }

std::vector<float> mxtq_signs(int64_t n, uint64_t seed) {
  Pcg64 rng(seed);
  std::vector<float> out(static_cast<size_t>(n > 0 ? n : 0));
  // choice over 2 items draws integers(0, 2) with Lemire's method on 32-bit draws: (u · 2) >> 32 = bit 31 of u,
  // and 2^32 mod 2 = 0 means no draw is ever rejected.
  for (auto& v : out) v = (rng.next32() >> 31) ? 1.0f : -1.0f;
  return out;
}

}  // namespace zaya::quant
