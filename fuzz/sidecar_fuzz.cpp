// The bundle sidecar: a copy of the JANGTQ golden bundle whose jang_config.json and jangtq_runtime.safetensors are
// the input (separated by a "\n#~#\n" line), checked by `zaya verify` and read by the loader's weight resolver
// (the MXTQ tables of two expert stacks).
#include <filesystem>
#include <memory>

#include "fuzz_util.h"
#include "io/safetensors.h"
#include "models/weight_resolver.h"
#include "zaya/error.h"
#include "zaya/verify.h"

#ifndef ZAYA_FUZZ_BUNDLE
#error "ZAYA_FUZZ_BUNDLE: the golden JANGTQ bundle folder"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const fs::path dir = [] {
    const fs::path d = zaya::fuzz::scratch_dir() / "bundle";
    fs::create_directories(d);
    for (const auto& e : fs::directory_iterator(ZAYA_FUZZ_BUNDLE))
      fs::copy_file(e.path(), d / e.path().filename(), fs::copy_options::overwrite_existing);
    return d;
  }();
  static const zaya::TensorStore store = zaya::TensorStore::open(dir.string());
  const auto parts = zaya::fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size), 2);
  zaya::fuzz::write_file(dir / "jang_config.json", parts[0]);
  zaya::fuzz::write_file(dir / "jangtq_runtime.safetensors", parts[1]);
  try {
    (void)zaya::verify_bundle(dir.string());
  } catch (const zaya::Error&) {
  }
  try {
    const zaya::WeightResolver r(store, dir.string());
    const std::string sw = "model.layers.1.zaya_block.experts.switch_mlp.";
    (void)r.matrix(sw + "gate_proj", 48, 64, 4);
    (void)r.matrix(sw + "down_proj", 64, 48, 4);
  } catch (const zaya::Error&) {
  }
  return 0;
}
