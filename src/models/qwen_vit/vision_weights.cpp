#include "models/qwen_vit/vision_weights.h"

#include "models/weight_resolver.h"
#include "zaya/error.h"

namespace zaya::vit {

namespace {

std::string S(int64_t v) { return std::to_string(v); }

struct Loader {
  const TensorStore& store;
  const WeightResolver& resolver;
  const std::string& prefix;

  std::vector<float> vec(const std::string& name, int64_t n) const {
    const TensorView& t = store.require(prefix + name, {n});
    if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16 && t.dtype != DType::F64)
      throw Error(cat(t.file, ": tensor '", t.name, "' has dtype ", dtype_name(t.dtype), ", expected a float type"));
    return to_f32(t);
  }
  // `base` has no ".weight": the resolver finds how it is stored (float, affine, fp mode, MXTQ).
  WeightMatrix mat(const std::string& base, int64_t rows, int64_t cols) const {
    return resolver.matrix(prefix + base, rows, cols);
  }
};

}  // namespace

std::vector<VisionTensor> expected_vision_tensors(const VisionConfig& c, const std::string& prefix) {
  const int64_t hv = c.hidden, I = c.intermediate, M = c.merged_dim();
  std::vector<VisionTensor> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) { out.push_back({prefix + name, std::move(shape)}); };
  add("patch_embed.proj.weight", {hv, c.in_channels, c.temporal_patch, c.patch, c.patch});
  for (int64_t j = 0; j < c.depth; ++j) {
    const std::string b = "blocks." + S(j) + ".";
    add(b + "norm1.weight", {hv});
    add(b + "norm2.weight", {hv});
    add(b + "attn.qkv.weight", {3 * hv, hv});
    add(b + "attn.qkv.bias", {3 * hv});
    add(b + "attn.proj.weight", {hv, hv});
    add(b + "attn.proj.bias", {hv});
    add(b + "mlp.gate_proj.weight", {I, hv});
    add(b + "mlp.gate_proj.bias", {I});
    add(b + "mlp.up_proj.weight", {I, hv});
    add(b + "mlp.up_proj.bias", {I});
    add(b + "mlp.down_proj.weight", {hv, I});
    add(b + "mlp.down_proj.bias", {hv});
  }
  add("merger.ln_q.weight", {hv});
  add("merger.mlp.0.weight", {M, M});
  add("merger.mlp.0.bias", {M});
  add("merger.mlp.2.weight", {c.out_hidden, M});
  add("merger.mlp.2.bias", {c.out_hidden});
  return out;
}

VisionWeights VisionWeights::load(const TensorStore& store, const VisionConfig& c, const WeightResolver& resolver,
                                  const std::string& prefix) {
  const Loader L{store, resolver, prefix};
  const int64_t hv = c.hidden, I = c.intermediate, M = c.merged_dim();
  VisionWeights w;

  // The Conv3d kernel is 5-D in a checkpoint; a converter may have flattened (or quantized) it to [hv, C·tps·p²].
  const std::string pe = prefix + "patch_embed.proj";
  const TensorView* pe_w = store.find(pe + ".weight");
  if (pe_w && pe_w->shape.size() == 5) {
    const TensorView& t = store.require(pe + ".weight", {hv, c.in_channels, c.temporal_patch, c.patch, c.patch});
    w.patch_embed = weight_from_tensor(t, hv, c.patch_dim());
  } else {
    w.patch_embed = L.mat("patch_embed.proj", hv, c.patch_dim());
  }

  w.blocks.resize(static_cast<size_t>(c.depth));
  for (int64_t j = 0; j < c.depth; ++j) {
    VisionBlockWeights& b = w.blocks[static_cast<size_t>(j)];
    const std::string p = "blocks." + S(j) + ".";
    b.norm1 = L.vec(p + "norm1.weight", hv);
    b.norm2 = L.vec(p + "norm2.weight", hv);
    b.qkv = L.mat(p + "attn.qkv", 3 * hv, hv);
    b.qkv_bias = L.vec(p + "attn.qkv.bias", 3 * hv);
    b.proj = L.mat(p + "attn.proj", hv, hv);
    b.proj_bias = L.vec(p + "attn.proj.bias", hv);
    b.gate = L.mat(p + "mlp.gate_proj", I, hv);
    b.gate_bias = L.vec(p + "mlp.gate_proj.bias", I);
    b.up = L.mat(p + "mlp.up_proj", I, hv);
    b.up_bias = L.vec(p + "mlp.up_proj.bias", I);
    b.down = L.mat(p + "mlp.down_proj", hv, I);
    b.down_bias = L.vec(p + "mlp.down_proj.bias", hv);
  }
  w.merger_norm = L.vec("merger.ln_q.weight", hv);
  w.merger_fc1 = L.mat("merger.mlp.0", M, M);
  w.merger_fc1_bias = L.vec("merger.mlp.0.bias", M);
  w.merger_fc2 = L.mat("merger.mlp.2", c.out_hidden, M);
  w.merger_fc2_bias = L.vec("merger.mlp.2.bias", c.out_hidden);

  // A checkpoint with more blocks than the config says is a config/weights mismatch, not something to ignore.
  if (store.find(prefix + "blocks." + S(c.depth) + ".norm1.weight"))
    throw Error(cat(store.root(), ": has '", prefix, "blocks.", c.depth, ".*' but vision_config.depth is ", c.depth));
  return w;
}

VisionWeights VisionWeights::load(const TensorStore& store, const VisionConfig& c, const std::string& prefix) {
  const WeightResolver resolver(store, store.root());
  return load(store, c, resolver, prefix);
}

}  // namespace zaya::vit
