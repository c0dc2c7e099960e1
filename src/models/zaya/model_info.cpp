#include "zaya/model_info.h"

#include <filesystem>

#include "io/safetensors.h"
#include "models/zaya/model_weights.h"

namespace zaya {

ParamCounts count_parameters(const ModelConfig& cfg) {
  ParamCounts c;
  for (const auto& t : expected_tensors(cfg)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (t.name.find("balancing_biases") != std::string::npos) {
      c.buffers += n;
      continue;
    }
    c.total += n;
    if (t.role == ExpectedTensor::Embedding) c.embedding += n;
    if (t.role == ExpectedTensor::Expert) c.experts += n;
  }
  return c;
}

WeightFiles inspect_weight_files(const std::string& dir) {
  namespace fs = std::filesystem;
  WeightFiles w;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors") w.present = true;
  if (!w.present) return w;
  TensorStore store = TensorStore::open(dir);
  for (const auto& name : store.names()) {
    const TensorView* t = store.find(name);
    w.dtypes[dtype_name(t->dtype)] += 1;
    w.bytes += t->nbytes;
  }
  w.tensors = store.size();
  return w;
}

}  // namespace zaya
