#pragma once
// One exception type for every user-facing failure (bad files, bad config, bad input). The CLI prints what() and
// exits non-zero; nothing in the library aborts on bad input.
#include <sstream>
#include <stdexcept>
#include <string>

namespace zaya {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Builds a message from any streamable parts: throw Error(cat("tensor ", name, " has ", n, " dims")).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

}  // namespace zaya
