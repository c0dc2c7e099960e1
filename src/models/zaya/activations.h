#pragma once
// Scratch memory of one ZAYA forward call, sized once for its batch shape before the layer loop (gemma.cpp's
// activations struct): the layers write into these buffers and never allocate. Buffers hold `n` rows, the tokens of
// the whole batch; per-sequence work (attention) uses their first rows.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "zaya/config.h"

namespace zaya {

// Rows gathered for a vision-LoRA product (lora.h); sized only for models that have LoRA.
struct LoraScratch {
  std::vector<size_t> rows;            // [n] flagged row indices
  std::vector<float> x, low, delta;    // [n, widest input], [n, widest rank], [n, widest output]
};

struct AttentionScratch {
  std::vector<float> q, k, v_cur;        // projections [n, qw], [n, kw], [n, kw/2]
  std::vector<float> u_ext;              // [n + 2·seqs, C]: per sequence its conv state rows, then q ‖ k of its tokens
  std::vector<float> conv_mid;           // [n + seqs, C]: depthwise stage
  std::vector<float> conv_in, conv_out;  // per head group: interleaved taps [groups, n, 2·dh], products [groups, n, dh]
  std::vector<float> z;                  // [n, C] conv output
  std::vector<float> Q, K, V;            // [n, qw], [n, kw], [n, kw] after coupling / norm / RoPE
  std::vector<float> x_prev, v_del;      // [n, H] previous-token inputs, [n, kw/2]
  std::vector<float> attn;               // [n, qw] attention output before o_proj
  std::vector<std::vector<uint8_t>> image_keys;  // per sequence [context]: image-token keys (image-pairs policy)
  std::vector<int64_t> last_image;       // per sequence: its last image token, or -1
  std::vector<size_t> seq_of_row;        // [n]: the sequence each row belongs to
  LoraScratch lora;
};

struct MoeScratch {
  std::vector<float> h, zn, a1, a2;     // router: [n, D] each
  std::vector<float> logits;            // [n, E(+1)]
  std::vector<float> prob;              // [n] mixing weight of the chosen route
  std::vector<int32_t> choice;          // [n] chosen route (E = skip)
  std::vector<int32_t> order;           // [n] token ids grouped by expert
  std::vector<size_t> expert_begin;     // [E+1] offsets into `order`
  std::vector<size_t> cursor;           // [E] counting-sort cursors
  std::vector<float> xe, gate, up, act, ye;  // gathered tokens [n, H], [n, I] ×3, [n, H]
  std::vector<uint8_t> flags;                // [n] image flags of the gathered tokens
  LoraScratch lora;
};

struct ZayaActivations {
  size_t capacity = 0, capacity_seqs = 0;  // tokens and sequences the buffers hold
  std::vector<float> m, r, x;  // mixer output, residual stream, normalized layer input: [n, H]
  std::vector<float> rho;      // router depth state carried from MoE layer to MoE layer: [n, D]
  std::vector<uint8_t> flags;  // [n] per-token image flags of the batch (all 0 without images)
  AttentionScratch attn;
  MoeScratch moe;
  std::vector<float> head_in;  // [rows asked for, H] final-normed rows for the lm_head
  std::vector<float> logits;   // [rows asked for, V]

  // Sizes every buffer for n tokens in `seqs` sequences (keeps capacity when it is already large enough).
  void reserve(const ModelConfig& cfg, size_t n, size_t seqs = 1);
};

}  // namespace zaya
