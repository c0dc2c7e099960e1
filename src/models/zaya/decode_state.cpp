#include "zaya/decode_state.h"

#include "zaya/config.h"

#include <algorithm>
#include <cstring>

namespace zaya {

namespace {
// The first `len` rows of every head of a [nk, from, dh] cache into a [nk, to, dh] one.
std::vector<float> relayout(const std::vector<float>& c, size_t len, size_t from, size_t to, size_t nk, size_t dh) {
  std::vector<float> out(nk * to * dh);
  if (len > 0)
    for (size_t j = 0; j < nk; ++j) std::memcpy(&out[j * to * dh], &c[j * from * dh], len * dh * sizeof(float));
  return out;
}
}  // namespace

void AttentionLayerState::reserve_positions(size_t len, size_t need, size_t nk, size_t dh) {
  if (need <= kv_capacity) return;
  const size_t cap = std::max({need, 2 * kv_capacity, size_t{16}});
  k_cache = relayout(k_cache, len, kv_capacity, cap, nk, dh);
  v_cache = relayout(v_cache, len, kv_capacity, cap, nk, dh);
  kv_capacity = cap;
}

void AttentionLayerState::shrink_positions(size_t len, size_t nk, size_t dh) {
  if (len >= kv_capacity) return;
  k_cache = relayout(k_cache, len, kv_capacity, len, nk, dh);
  v_cache = relayout(v_cache, len, kv_capacity, len, nk, dh);
  kv_capacity = len;
}

DecodeState::DecodeState(const ModelConfig& cfg)
    : max_positions_(cfg.max_positions), conv_channels_(cfg.conv_channels()), hidden_(cfg.hidden),
      kv_heads_(cfg.n_kv_heads), head_dim_(cfg.head_dim) {
  layers_.resize(static_cast<size_t>(cfg.n_blocks));
  reset();
}

void DecodeState::reset() {
  pos_ = 0;
  for (auto& l : layers_) {
    l.k_cache.clear();
    l.v_cache.clear();
    l.kv_capacity = 0;
    l.conv_state.assign(static_cast<size_t>(2 * conv_channels_), 0.0f);
    l.prev_x.assign(static_cast<size_t>(hidden_), 0.0f);
  }
}

size_t DecodeState::bytes() const {
  size_t b = 0;
  for (const auto& l : layers_)
    b += (l.k_cache.capacity() + l.v_cache.capacity() + l.conv_state.capacity() + l.prev_x.capacity()) * sizeof(float);
  return b;
}

void DecodeState::shrink_to_fit() {
  for (auto& l : layers_) {
    l.shrink_positions(static_cast<size_t>(pos_), static_cast<size_t>(kv_heads_), static_cast<size_t>(head_dim_));
    l.k_cache.shrink_to_fit();
    l.v_cache.shrink_to_fit();
  }
}

size_t DecodeState::bytes_per_token(const ModelConfig& cfg) {
  return static_cast<size_t>(cfg.n_blocks * 2 * cfg.kv_width()) * sizeof(float);
}

size_t DecodeState::fixed_bytes(const ModelConfig& cfg) {
  return static_cast<size_t>(cfg.n_blocks * (2 * cfg.conv_channels() + cfg.hidden)) * sizeof(float);
}

}  // namespace zaya
