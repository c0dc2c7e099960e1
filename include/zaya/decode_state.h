#pragma once
// Per-sequence decode state (spec §4). For each attention layer: the K/V cache, the conv state (raw q|k projections
// of the two most recent tokens) and the previous token's normalized input (for the delayed value). Plus the
// position counter. The MoE layers have no temporal state. A DecodeState is a plain value: copy it to snapshot.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace zaya {

struct ModelConfig;

struct AttentionLayerState {
  // Keys (after L2 norm · temp and RoPE) and values (v_current ‖ v_delayed) per kv head: [nk, kv_capacity, dh], the
  // first position() rows of each head filled. Head-major, so a head's cache is one contiguous stream for the
  // attention kernel (a decode step reads it whole); the capacity grows by doubling (reserve_positions).
  std::vector<float> k_cache;
  std::vector<float> v_cache;
  size_t kv_capacity = 0;         // positions each head has room for
  std::vector<float> conv_state;  // [2, C]: row 0 = u_{t-2}, row 1 = u_{t-1} (zeros at the start)
  std::vector<float> prev_x;      // [H]: normalized attention input of the latest token (zeros at the start)

  // Row of kv head j at position t (dh floats).
  float* key(size_t j, size_t t, size_t dh) { return k_cache.data() + (j * kv_capacity + t) * dh; }
  float* value(size_t j, size_t t, size_t dh) { return v_cache.data() + (j * kv_capacity + t) * dh; }
  const float* key(size_t j, size_t t, size_t dh) const { return k_cache.data() + (j * kv_capacity + t) * dh; }
  const float* value(size_t j, size_t t, size_t dh) const { return v_cache.data() + (j * kv_capacity + t) * dh; }
  // Room for `need` positions per head, keeping the first `len`: doubles the capacity (at least `need`) when short.
  void reserve_positions(size_t len, size_t need, size_t nk, size_t dh);
  // Capacity down to `len` positions (snapshots).
  void shrink_positions(size_t len, size_t nk, size_t dh);
};

class DecodeState {
 public:
  DecodeState() = default;
  explicit DecodeState(const ModelConfig& cfg);

  int64_t position() const { return pos_; }  // tokens processed so far = next token's position
  int64_t max_positions() const { return max_positions_; }
  size_t n_attention_layers() const { return layers_.size(); }
  AttentionLayerState& layer(size_t i) { return layers_[i]; }
  const AttentionLayerState& layer(size_t i) const { return layers_[i]; }

  void reset();
  // Bytes held now (grows with the context; nothing is preallocated for max_positions).
  size_t bytes() const;
  // Drops cached capacity beyond what is in use (e.g. before storing a snapshot).
  void shrink_to_fit();

  // Called by the model after processing n tokens.
  void advance(int64_t n) { pos_ += n; }

  // Bytes one more token of context adds (K and V of every attention layer, fp32).
  static size_t bytes_per_token(const ModelConfig& cfg);
  // Bytes that do not depend on the context length (conv state and previous input per attention layer).
  static size_t fixed_bytes(const ModelConfig& cfg);

 private:
  int64_t pos_ = 0;
  int64_t max_positions_ = 0;
  int64_t conv_channels_ = 0, hidden_ = 0, kv_heads_ = 0, head_dim_ = 0;
  std::vector<AttentionLayerState> layers_;
};

}  // namespace zaya
