#pragma once
// Shared helpers for the test suite: where the copied golden data and fetched assets live.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors_writer.h"

namespace zaya::test {

// tests/data (golden data copied from ../shared/golden, committed).
std::string data_dir();
// build/assets (files fetched by scripts/setup.sh, e.g. the Gemma 3 tokenizer).
std::string assets_dir();
// Path to the built `zaya` CLI.
std::string cli_path();
// Returns `path` when it exists; otherwise fails the current test loudly (never skips) and throws.
std::string require_path(const std::string& path);
// Reads a whole file.
std::string read_file(const std::string& path);
// A fresh directory under the system temp dir (named after `tag` and the process id), removed on destruction.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path.string(); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// Runs a shell command; returns its exit code and fills stdout/stderr text.
int run_command(const std::string& cmd, std::string* out = nullptr, std::string* err = nullptr);

// A minimal PNG writer (stored zlib blocks), so tests can make any colour type and bit depth. `rows`: the unfiltered
// scanlines, concatenated (each ceil(w·channels·depth/8) bytes).
std::vector<uint8_t> make_png(uint32_t w, uint32_t h, int depth, int color_type, const std::vector<uint8_t>& rows,
                              const std::vector<uint8_t>& plte = {}, const std::vector<uint8_t>& trns = {});
// PNG's CRC-32 register after `n` bytes (xor with 0xffffffff for the chunk CRC).
uint32_t crc32(const uint8_t* p, size_t n, uint32_t c = 0xffffffffu);

// The tiny ZAYA1-VL model (golden zaya1-vl/tiny-a, with its image.png) made usable by the chat CLI and the server:
// the golden VL folder has no tokenizer or chat template, so the tiny text model's (same 384-token vocabulary) are
// copied beside it into `dir`.
void make_chat_fixture(const std::string& dir);

// A model folder's tensors, by name, for damaging copies.
struct Tensor {
  TensorSpec spec;
  std::string bytes;
};
using Tensors = std::map<std::string, Tensor>;

// Copies a model folder, letting `mutate` edit its tensors; shards and index are rewritten to match (new tensors go
// to the first shard; a folder without an index keeps its single model.safetensors).
std::string broken_copy(const std::string& src, const std::string& dst, const std::function<void(Tensors&)>& mutate);

// The verify report of `dir` fails, and its failing check named `check` mentions `needle` (gtest expectations).
void expect_failure(const std::string& dir, const std::string& check, const std::string& needle);

}  // namespace zaya::test
