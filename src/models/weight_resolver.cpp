#include "models/weight_resolver.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "util/json_limits.h"
#include "zaya/error.h"
#include "kernels/format_table.h"
#include "tensor/quant_formats.h"

namespace zaya {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json read_json_if_exists(const fs::path& p) {
  if (!fs::exists(p)) return json();
  return parse_json_file<json>(p.string());
}

// Keys of config.quantization that are settings, not module paths (mlx-lm and the JANG/Swift loaders).
const std::set<std::string> kQuantSettingKeys = {
    "group_size", "bits", "mode", "quant_method", "linear_class", "quantization_mode", "mxtq_bits",
    "routed_expert_bits", "mxtq_seed", "expert_layout", "embed_bits", "router_bits", "attention_bits",
    "lm_head_bits", "cca_conv_bits", "norms_residual_bits"};

const std::set<std::string> kModes = {"affine", "mxfp4", "nvfp4", "mxfp8"};

std::string shape_str(const std::vector<int64_t>& s) {
  TensorView v;
  v.shape = s;
  return v.shape_str();
}

}  // namespace

QuantSettings parse_quantization(const json& cfg, const std::string& src) {
  QuantSettings qs;
  if (!cfg.is_object() || !cfg.contains("quantization") || cfg["quantization"].is_null()) return qs;
  const json& q = cfg["quantization"];
  if (!q.is_object()) throw Error(cat(src, ": 'quantization' must be an object"));
  qs.quantized = true;
  if (q.contains("group_size")) {
    if (!q["group_size"].is_number_integer()) throw Error(cat(src, ": quantization.group_size must be an integer"));
    if (q["group_size"].get<int64_t>() < 0 || q["group_size"].get<int64_t>() > 1024)
      throw Error(cat(src, ": quantization.group_size ", q["group_size"].dump(), " is not supported (32, 64 or 128)"));
    qs.group_size = q["group_size"].get<int>();
  }
  if (q.contains("mode")) {
    if (!q["mode"].is_string()) throw Error(cat(src, ": quantization.mode must be a string"));
    qs.mode = q["mode"].get<std::string>();
  }
  if (!kModes.count(qs.mode))
    throw Error(cat(src, ": unknown quantization mode '", qs.mode, "' (supported: affine, mxfp4, nvfp4, mxfp8)"));
  if (qs.mode == "affine" && !quant::affine_group_supported(qs.group_size))
    throw Error(cat(src, ": quantization.group_size ", qs.group_size, " is not supported (32, 64 or 128)"));
  // Per-module overrides: checked here, completely, so the loader's reads of them cannot fail later and
  // `zaya verify` rejects what the loader would reject.
  for (auto it = q.begin(); it != q.end(); ++it) {
    if (kQuantSettingKeys.count(it.key())) continue;
    const std::string who = cat(src, ": quantization override '", it.key(), "'");
    const json& ov = it.value();
    if (!(ov.is_object() || ov == json(false))) throw Error(cat(who, " must be an object or false"));
    if (ov.is_object()) {
      std::string mode = qs.mode;
      if (ov.contains("mode")) {
        if (!ov["mode"].is_string() || !kModes.count(ov["mode"].get<std::string>()))
          throw Error(cat(who, " has unknown mode ", ov["mode"].dump(), " (supported: affine, mxfp4, nvfp4, mxfp8)"));
        mode = ov["mode"].get<std::string>();
      }
      if (ov.contains("group_size")) {
        const json& g = ov["group_size"];
        if (!g.is_number_integer() || (mode == "affine" && (g.get<int64_t>() < 0 || g.get<int64_t>() > 1024 ||
                                                              !quant::affine_group_supported(g.get<int>()))))
          throw Error(cat(who, " has group_size ", g.dump(), ", which is not supported (32, 64 or 128)"));
      }
      if (ov.contains("bits")) {
        const json& b = ov["bits"];
        if (!b.is_number_integer() || b.get<int64_t>() < 1 || b.get<int64_t>() > 8)
          throw Error(cat(who, " has bits ", b.dump(), ", which is not a bit width (1 to 8)"));
      }
    }
    qs.overrides[it.key()] = ov;
  }
  if (cfg.contains("mxtq_seed") && cfg["mxtq_seed"].is_number_integer()) qs.mxtq_seed = cfg["mxtq_seed"].get<int64_t>();
  return qs;
}

WeightResolver::WeightResolver(const TensorStore& store, const std::string& dir) : store_(store), dir_(dir) {
  const fs::path root = fs::is_directory(dir) ? fs::path(dir) : fs::path(dir).parent_path();
  json cfg = read_json_if_exists(root / "config.json");
  {
    QuantSettings qs = parse_quantization(cfg, (root / "config.json").string());
    quantized_ = qs.quantized;
    group_size_ = qs.group_size;
    mode_ = qs.mode;
    overrides_ = std::move(qs.overrides);
    if (qs.quantized) mxtq_seed_ = qs.mxtq_seed;
  }
  json jang = read_json_if_exists(root / "jang_config.json");
  if (jang.is_object()) {
    if (jang.contains("tq_in_features")) tq_in_features_ = jang["tq_in_features"];
    if (jang.contains("mxtq_seed") && jang["mxtq_seed"].is_number_integer()) mxtq_seed_ = jang["mxtq_seed"].get<int64_t>();
  }
  if (fs::exists(root / "jangtq_runtime.safetensors"))
    sidecar_ = std::make_shared<TensorStore>(TensorStore::open((root / "jangtq_runtime.safetensors").string(), FileAccess::Populate));
}

bool WeightResolver::has(const std::string& base) const {
  return store_.find(base + ".weight") || store_.find(base + ".tq_packed");
}

std::shared_ptr<const MxtqTables> WeightResolver::mxtq_tables(int64_t in, int bits, const std::string& who) const {
  auto key = std::make_pair(in, bits);
  if (auto it = tables_.find(key); it != tables_.end()) return it->second;
  if (!sidecar_)
    throw Error(cat(dir_, ": '", who, "' is MXTQ-quantized but the sidecar jangtq_runtime.safetensors is missing"));
  const std::string sname = cat("signs.", in, ".", mxtq_seed_), cname = cat("codebook.", in, ".", bits);
  const TensorView* s = sidecar_->find(sname);
  const TensorView* c = sidecar_->find(cname);
  if (!s || !c)
    throw Error(cat(dir_, "/jangtq_runtime.safetensors: missing '", !s ? sname : cname, "' needed by '", who, "'"));
  auto t = std::make_shared<MxtqTables>();
  t->in_features = in;
  t->bits = bits;
  t->signs = to_f32(*s);
  t->codebook = to_f32(*c);
  if (static_cast<int64_t>(t->signs.size()) != in || t->codebook.size() != (size_t{1} << bits))
    throw Error(cat(dir_, "/jangtq_runtime.safetensors: '", sname, "' / '", cname, "' have the wrong length"));
  for (float v : t->signs)
    if (v != 1.0f && v != -1.0f) throw Error(cat(dir_, "/jangtq_runtime.safetensors: '", sname, "' holds a value other than ±1"));
  tables_[key] = t;
  return t;
}

WeightMatrix WeightResolver::matrix(const std::string& base, int64_t rows, int64_t cols, int64_t stack) const {
  std::vector<int64_t> lead;
  if (stack > 0) lead.push_back(stack);
  auto with = [&](std::vector<int64_t> tail) {
    std::vector<int64_t> s = lead;
    s.insert(s.end(), tail.begin(), tail.end());
    return s;
  };
  const int64_t total_rows = (stack > 0 ? stack : 1) * rows;
  const json* ov = overrides_.contains(base) ? &overrides_[base] : nullptr;

  // MXTQ.
  if (const TensorView* packed = store_.find(base + ".tq_packed")) {
    const TensorView& norms = store_.require(base + ".tq_norms", with({rows}));
    const TensorView& bits_t = store_.require(base + ".tq_bits", {1});
    if (packed->dtype != DType::U32) throw Error(cat(packed->file, ": '", packed->name, "' must be U32"));
    if (norms.dtype != DType::F16) throw Error(cat(norms.file, ": '", norms.name, "' must be F16"));
    const int bits = static_cast<int>(to_i64(bits_t)[0]);
    if (bits < 1 || bits > 8) throw Error(cat(bits_t.file, ": '", bits_t.name, "' = ", bits, " is not a valid MXTQ width"));
    if (tq_in_features_.is_object() && tq_in_features_.contains(base) &&
        (!tq_in_features_[base].is_number_integer() || tq_in_features_[base].get<int64_t>() != cols))
      throw Error(cat("jang_config.json: tq_in_features['", base, "'] = ", tq_in_features_[base].dump(),
                      " but the model needs ", cols));
    const std::vector<int64_t> want = with({rows, quant::mxtq_words(cols, bits)});
    if (packed->shape != want)
      throw Error(cat(packed->file, ": '", packed->name, "' has shape ", packed->shape_str(), ", expected ", shape_str(want),
                      " for ", bits, "-bit MXTQ of in_features ", cols));
    WeightMatrix w;
    w.name = base;
    w.format = WeightFormat::Mxtq;
    w.rows = total_rows;
    w.cols = cols;
    w.bits = bits;
    w.row_bytes = stored_row_bytes(WeightFormat::Mxtq, cols, bits);
    w.data = aligned_view(*packed, 4, w.owners);
    w.norms = static_cast<const uint16_t*>(aligned_view(norms, 2, w.owners));
    w.mxtq = mxtq_tables(cols, bits, base);
    return w;
  }

  const TensorView* weight = store_.find(base + ".weight");
  if (!weight) throw Error(cat(store_.root(), ": missing tensor '", base, ".weight' (nor ", base, ".tq_packed)"));
  const TensorView* scales = store_.find(base + ".scales");
  const bool forced_float = ov && *ov == json(false);
  if (!scales || forced_float) {
    if (forced_float && scales)
      throw Error(cat(weight->file, ": '", base, "' is marked unquantized in config.json but has .scales"));
    const std::vector<int64_t> want = with({rows, cols});
    if (weight->shape != want)
      throw Error(cat(weight->file, ": tensor '", weight->name, "' has shape ", weight->shape_str(), ", expected ",
                      shape_str(want)));
    return weight_from_tensor(*weight, total_rows, cols);
  }

  // Quantized triple (or pair).
  const TensorView* biases = store_.find(base + ".biases");
  std::string mode = biases ? "affine" : mode_;
  int group = group_size_;
  int ov_bits = 0;
  if (ov && ov->is_object()) {
    if (ov->contains("mode")) mode = (*ov)["mode"].get<std::string>();
    if (ov->contains("group_size")) group = (*ov)["group_size"].get<int>();
    if (ov->contains("bits")) ov_bits = (*ov)["bits"].get<int>();
  }
  if (weight->dtype != DType::U32)
    throw Error(cat(weight->file, ": quantized '", weight->name, "' must be U32, got ", dtype_name(weight->dtype)));
  WeightMatrix w;
  w.name = base;
  w.rows = total_rows;
  w.cols = cols;
  if (mode == "affine") {
    if (!biases) throw Error(cat(scales->file, ": '", base, "' is affine-quantized but has no .biases"));
    if (!quant::affine_group_supported(group)) throw Error(cat("'", base, "': unsupported group size ", group));
    if (cols % group != 0)
      throw Error(cat(weight->file, ": '", base, "': in_features ", cols, " is not a multiple of the group size ", group));
    const std::vector<int64_t> sshape = with({rows, cols / group});
    if (scales->shape != sshape || biases->shape != sshape)
      throw Error(cat(scales->file, ": '", base, ".scales/.biases' have shape ", scales->shape_str(), " / ",
                      biases->shape_str(), ", expected ", shape_str(sshape), " (in_features ", cols, ", group ", group, ")"));
    if (scales->dtype != biases->dtype || !(scales->dtype == DType::F16 || scales->dtype == DType::BF16 || scales->dtype == DType::F32))
      throw Error(cat(scales->file, ": '", base, "' scales/biases must share one float dtype"));
    // bits from the shapes (§5.3): packed words per row = cols·bits/32.
    const int64_t words = weight->shape.empty() ? 0 : weight->shape.back();
    if (words * 32 % cols != 0)
      throw Error(cat(weight->file, ": '", weight->name, "' has ", words, " words per row, which is no whole bit width for ", cols, " inputs"));
    const int bits = static_cast<int>(words * 32 / cols);
    if (!quant::affine_bits_supported(bits))
      throw Error(cat(weight->file, ": '", weight->name, "' implies ", bits, "-bit affine, which is not supported (2, 3, 4, 5, 6, 8)"));
    if (ov_bits && ov_bits != bits)
      throw Error(cat(weight->file, ": '", base, "' is ", bits, "-bit but config.json says ", ov_bits));
    if (weight->shape != with({rows, words}))
      throw Error(cat(weight->file, ": tensor '", weight->name, "' has shape ", weight->shape_str(), ", expected ",
                      shape_str(with({rows, words}))));
    w.format = WeightFormat::Affine;
    w.bits = bits;
    w.group_size = group;
    w.row_bytes = stored_row_bytes(WeightFormat::Affine, cols, bits);
    w.scale_dtype = scales->dtype;
    w.scale_row_bytes = static_cast<size_t>(cols / group) * dtype_size(scales->dtype);
    w.data = aligned_view(*weight, 4, w.owners);
    w.scales = scales->data;  // read with memcpy: alignment does not matter
    w.biases = biases->data;
    return w;
  }
  // MLX fp modes: U8 scales, no biases.
  WeightFormat f;
  if (mode == "mxfp4") f = WeightFormat::MxFp4;
  else if (mode == "nvfp4") f = WeightFormat::NvFp4;
  else if (mode == "mxfp8") f = WeightFormat::MxFp8;
  else throw Error(cat("'", base, "': has .scales without .biases but the quantization mode is '", mode, "'"));
  const int g = quant::fp_group_size(f), bits = quant::fp_bits(f);
  if (cols % g != 0) throw Error(cat("'", base, "': in_features ", cols, " is not a multiple of ", mode, "'s group ", g));
  if (scales->dtype != DType::U8 || scales->shape != with({rows, cols / g}))
    throw Error(cat(scales->file, ": '", scales->name, "' must be U8 ", shape_str(with({rows, cols / g})), " for ", mode));
  if (weight->shape != with({rows, cols * bits / 32}))
    throw Error(cat(weight->file, ": tensor '", weight->name, "' has shape ", weight->shape_str(), ", expected ",
                    shape_str(with({rows, cols * bits / 32})), " for ", mode));
  w.format = f;
  w.bits = bits;
  w.group_size = g;
  w.row_bytes = stored_row_bytes(f, cols, bits);
  w.scale_dtype = DType::U8;
  w.scale_row_bytes = static_cast<size_t>(cols / g);
  w.data = aligned_view(*weight, 4, w.owners);
  w.scales = scales->data;
  return w;
}

}  // namespace zaya
