#include "zaya/model_info.h"

#include <filesystem>

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/qwen_vit/preprocess.h"
#include "models/qwen_vit/vision_config.h"
#include "models/zaya/model_weights.h"
#include "zaya/error.h"

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
    if (t.role == ExpectedTensor::Lora) {
      c.lora += n;
      if (t.name.find(".local_experts.") != std::string::npos) c.lora_experts += n;
    }
  }
  return c;
}

VisionTowerInfo vision_tower_info(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path file = fs::is_directory(path) ? fs::path(path) / "config.json" : fs::path(path);
  VisionTowerInfo v;
  {
    std::ifstream in(file);
    if (!in) throw Error(cat(file.string(), ": cannot open"));
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw Error(cat(file.string(), ": not valid JSON: ", e.what()));
    }
    if (!j.is_object() || !j.contains("vision_config")) return v;
  }
  const vit::VisionConfig c = vit::VisionConfig::load(file.string());
  v.present = true;
  v.depth = c.depth;
  v.hidden = c.hidden;
  v.heads = c.heads;
  v.head_dim = c.head_dim();
  v.intermediate = c.intermediate;
  v.in_channels = c.in_channels;
  v.patch = c.patch;
  v.temporal_patch = c.temporal_patch;
  v.merge = c.merge;
  v.window_size = c.window_size;
  v.out_hidden = c.out_hidden;
  v.fullatt_blocks = c.fullatt_blocks;
  v.parameters = c.parameter_count();
  const fs::path pre = file.parent_path() / "preprocessor_config.json";
  if (fs::exists(pre)) {
    const vit::PreprocessorConfig p = vit::load_preprocessor_config(pre.string());
    v.has_preprocessor = true;
    v.min_pixels = p.min_pixels;
    v.max_pixels = p.max_pixels;
  }
  return v;
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
