// tokenizer.json (+ tokenizer_config.json, generation_config.json) loading, then encode / decode / streaming
// decode round trips of a text. Input: tokenizer.json, tokenizer_config.json, generation_config.json and the text,
// separated by "\n#~#\n" lines.
#include <cstring>
#include <filesystem>

#include "fuzz_util.h"
#include "zaya/error.h"
#include "zaya/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  const auto parts = zaya::fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 4);
  const fs::path dir = zaya::fuzz::scratch_dir() / "tok";
  fs::create_directories(dir);
  zaya::fuzz::write_file(dir / "tokenizer.json", parts[0]);
  const char* side[] = {"tokenizer_config.json", "generation_config.json"};
  for (int i = 0; i < 2; ++i) {
    if (parts[size_t(i) + 1].empty()) fs::remove(dir / side[i]);
    else zaya::fuzz::write_file(dir / side[i], parts[size_t(i) + 1]);
  }
  try {
    const zaya::Tokenizer tok = zaya::Tokenizer::load(dir.string());
    const std::string& text = parts[3];
    for (bool special : {false, true}) {
      const std::vector<int32_t> ids = tok.encode(text, special);
      const std::string back = tok.decode(ids, false);
      (void)tok.decode(ids, true);
      zaya::StreamingDetokenizer st(tok);
      std::string streamed;
      for (int32_t id : ids) streamed += st.put(id);
      streamed += st.flush();
      (void)back;
    }
    // Arbitrary ids, out-of-range ones included, decode without failing.
    std::vector<int32_t> raw;
    for (size_t i = 0; i + 4 <= text.size() && raw.size() < 64; i += 4) {
      int32_t v;
      std::memcpy(&v, text.data() + i, 4);
      raw.push_back(v);
    }
    (void)tok.decode(raw, false);
  } catch (const zaya::Error&) {
  }
  return 0;
}
