// safetensors header and tensor table: open (validation), then read every small tensor through the converters.
#include "fuzz_util.h"
#include "io/safetensors.h"
#include "zaya/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zaya::fuzz::MemFile f(std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    auto st = zaya::SafetensorsFile::open(f.path());
    for (const auto& t : st->tensors()) {
      if (t.nbytes > (1u << 16)) continue;
      try {
        (void)zaya::to_f32(t);
      } catch (const zaya::Error&) {
      }
    }
  } catch (const zaya::Error&) {
  }
  return 0;
}
