#pragma once
// Helpers shared by the libFuzzer targets (docs/limits.md, "Fuzzing"). Every target feeds untrusted bytes to one
// parser and accepts exactly two outcomes: success, or zaya::Error (ApiError for the server). Anything else (a
// signal, a sanitizer report, another exception type, a timeout or an out-of-memory) is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace zaya::fuzz {

// An anonymous in-memory file holding `bytes`, named by a /proc path (for readers that open or mmap paths).
class MemFile {
 public:
  explicit MemFile(std::string_view bytes) {
    fd_ = ::memfd_create("zaya-fuzz", 0);
    if (fd_ < 0) std::abort();
    for (size_t at = 0; at < bytes.size();) {
      const ssize_t n = ::write(fd_, bytes.data() + at, bytes.size() - at);
      if (n <= 0) std::abort();
      at += size_t(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Splits an input into parts at a separator line "\n#~#\n" (seed files are written that way), at most `n` parts.
inline std::vector<std::string> split_parts(std::string_view in, size_t n) {
  std::vector<std::string> parts;
  static constexpr std::string_view kSep = "\n#~#\n";
  while (parts.size() + 1 < n) {
    const size_t k = in.find(kSep);
    if (k == std::string_view::npos) break;
    parts.emplace_back(in.substr(0, k));
    in.remove_prefix(k + kSep.size());
  }
  parts.emplace_back(in);
  while (parts.size() < n) parts.emplace_back();
  return parts;
}

// A private scratch folder for targets whose readers take folders (removed at exit).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("zaya-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch_dir(), ec); });
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

}  // namespace zaya::fuzz
