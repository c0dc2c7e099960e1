// The .npy reader (golden data, `zaya logits` outputs read back).
#include "fuzz_util.h"
#include "zaya/error.h"
#include "zaya/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  zaya::fuzz::MemFile f(std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    (void)zaya::read_npy(f.path());
  } catch (const zaya::Error&) {
  }
  return 0;
}
