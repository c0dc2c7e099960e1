// config.json: parsing, then everything `zaya info` derives from it (parameter counts, expected tensors, state sizes).
#include <string>

#include "zaya/config.h"
#include "zaya/decode_state.h"
#include "zaya/error.h"
#include "zaya/model_info.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const zaya::ModelConfig c = zaya::ModelConfig::parse(text, "config.json");
    const zaya::ParamCounts p = zaya::count_parameters(c);
    (void)p;
    (void)zaya::DecodeState::bytes_per_token(c);
    (void)zaya::DecodeState::fixed_bytes(c);
    (void)c.rotary_dims();
  } catch (const zaya::Error&) {
  }
  return 0;
}
