#pragma once
// Writing MLX / JANG bundles (bundle-formats §2–§8): `convert` quantizes a float checkpoint (legacy or native
// layout) into a bundle profile; `synth` writes a random-weight model of any config straight into a profile. Both
// stream tensor by tensor (row chunks of at most a few tens of MB), so peak memory stays far below the model size.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace zaya {

// Bundle profiles. Names as on the command line: mxfp4, jangtq4, q8, q4, mxfp4-e2m1, bf16, f16, f32.
enum class Profile {
  Mxfp4,      // JANG "MXFP4": affine 4-bit g32 linears incl. experts, 8-bit embedding, F16 passthrough
  Jangtq4,    // JANGTQ4: 8-bit affine attention + embedding, F16 router/passthrough, MXTQ 4-bit experts + sidecar
  Q8,         // mlx-lm style 8-bit affine g64 for every quantizable tensor
  Q4,         // mlx-lm style 4-bit affine g64
  Mxfp4E2m1,  // true MLX mode "mxfp4" (E2M1 codes, U8 E8M0 scales, group 32, no biases)
  Bf16,       // unquantized checkpoint in the legacy source layout
  F16,
  F32,
};
Profile parse_profile(const std::string& name);  // throws zaya::Error listing the valid names
const char* profile_name(Profile p);
bool profile_is_quantized(Profile p);
std::vector<std::string> profile_names();

struct ConvertProgress {
  size_t tensor = 0, tensors = 0;  // 1-based index of the tensor being written, and the total
  std::string name;
  uint64_t bytes_written = 0, bytes_total = 0;
};

struct ConvertOptions {
  Profile profile = Profile::Mxfp4;
  bool force = false;  // replace an existing DST
  // Shard limit in tensor bytes (JANG cuts at 1e9; a shard may exceed it by one tensor). 0 = one shard.
  uint64_t shard_bytes = 1000000000ull;
  uint64_t mxtq_seed = 42;
  bool metal_rules = true;  // MLX affine: Apple-GPU kernel rules, what the published bundles were made with
  int threads = 0;          // 0 = the default pool
  // Error-minimising scales/biases (affine) and norms (MXTQ) instead of MLX's and JANG's min-max recipe: the same
  // format and bytes, lower reconstruction error (quant.h affine_quantize_row_search, mxtq_quantize_row_search). The
  // source floats are quantized directly (no float16 staging). Off by default: the default reproduces the published
  // bundles byte for byte.
  bool search_scales = false;
  bool search_weighted = false;  // with search_scales: count each weight's error with (row RMS + |w|)
  // Called as row chunks are written, then once more with name "done" when everything is (may be empty).
  std::function<void(const ConvertProgress&)> progress;
};

struct ConvertResult {
  std::string dir;
  std::vector<std::string> shards;
  size_t tensors = 0;
  uint64_t tensor_bytes = 0, file_bytes = 0;
  double seconds = 0;
};

// SRC: a folder with config.json + safetensors in the legacy or native layout (BF16/F16/F32). DST must not exist
// unless opts.force. Tokenizer/template sidecars of SRC are copied. Throws zaya::Error naming what is wrong.
ConvertResult convert_checkpoint(const std::string& src, const std::string& dst, const ConvertOptions& opts);

struct SynthOptions : ConvertOptions {
  uint64_t seed = 0;          // weight seed (the output is a pure function of config, profile and seed)
  std::string tokenizer_dir;  // optional: tokenizer/template files to copy
};

// Writes a random-weight model of `config_path` (a config.json or a folder holding one; legacy or native) into DST
// without materializing the float model: each tensor is generated row chunk by row chunk, quantized and written.
ConvertResult synth_bundle(const std::string& config_path, const std::string& dst, const SynthOptions& opts);

// The tokenizer / template files copied into bundles.
const std::vector<std::string>& tokenizer_sidecar_files();

}  // namespace zaya
