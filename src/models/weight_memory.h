#pragma once
// The public WeightMemory choice as the io layer's file access.
#include "io/safetensors.h"
#include "zaya/model.h"

namespace zaya {

inline FileAccess file_access(WeightMemory m) {
  switch (m) {
    case WeightMemory::Mapped: return FileAccess::Populate;
    case WeightMemory::Copied: return FileAccess::Copy;
    case WeightMemory::Auto: break;
  }
  return FileAccess::Auto;
}

}  // namespace zaya
