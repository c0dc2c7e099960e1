#pragma once
// Quantization formats of MLX / JANG bundles (spec: bundle-formats.md): bit-exact packing, quantizers that
// reproduce MLX's rules, and scalar dequantizers. These are the reference definitions; the fast matmul kernels
// (src/kernels) are tested against them.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "io/dtype.h"
#include "tensor/weight_format.h"

namespace zaya::quant {

// ---- MLX affine (mode "affine"): w = q · scale + bias per group, q unsigned `bits`-bit codes -----------------------

bool affine_bits_supported(int bits);         // 2, 3, 4, 5, 6, 8
bool affine_group_supported(int group_size);  // 32, 64, 128

// Code i of a row packed as one little-endian LSB-first bit stream (element i at stream bits [i·bits, (i+1)·bits)).
uint32_t unpack_code(const uint32_t* packed_row, int64_t i, int bits);
// Packs n codes into ceil(n·bits/32) words (the same stream; unused high bits zero).
void pack_codes(const uint8_t* codes, int64_t n, int bits, uint32_t* packed_row);
int64_t packed_words(int64_t n, int bits);  // n·bits/32 rounded up

// Quantizes one row of n values (n % group_size == 0) as MLX does (bundle-formats §3.4). `metal_rules` selects the
// Apple-GPU kernel's behaviour (running max starts at 0, round half away from zero) — what the published bundles
// were made with — instead of the CPU kernel's (true max, round half to even). Codes are computed with the fp32
// scale/bias; scales/biases are returned in fp32 and the caller rounds them to the storage dtype (F16/BF16).
void affine_quantize_row(const float* w, int64_t n, int bits, int group_size, bool metal_rules, uint32_t* packed_row,
                         float* scales, float* biases);
// Searched scale/bias (`zaya convert --search-scales`), same format: for each group, candidate code grids around the
// min/max one (a step count from 2^bits−2 to 2^bits, in tenths, as llama.cpp's k-quants search) refitted by
// weighted least squares, and ranges clipped at either end (up to 24 %); each candidate is rounded to float16,
// re-coded against the rounded values and refitted while that helps. MLX's own choice is one of the candidates, so
// the weighted error never exceeds it. The returned scales/biases are exactly float16-representable and
// the codes were chosen for those values. Weighting: None = plain squared error; Magnitude = each weight's error
// counted with (row RMS + |w|), which keeps large weights more exact.
enum class ScaleWeighting { None, Magnitude };
void affine_quantize_row_search(const float* w, int64_t n, int bits, int group_size, ScaleWeighting weighting,
                                uint32_t* packed_row, float* scales, float* biases);
// out[i] = q_i · scale[i/G] + bias[i/G], computed in fp32 as (q·s) then + b.
void affine_dequantize_row(const uint32_t* packed_row, const float* scales, const float* biases, int64_t n, int bits,
                           int group_size, float* out);

// ---- MLX floating-point modes -----------------------------------------------------------------------------------

// The modes are WeightFormat::MxFp4 (E2M1 elements, E8M0 scale, group 32), NvFp4 (E2M1, E4M3 scale, group 16) and
// MxFp8 (E4M3 elements, E8M0 scale, group 32); the element decoders are in io/dtype.h.
bool is_fp_mode(WeightFormat m);
int fp_group_size(WeightFormat m);
int fp_bits(WeightFormat m);
// Quantizes one row (n % group == 0) with MLX's kernel rules (§4): packed codes + one U8 scale per group.
void fp_quantize_row(WeightFormat m, const float* w, int64_t n, uint32_t* packed_row, uint8_t* scales);
void fp_dequantize_row(WeightFormat m, const uint32_t* packed_row, const uint8_t* scales, int64_t n, float* out);

// ---- JANG MXTQ (TurboQuant-style) (§8) ---------------------------------------------------------------------------

// Random ±1 signs of numpy default_rng(seed).choice([-1, 1], size=n) (PCG64, SeedSequence) — bit-exact.
std::vector<float> mxtq_signs(int64_t n, uint64_t seed);
// The 128-bit PCG64 state and increment (as high/low halves) that numpy's default_rng(seed) starts from:
// SeedSequence(seed).generate_state(4, uint64) fed to PCG64's set-seq seeding. Seed 42 gives §8.2's state.
struct Pcg64State {
  uint64_t state_hi, state_lo, inc_hi, inc_lo;
};
Pcg64State pcg64_seeded_state(uint64_t seed);
// NumPy's PCG64 bit generator (default_rng(seed).bit_generator): for reproducing NumPy draws in tests and writers.
class Pcg64 {
 public:
  explicit Pcg64(uint64_t seed);
  uint64_t next64();
  uint32_t next32();  // NumPy buffers: the low half of a 64-bit output first, then its high half
  double next_double();  // (next64 >> 11) · 2^-53, in [0, 1)

 private:
  uint64_t state_hi_, state_lo_, inc_hi_, inc_lo_;
  uint32_t buf_ = 0;
  bool has_buf_ = false;
};

// Lloyd-Max codebook of 2^bits ascending values for one coordinate of a uniform unit vector in R^n (§8.2 step 4).
// Real bundles ship it in jangtq_runtime.safetensors: read it from there; this is for writing bundles. It follows
// JANG's float64 NumPy computation step by step (incl. NumPy's pairwise summation inside trapz) and reproduces the
// golden codebook.{64,2048}.{2,3,4} bit-exactly. Not thread-safe against concurrent std::lgamma callers (signgam).
std::vector<float> mxtq_codebook(int64_t n, int bits);
// Descending power-of-two block sizes covering n (e.g. 192 → {128, 64}; 48 → {32, 16}).
std::vector<int64_t> hadamard_blocks(int64_t n);
// In-place orthonormal Walsh–Hadamard transform applied independently on each block of hadamard_blocks(n)
// (butterflies (a+b, a−b) for h = 1, 2, 4, …, then × float32(1/√block)).
void hadamard_blocks_inplace(float* v, int64_t n);
// out = H(signs ⊙ x): the rotation applied to weight rows before quantizing and to activations on the fast path
// (y_o = norm_o · Σ_j c[idx_oj] · out_j). `out` may equal `x`.
void mxtq_rotate(const float* x, int64_t n, const float* signs, float* out);
// Indices per U32 word: ⌊32/bits⌋ (3-bit: 10 per word, top 2 bits zero). Words per row: ceil(n / per_word).
int mxtq_per_word(int bits);
int64_t mxtq_words(int64_t n, int bits);
uint32_t mxtq_unpack_index(const uint32_t* packed_row, int64_t i, int bits);
// Quantizes one row: r = H(s ⊙ w); norm = ‖r‖ (fp32, NumPy's pairwise order; JANG sums on the MLX GPU, so a
// 1-ulp norm and a rare boundary index flip are possible against real bundles); u = r / max(norm, 1e-10); idx = #{k : u > (c_k + c_{k+1})/2}.
void mxtq_quantize_row(const float* w, int64_t n, int bits, const float* signs, const float* codebook,
                       uint32_t* packed_row, float* norm);
// Searched variant (`--search-scales`), same format: starting from mxtq_quantize_row's indices, alternates the
// least-squares norm for the indices (rounded to float16) with re-picking each index for that norm, keeping the
// result with the smallest ‖r − norm·c[idx]‖² (which, the rotation being orthonormal, is the weight-space error).
// *norm is float16-representable.
void mxtq_quantize_row_search(const float* w, int64_t n, int bits, const float* signs, const float* codebook,
                              uint32_t* packed_row, float* norm);
// Explicit dequantization: W[o,:] = s ⊙ H(norm · c[idx]).
void mxtq_dequantize_row(const uint32_t* packed_row, float norm, int64_t n, int bits, const float* signs,
                         const float* codebook, float* out);

}  // namespace zaya::quant
