#include "zaya/decode_state.h"

#include "zaya/config.h"

namespace zaya {

DecodeState::DecodeState(const ModelConfig& cfg)
    : max_positions_(cfg.max_positions), conv_channels_(cfg.conv_channels()), hidden_(cfg.hidden) {
  layers_.resize(static_cast<size_t>(cfg.n_blocks));
  reset();
}

void DecodeState::reset() {
  pos_ = 0;
  for (auto& l : layers_) {
    l.k_cache.clear();
    l.v_cache.clear();
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
