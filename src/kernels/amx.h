#pragma once
// The AMX matrix engine (Intel Sapphire Rapids and later): whether this process may use it, the tile configuration
// and the tile instructions. Shared by the kernels that run on it (bf16_amx_hwy.cpp, affine_amx_hwy.cpp).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace zaya::amx {

// The 64-byte operand of LDTILECFG (palette 1): rows and bytes per row of each of the 8 tile registers.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Whether this process may run AMX-TILE with AMX-BF16 and AMX-INT8: the CPU has them (CPUID.(7,0):EDX bits 24, 22,
// 25), the OS saves tile state (XCR0 bits 17, 18) and Linux granted the permission (arch_prctl ARCH_REQ_XCOMP_PERM
// for XTILEDATA, needed before the first tile instruction). ZAYA_NO_AMX=1 in the environment turns the engine off
// (comparisons; the kernels then take their AVX-512 paths).
inline bool usable() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool ok = [] {
    if (const char* e = std::getenv("ZAYA_NO_AMX"); e && *e && std::strcmp(e, "0") != 0) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return false;  // OSXSAVE
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!((d >> 24) & 1) || !((d >> 22) & 1) || !((d >> 25) & 1)) return false;
    uint32_t lo = 0, hi = 0;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

#if defined(__x86_64__)
inline void configure(const TileConfig& cfg) { asm volatile("ldtilecfg %0" ::"m"(cfg)); }
inline void release() { asm volatile("tilerelease" ::); }

// In-register transpose of a 16×16 block of dwords: four rounds, each swapping one bit of the row index with the
// same bit of the column index. For activations into the engine's B layout.
// Round k (bit s = 8 >> k) takes lane c of the low row from (c & s ? the high row's c ^ s : its own c) and of the
// high row from (c & s ? its own c : the low row's c ^ s): the permutex2var indices below (16 + j = the high row).
struct TransposeIndices {
  alignas(64) int32_t lo[4][16], hi[4][16];
  constexpr TransposeIndices() : lo{}, hi{} {
    for (int k = 0, s = 8; k < 4; ++k, s >>= 1)
      for (int c = 0; c < 16; ++c) {
        lo[k][c] = (c & s) ? 16 + (c ^ s) : c;
        hi[k][c] = (c & s) ? 16 + c : (c ^ s);
      }
  }
};
inline constexpr TransposeIndices kTransposeIndices{};

__attribute__((target("avx512f"))) inline void transpose16(__m512i (&r)[16]) {
  for (int k = 0, s = 8; k < 4; ++k, s >>= 1) {
    const __m512i ilo = _mm512_load_si512(kTransposeIndices.lo[k]), ihi = _mm512_load_si512(kTransposeIndices.hi[k]);
    for (int i = 0; i < 16; ++i) {
      if (i & s) continue;
      const __m512i a = r[i], b = r[i | s];
      r[i] = _mm512_permutex2var_epi32(a, ilo, b);
      r[i | s] = _mm512_permutex2var_epi32(a, ihi, b);
    }
  }
}
#endif

}  // namespace zaya::amx

// Tile instructions by register number (the encodings take literals). The assembler knows them whatever the
// compiler's target flags; callers run them only after amx::usable().
#define ZAYA_TILE_LOAD(t, base, stride) \
  asm volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"(static_cast<long>(stride)) : "memory")
#define ZAYA_TILE_STORE(t, base, stride) \
  asm volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"(static_cast<long>(stride)) : "memory")
#define ZAYA_TILE_ZERO(t) asm volatile("tilezero %%tmm" #t ::)
// C += A·B: bf16 pairs (fp32 C); s8 A × s8 B and s8 A × u8 B quads (int32 C, wrapping).
#define ZAYA_TILE_DPBF16PS(c, a, b) asm volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#define ZAYA_TILE_DPBSSD(c, a, b) asm volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
#define ZAYA_TILE_DPBSUD(c, a, b) asm volatile("tdpbsud %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)
