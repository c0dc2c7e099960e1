// zaya verify: bundle checks (issue item 5). Each check collects named problems instead of throwing.
#include "zaya/verify.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "models/weight_resolver.h"
#include "models/zaya/model_weights.h"
#include "quant/convert_plan.h"
#include "util/json_limits.h"
#include "zaya/config.h"
#include "zaya/error.h"
#include "tensor/quant_formats.h"
#include "io/safetensors.h"

namespace zaya {
namespace fs = std::filesystem;
using json = nlohmann::json;

bool VerifyReport::ok() const {
  for (const auto& c : checks)
    if (c.status == VerifyCheck::Fail) return false;
  return true;
}

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string shape_str(const std::vector<int64_t>& s) {
  TensorView v;
  v.shape = s;
  return v.shape_str();
}
bool is_float(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

// Keys of config.quantization that are settings, not module paths (bundle-formats §5.2).
const std::set<std::string> kSettingKeys = {
    "group_size", "bits", "mode", "quant_method", "linear_class", "quantization_mode", "mxtq_bits",
    "routed_expert_bits", "mxtq_seed", "expert_layout", "embed_bits", "router_bits", "attention_bits",
    "lm_head_bits", "cca_conv_bits", "norms_residual_bits"};

struct Logical {
  std::string name;             // float name (base + ".weight" for matrices)
  std::vector<int64_t> shape;   // logical shape
};

class Verifier {
 public:
  explicit Verifier(const std::string& dir) : dir_(dir) { rep_.dir = dir; }

  VerifyReport run() {
    step("headers", [&](VerifyCheck& c) { headers(c); });
    step("index", [&](VerifyCheck& c) { index(c); });
    step("config", [&](VerifyCheck& c) { config(c); });
    step("coverage", [&](VerifyCheck& c) { coverage(c); });
    step("no local_experts", [&](VerifyCheck& c) { local_experts(c); });
    step("switch_mlp experts", [&](VerifyCheck& c) { switch_mlp(c); });
    step("passthrough floor", [&](VerifyCheck& c) { passthrough(c); });
    step("jangtq sidecar", [&](VerifyCheck& c) { sidecar(c); });
    step("vision (VL)", [&](VerifyCheck& c) { vision(c); });
    rep_.kind = kind();
    return rep_;
  }

 private:
  template <typename F>
  void step(const std::string& name, F fn) {
    VerifyCheck c;
    c.name = name;
    try {
      fn(c);
    } catch (const std::exception& e) {
      c.problems.push_back(cat("could not complete: ", e.what()));
    }
    if (!c.problems.empty()) c.status = VerifyCheck::Fail;
    rep_.checks.push_back(std::move(c));
  }
  static void skip(VerifyCheck& c, const std::string& why) {
    c.status = VerifyCheck::Skip;
    c.detail = why;
  }

  const TensorView* find(const std::string& n) const {
    auto it = t_.find(n);
    return it == t_.end() ? nullptr : it->second;
  }
  const TensorView* use(const std::string& n) {
    const TensorView* v = find(n);
    if (v) used_.insert(n);
    return v;
  }

  // ---- headers: every shard opens and validates; the index and the shards agree --------------------------------
  void headers(VerifyCheck& c) {
    const fs::path idx = dir_ / "model.safetensors.index.json";
    std::vector<std::string> shards;
    if (!fs::is_directory(dir_)) {
      c.problems.push_back(cat(dir_.string(), ": not a folder"));
      return;
    }
    if (fs::exists(idx)) {
      has_index_ = true;
      try {
        index_ = parse_json_file<json>(idx.string());
      } catch (const std::exception& e) {
        c.problems.push_back(e.what());
        return;
      }
      if (!index_.is_object() || !index_.contains("weight_map") || !index_["weight_map"].is_object()) {
        c.problems.push_back("model.safetensors.index.json: no weight_map object");
        return;
      }
      for (auto it = index_["weight_map"].begin(); it != index_["weight_map"].end(); ++it) {
        if (!it.value().is_string()) {
          c.problems.push_back(cat("index: weight_map['", it.key(), "'] is not a file name"));
          continue;
        }
        const std::string f = it.value().get<std::string>();
        if (std::find(shards.begin(), shards.end(), f) == shards.end()) shards.push_back(f);
      }
    } else if (fs::exists(dir_ / "model.safetensors")) {
      shards.push_back("model.safetensors");
    } else {
      for (const auto& e : fs::directory_iterator(dir_)) {
        const std::string n = e.path().filename().string();
        if (ends_with(n, ".safetensors") && n.rfind("model", 0) == 0) shards.push_back(n);
      }
      std::sort(shards.begin(), shards.end());
    }
    if (shards.empty()) {
      c.problems.push_back("no safetensors shards (no index, no model*.safetensors)");
      return;
    }
    std::map<std::string, std::string> where;
    for (const auto& s : shards) {
      const fs::path p = dir_ / s;
      if (!fs::exists(p)) {
        c.problems.push_back(cat("shard '", s, "' is missing"));
        continue;
      }
      try {
        auto f = SafetensorsFile::open(p.string());
        rep_.file_bytes += f->file_size();
        for (const auto& tv : f->tensors()) {
          if (where.count(tv.name)) {
            c.problems.push_back(cat("tensor '", tv.name, "' is in both ", where[tv.name], " and ", s));
            continue;
          }
          where[tv.name] = s;
          t_[tv.name] = &tv;
          rep_.tensor_bytes += tv.nbytes;
        }
        files_.push_back(f);
      } catch (const std::exception& e) {
        c.problems.push_back(cat("shard '", s, "' does not open (truncated or corrupt?): ", e.what()));
        bad_shards_.insert(s);
      }
    }
    rep_.keys = t_.size();
    if (has_index_) {
      for (auto it = index_["weight_map"].begin(); it != index_["weight_map"].end(); ++it) {
        if (!it.value().is_string()) continue;
        const std::string f = it.value().get<std::string>();
        if (bad_shards_.count(f)) continue;
        auto w = where.find(it.key());
        if (w == where.end()) c.problems.push_back(cat("index lists '", it.key(), "' in ", f, " but no shard holds it"));
        else if (w->second != f)
          c.problems.push_back(cat("index lists '", it.key(), "' in ", f, " but it is in ", w->second));
      }
      for (const auto& [name, s] : where)
        if (!index_["weight_map"].contains(name)) c.problems.push_back(cat("'", name, "' in ", s, " is not in the index"));
    }
    c.detail = cat(files_.size(), "/", shards.size(), " shard(s) open, ", t_.size(), " tensors, ", rep_.tensor_bytes,
                   " tensor bytes");
  }

  // ---- index: key count and total_size against what the shards hold --------------------------------------------
  void index(VerifyCheck& c) {
    if (!has_index_) return skip(c, "single file, no index");
    if (!index_.is_object() || !index_.contains("weight_map") || !index_["weight_map"].is_object()) {
      c.problems.push_back("no usable index");
      return;
    }
    const size_t n = index_["weight_map"].size();
    if (n != t_.size() && bad_shards_.empty())
      c.problems.push_back(cat("index has ", n, " keys but the shards hold ", t_.size()));
    std::string ts = "no total_size";
    if (index_.contains("metadata") && index_["metadata"].is_object() && index_["metadata"].contains("total_size")) {
      const json& v = index_["metadata"]["total_size"];
      if (!v.is_number_integer()) {
        c.problems.push_back("metadata.total_size is not an integer");
      } else if (bad_shards_.empty()) {
        const uint64_t total = v.get<uint64_t>();
        // JANG writes the sum of the shard file sizes; mlx-lm and HF the sum of the tensor bytes.
        if (total == rep_.file_bytes) ts = cat("total_size ", total, " = shard file bytes");
        else if (total == rep_.tensor_bytes) ts = cat("total_size ", total, " = tensor bytes");
        else
          c.problems.push_back(cat("metadata.total_size ", total, " matches neither the shard file bytes ", rep_.file_bytes,
                                   " nor the tensor bytes ", rep_.tensor_bytes));
      }
    }
    c.detail = cat(n, " keys in the index, ", ts);
  }

  // ---- config ------------------------------------------------------------------------------------------------
  void config(VerifyCheck& c) {
    const fs::path p = dir_ / "config.json";
    if (!fs::exists(p)) {
      c.problems.push_back("config.json is missing");
      return;
    }
    try {
      cfg_json_ = parse_json_file<json>(p.string());
    } catch (const std::exception& e) {
      c.problems.push_back(e.what());
      return;
    }
    if (!cfg_json_.is_object()) {
      c.problems.push_back("config.json: not an object");
      return;
    }
    const std::string mt = cfg_json_.value("model_type", std::string());
    vl_ = cfg_json_.contains("text_config") || cfg_json_.contains("vision_config") || mt.find("vl") != std::string::npos;
    for (const auto& [name, v] : t_)
      if (bundle::is_vision_or_lora(name)) vl_ = true;
    if (fs::exists(dir_ / "jang_config.json")) {
      try {
        jang_ = parse_json_file<json>((dir_ / "jang_config.json").string());
      } catch (const std::exception& e) {
        c.problems.push_back(e.what());
      }
    }
    if (cfg_json_.contains("quantization") && !cfg_json_["quantization"].is_null()) {
      const json& q = cfg_json_["quantization"];
      if (!q.is_object()) {
        c.problems.push_back("config.json: 'quantization' is not an object");
      } else {
        quant_cfg_ = true;
        if (q.contains("group_size")) {
          if (q["group_size"].is_number_integer()) group_ = q["group_size"].get<int>();
          else c.problems.push_back("config.json: quantization.group_size is not an integer");
        }
        if (q.contains("mode")) mode_ = q["mode"].is_string() ? q["mode"].get<std::string>() : "?";
        if (mode_ != "affine" && mode_ != "mxfp4" && mode_ != "nvfp4" && mode_ != "mxfp8")
          c.problems.push_back(cat("config.json: unknown quantization.mode '", mode_, "'"));
        for (auto it = q.begin(); it != q.end(); ++it)
          if (!kSettingKeys.count(it.key())) overrides_[it.key()] = it.value();
        // Everything the loader checks in this block (overrides included), with the loader's own code.
        try {
          parse_quantization(cfg_json_, "config.json");
        } catch (const Error& e) {
          c.problems.push_back(e.what());
        }
      }
    }
    if (jang_.is_object() && jang_.contains("mxtq_seed") && jang_["mxtq_seed"].is_number_integer())
      seed_ = jang_["mxtq_seed"].get<int64_t>();
    else if (cfg_json_.contains("mxtq_seed") && cfg_json_["mxtq_seed"].is_number_integer())
      seed_ = cfg_json_["mxtq_seed"].get<int64_t>();
    // The language model's config (a zaya1_vl config with its text keys flat or nested under text_config; the
    // runtime's own parser, so a config that verifies is one that loads), and a VL model's vision tower.
    try {
      cfg_ = ModelConfig::parse(cfg_json_.dump(), (dir_ / "config.json").string());
      have_cfg_ = true;
    } catch (const std::exception& e) {
      c.problems.push_back(cat("language model: ", e.what()));
    }
    if (vl_ && cfg_json_.contains("vision_config")) {
      try {
        vision_ = vit::VisionConfig::parse(cfg_json_["vision_config"], (dir_ / "config.json").string());
        have_vision_ = true;
      } catch (const std::exception& e) {
        c.problems.push_back(cat("vision tower: ", e.what()));
      }
    } else if (vl_ && have_cfg_ && cfg_.layout == Layout::Fused) {
      c.problems.push_back("config.json: a zaya1_vl config without vision_config");
    }
    if (vl_ && jang_.is_object() && jang_.contains("has_vision") && jang_["has_vision"] != json(true))
      c.problems.push_back(cat("jang_config.json: has_vision = ", jang_["has_vision"].dump(), " in a VL bundle"));
    c.detail = have_cfg_ ? cat(layout_name(cfg_.layout), " config, ", cfg_.legacy_layers(), " layers, H ", cfg_.hidden, ", E ",
                               cfg_.n_experts, ", V ", cfg_.vocab,
                               have_vision_ ? cat(", vision tower ", vision_.depth, " blocks × ", vision_.hidden) : "",
                               quant_cfg_ ? cat(", quantization mode ", mode_, " group ", group_) : std::string(", unquantized"))
                         : std::string("not parsed");
  }

  bool fused_vl() const { return vl_ && have_cfg_ && cfg_.layout == Layout::Fused; }

  bool quantized() const {
    if (quant_cfg_) return true;
    for (const auto& [n, v] : t_)
      if (ends_with(n, ".scales") || ends_with(n, ".tq_packed")) return true;
    return false;
  }

  // ---- coverage: every architecture tensor stored with the right shape/dtype for its format --------------------
  void coverage(VerifyCheck& c) {
    if (!have_cfg_) {
      c.problems.push_back("config.json could not be parsed, so the expected tensors are unknown");
      return;
    }
    if (vl_ && !fused_vl())
      return skip(c, cat("VL tensors in the ", layout_name(cfg_.layout), " layout: only the Zyphra (fused) VL layout is known"));
    const bool q = quantized();
    const bool has_legacy = find("model.final_norm.weight") || find("model.layers.1.zaya_block.router.down_proj.weight");
    const bool has_native = find("model.norm.weight") || find("model.layers.0.mlp.experts.gate_up_proj");
    if ((cfg_.layout == Layout::Legacy && has_native && !has_legacy) || (cfg_.layout == Layout::Native && has_legacy && !has_native)) {
      c.problems.push_back(cat("config.json describes the ", layout_name(cfg_.layout), " layout but the tensors use the other one"));
      return;
    }
    std::vector<Logical> want;
    const int64_t E = cfg_.n_experts, I = cfg_.expert_ffn, H = cfg_.hidden;
    const bool stacked = q || find(bundle::switch_mlp_prefix(cfg_, 1) + "gate_proj.weight");
    if (fused_vl()) {
      if (!have_vision_) {
        c.problems.push_back("vision_config could not be parsed, so the vision tower's tensors are unknown");
        return;
      }
      // The decoder (stacked experts in bundles), its vision-LoRA and the vision tower (§7.2 VL bundles).
      for (const auto& t : bundle::vl_tensors(cfg_, vision_, stacked)) want.push_back({t.name, t.shape});
    }
    for (const auto& t : fused_vl() ? std::vector<ExpectedTensor>{} : expected_tensors(cfg_)) {
      if (t.role == ExpectedTensor::Expert && stacked && cfg_.layout == Layout::Legacy) continue;
      want.push_back({t.name, t.shape});
    }
    if (stacked && cfg_.layout == Layout::Legacy && !fused_vl())
      for (int64_t n = 1; n < 2 * cfg_.n_blocks; n += 2) {
        const std::string sw = cat("model.layers.", n, ".zaya_block.experts.switch_mlp.");
        want.push_back({sw + "gate_proj.weight", {E, I, H}});
        want.push_back({sw + "up_proj.weight", {E, I, H}});
        want.push_back({sw + "down_proj.weight", {E, H, I}});
      }
    size_t present = 0;
    for (const auto& l : want)
      if (check_logical(l, c.problems)) ++present;
    std::vector<std::string> extra;
    for (const auto& [n, v] : t_)
      if (!used_.count(n)) extra.push_back(n);
    for (size_t i = 0; i < extra.size(); ++i) c.problems.push_back(cat("unexpected tensor '", extra[i], "'"));
    std::string fm;
    for (const auto& [f, k] : formats_) fm += cat(fm.empty() ? "" : ", ", f, " ×", k);
    c.detail = cat(present, "/", want.size(), " architecture tensors stored correctly, ", t_.size(), " keys (", fm, ")");
  }

  // One logical tensor: MXTQ, affine, fp mode or float. Returns true when stored correctly.
  bool check_logical(const Logical& l, std::vector<std::string>& probs) {
    const std::string base = ends_with(l.name, ".weight") ? l.name.substr(0, l.name.size() - 7) : l.name;
    const int64_t cols = l.shape.back();
    std::vector<int64_t> lead(l.shape.begin(), l.shape.end() - 1);
    auto with = [&](std::vector<int64_t> tail) {
      std::vector<int64_t> s = lead;
      s.insert(s.end(), tail.begin(), tail.end());
      return s;
    };
    const size_t before = probs.size();
    std::vector<int64_t> rows_lead = lead;  // [..., rows]
    if (const TensorView* packed = use(base + ".tq_packed")) {
      const TensorView* norms = use(base + ".tq_norms");
      const TensorView* bits_t = use(base + ".tq_bits");
      if (!norms || !bits_t) {
        probs.push_back(cat("'", base, "' is MXTQ but lacks ", !norms ? ".tq_norms" : ".tq_bits"));
        return false;
      }
      if (bits_t->dtype != DType::U8 || bits_t->shape != std::vector<int64_t>{1}) {
        probs.push_back(cat("'", bits_t->name, "' must be U8 [1], is ", dtype_name(bits_t->dtype), " ", bits_t->shape_str()));
        return false;
      }
      const int bits = bits_t->data[0];
      if (bits < 1 || bits > 8) {
        probs.push_back(cat("'", bits_t->name, "' = ", bits, " is not a valid MXTQ bit width (wrong bits)"));
        return false;
      }
      if (packed->dtype != DType::U32) probs.push_back(cat("'", packed->name, "' must be U32, is ", dtype_name(packed->dtype)));
      if (packed->shape != with({quant::mxtq_words(cols, bits)}))
        probs.push_back(cat("'", packed->name, "' has shape ", packed->shape_str(), ", expected ",
                            shape_str(with({quant::mxtq_words(cols, bits)})), " for ", bits, "-bit MXTQ of in_features ", cols,
                            " (wrong bits or shape)"));
      if (norms->dtype != DType::F16 || norms->shape != lead)
        probs.push_back(cat("'", norms->name, "' must be F16 ", shape_str(lead), ", is ", dtype_name(norms->dtype), " ",
                            norms->shape_str()));
      mxtq_[base] = {cols, bits};
      formats_[cat("mxtq ", bits, "-bit")]++;
      return probs.size() == before;
    }
    const TensorView* w = find(l.name);
    const TensorView* scales = use(base + ".scales");
    if (!w) {
      probs.push_back(cat("missing tensor '", l.name, "'", scales ? " (its .scales exist)" : ""));
      return false;
    }
    used_.insert(l.name);
    if (scales && overrides_.contains(base) && overrides_[base] == json(false))
      probs.push_back(cat("'", base, "' is marked unquantized in config.json (override false) but has .scales"));
    if (!scales) {
      if (!is_float(w->dtype)) probs.push_back(cat("'", l.name, "' is ", dtype_name(w->dtype), " without .scales: expected a float dtype"));
      if (w->shape != l.shape)
        probs.push_back(cat("'", l.name, "' has shape ", w->shape_str(), ", expected ", shape_str(l.shape)));
      formats_[cat("float ", dtype_name(w->dtype))]++;
      return probs.size() == before;
    }
    quant_bases_.insert(base);
    const TensorView* biases = use(base + ".biases");
    std::string mode = biases ? "affine" : mode_;
    int group = group_, ov_bits = 0;
    if (overrides_.contains(base) && overrides_[base].is_object()) {
      const json& ov = overrides_[base];
      if (ov.contains("mode") && ov["mode"].is_string()) mode = ov["mode"].get<std::string>();
      if (ov.contains("group_size") && ov["group_size"].is_number_integer()) group = ov["group_size"].get<int>();
      if (ov.contains("bits") && ov["bits"].is_number_integer()) ov_bits = ov["bits"].get<int>();
    }
    if (w->dtype != DType::U32) probs.push_back(cat("quantized '", l.name, "' must be U32, is ", dtype_name(w->dtype)));
    const int64_t words = w->shape.empty() ? 0 : w->shape.back();
    if (mode == "affine") {
      if (!biases) {
        probs.push_back(cat("'", base, "' is affine but has no .biases"));
        return false;
      }
      if (!quant::affine_group_supported(group) || cols % group != 0) {
        probs.push_back(cat("'", base, "': in_features ", cols, " and group size ", group, " do not fit"));
        return false;
      }
      const std::vector<int64_t> sshape = with({cols / group});
      if (scales->shape != sshape || biases->shape != sshape)
        probs.push_back(cat("'", base, ".scales/.biases' have shape ", scales->shape_str(), "/", biases->shape_str(),
                            ", expected ", shape_str(sshape), " (in_features ", cols, ", group ", group, ")"));
      if (scales->dtype != biases->dtype || !is_float(scales->dtype))
        probs.push_back(cat("'", base, ".scales/.biases' must share one float dtype (", dtype_name(scales->dtype), "/",
                            dtype_name(biases->dtype), ")"));
      const bool whole = (words * 32) % cols == 0;
      const int bits = whole ? static_cast<int>(words * 32 / cols) : 0;
      if (!whole || !quant::affine_bits_supported(bits)) {
        probs.push_back(cat("'", l.name, "' has ", words, " words per row for ", cols, " inputs: implies ",
                            whole ? cat(bits, "-bit") : std::string("a fractional bit width"),
                            " affine (wrong bits: supported 2, 3, 4, 5, 6, 8)"));
        return false;
      }
      if (ov_bits && ov_bits != bits) probs.push_back(cat("'", base, "' is ", bits, "-bit but config.json says ", ov_bits));
      if (w->shape != with({words})) probs.push_back(cat("'", l.name, "' has shape ", w->shape_str(), ", expected ", shape_str(with({words}))));
      formats_[cat("affine ", bits, "-bit g", group)]++;
      return probs.size() == before;
    }
    int g = 0, bits = 0;
    if (mode == "mxfp4") g = 32, bits = 4;
    else if (mode == "nvfp4") g = 16, bits = 4;
    else if (mode == "mxfp8") g = 32, bits = 8;
    else {
      probs.push_back(cat("'", base, "' has .scales without .biases but the mode is '", mode, "'"));
      return false;
    }
    if (cols % g != 0) {
      probs.push_back(cat("'", base, "': in_features ", cols, " is not a multiple of ", mode, "'s group ", g));
      return false;
    }
    if (scales->dtype != DType::U8 || scales->shape != with({cols / g}))
      probs.push_back(cat("'", scales->name, "' must be U8 ", shape_str(with({cols / g})), " for ", mode, ", is ",
                          dtype_name(scales->dtype), " ", scales->shape_str()));
    if (w->shape != with({cols * bits / 32}))
      probs.push_back(cat("'", l.name, "' has shape ", w->shape_str(), ", expected ", shape_str(with({cols * bits / 32})),
                          " for ", mode, " (wrong bits or shape)"));
    formats_[mode]++;
    return probs.size() == before;
  }

  void local_experts(VerifyCheck& c) {
    std::vector<std::string> left;
    // A VL bundle's per-expert LoRA keeps its source name (float passthrough, §7.2): not a leftover expert.
    for (const auto& [n, v] : t_)
      if (n.find(".local_experts.") != std::string::npos && !bundle::is_vision_or_lora(n)) left.push_back(n);
    if (!quantized()) {
      if (!left.empty()) return skip(c, cat("float checkpoint: ", left.size(), " per-expert tensors in the source layout"));
      c.detail = "none";
      return;
    }
    for (const auto& n : left) c.problems.push_back(cat("local_experts key left over: '", n, "'"));
    c.detail = left.empty() ? "none" : cat(left.size(), " left");
  }

  void switch_mlp(VerifyCheck& c) {
    if (!quantized() && !(have_cfg_ && find(bundle::switch_mlp_prefix(cfg_, 1) + "gate_proj.weight")))
      return skip(c, "float checkpoint: experts in the source layout");
    if (!have_cfg_ || (vl_ && !fused_vl())) {
      // Without the text geometry: every switch_mlp stack has one expert count.
      std::set<int64_t> counts;
      for (const auto& [n, v] : t_)
        if (n.find(".switch_mlp.") != std::string::npos && (ends_with(n, ".weight") || ends_with(n, ".tq_packed")) && !v->shape.empty())
          counts.insert(v->shape[0]);
      if (counts.size() > 1) c.problems.push_back("switch_mlp stacks disagree on the expert count");
      c.detail = counts.empty() ? "no switch_mlp tensors" : cat("expert axis ", *counts.begin());
      return;
    }
    if (cfg_.layout == Layout::Native) {
      c.problems.push_back("quantized bundle with a native-layout config: bundles use the legacy names with switch_mlp experts");
      return;
    }
    int layers = 0;
    for (int64_t n = 1; n < 2 * cfg_.n_blocks; n += 2) {
      for (const char* proj : {"gate_proj", "up_proj", "down_proj"}) {
        const std::string base = bundle::switch_mlp_prefix(cfg_, n) + proj;
        const TensorView* v = find(base + ".tq_packed");
        if (!v) v = find(base + ".weight");
        if (!v) c.problems.push_back(cat("'", base, "' is missing (experts must be pre-stacked)"));
        else if (v->shape.size() != 3 || v->shape[0] != cfg_.n_experts)
          c.problems.push_back(cat("'", v->name, "' has shape ", v->shape_str(), ": expected a leading expert axis of ",
                                   cfg_.n_experts));
      }
      ++layers;
    }
    c.detail = cat(layers, " MoE layers × gate/up/down stacked over ", cfg_.n_experts, " experts");
  }

  void passthrough(VerifyCheck& c) {
    size_t n_pass = 0;
    for (const auto& [n, v] : t_) {
      std::string base;
      if (ends_with(n, ".scales")) base = n.substr(0, n.size() - 7);
      else if (ends_with(n, ".tq_packed")) base = n.substr(0, n.size() - 10);
      if (!base.empty()) {
        if (bundle::is_passthrough(base + ".weight", v->shape.size()))
          c.problems.push_back(cat("'", base, "' is quantized but the passthrough floor keeps it float (F16)"));
        continue;
      }
      if (ends_with(n, ".biases") || ends_with(n, ".tq_norms") || ends_with(n, ".tq_bits")) continue;
      const std::string b = ends_with(n, ".weight") ? n.substr(0, n.size() - 7) : n;
      if (find(b + ".scales") || find(b + ".tq_packed")) continue;  // packed weight of a quantized tensor
      if (bundle::is_passthrough(n, v->shape.size())) {
        ++n_pass;
        if (!is_float(v->dtype)) c.problems.push_back(cat("passthrough tensor '", n, "' is ", dtype_name(v->dtype), ", not float"));
      }
    }
    c.detail = cat(n_pass, " passthrough tensors (norms, res_scale, router, conv_qk, temp, biases), all float");
  }

  void sidecar(VerifyCheck& c) {
    std::vector<std::string> bases;
    for (const auto& [n, v] : t_)
      if (ends_with(n, ".tq_packed")) bases.push_back(n.substr(0, n.size() - 10));
    if (bases.empty()) {
      if (fs::exists(dir_ / "jangtq_runtime.safetensors")) return skip(c, "no MXTQ tensors (sidecar present but unused)");
      return skip(c, "no MXTQ tensors");
    }
    const fs::path p = dir_ / "jangtq_runtime.safetensors";
    if (!fs::exists(p)) {
      c.problems.push_back(cat("jangtq_runtime.safetensors is missing (", bases.size(), " MXTQ tensors need its signs/codebook)"));
      return;
    }
    std::shared_ptr<SafetensorsFile> side;
    try {
      side = SafetensorsFile::open(p.string());
    } catch (const std::exception& e) {
      c.problems.push_back(cat("jangtq_runtime.safetensors does not open: ", e.what()));
      return;
    }
    const json* tqin = jang_.is_object() && jang_.contains("tq_in_features") && jang_["tq_in_features"].is_object()
                           ? &jang_["tq_in_features"] : nullptr;
    std::set<std::pair<int64_t, int>> need;
    for (const auto& b : bases) {
      const TensorView* packed = find(b + ".tq_packed");
      const TensorView* bt = find(b + ".tq_bits");
      if (!bt || bt->dtype != DType::U8 || bt->nbytes != 1) continue;  // reported by coverage
      const int bits = bt->data[0];
      if (bits < 1 || bits > 8) continue;
      int64_t in = 0;
      if (tqin && tqin->contains(b) && (*tqin)[b].is_number_integer()) in = (*tqin)[b].get<int64_t>();
      else if (tqin) c.problems.push_back(cat("jang_config.json: tq_in_features has no entry for '", b, "'"));
      if (in == 0) {
        auto it = mxtq_.find(b);
        in = it != mxtq_.end() ? it->second.first : packed->shape.back() * 32 / bits;
      }
      if (auto it = mxtq_.find(b); it != mxtq_.end() && it->second.first != in)
        c.problems.push_back(cat("jang_config.json: tq_in_features['", b, "'] = ", in, " but the model needs ", it->second.first));
      if (packed->shape.empty() || packed->shape.back() != quant::mxtq_words(in, bits))
        c.problems.push_back(cat("'", packed->name, "' has ", packed->shape.empty() ? 0 : packed->shape.back(),
                                 " words per row, not ", quant::mxtq_words(in, bits), " for ", bits, "-bit in_features ", in));
      need.insert({in, bits});
    }
    std::string list;
    std::set<int64_t> signs_done;
    for (const auto& [in, bits] : need) {
      list += cat(list.empty() ? "" : ", ", "(", in, ", ", bits, "-bit)");
      if (signs_done.insert(in).second) {
        const std::string sn = cat("signs.", in, ".", seed_);
        const TensorView* s = side->find(sn);
        if (!s) c.problems.push_back(cat("sidecar lacks '", sn, "'"));
        else if (s->dtype != DType::F32 || s->shape != std::vector<int64_t>{in})
          c.problems.push_back(cat("sidecar '", sn, "' must be F32 [", in, "], is ", dtype_name(s->dtype), " ", s->shape_str()));
        else {
          const std::vector<float> v = to_f32(*s);
          bool pm1 = true;
          for (float x : v) pm1 = pm1 && (x == 1.0f || x == -1.0f);
          if (!pm1) c.problems.push_back(cat("sidecar '", sn, "' holds values other than ±1"));
          else if (v != quant::mxtq_signs(in, static_cast<uint64_t>(seed_)))
            c.problems.push_back(cat("sidecar '", sn, "' is not the sign vector of seed ", seed_));
        }
      }
      const std::string cn = cat("codebook.", in, ".", bits);
      const TensorView* cb = side->find(cn);
      if (!cb) {
        c.problems.push_back(cat("sidecar lacks '", cn, "'"));
        continue;
      }
      if (cb->dtype != DType::F32 || cb->shape != std::vector<int64_t>{int64_t{1} << bits}) {
        c.problems.push_back(cat("sidecar '", cn, "' must be F32 [", 1 << bits, "], is ", dtype_name(cb->dtype), " ", cb->shape_str()));
        continue;
      }
      const std::vector<float> v = to_f32(*cb);
      for (size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]) || (i > 0 && !(v[i] > v[i - 1]))) {
          c.problems.push_back(cat("sidecar '", cn, "' is not a finite ascending codebook (entry ", i, ")"));
          break;
        }
    }
    c.detail = cat("seed ", seed_, ", ", bases.size(), " MXTQ tensors, tables for ", list);
  }

  // The vision tower and every LoRA tensor stay float (F16 passthrough in quantized bundles, §7.2); the tower's
  // preprocessing needs preprocessor_config.json. Presence and shapes are part of coverage.
  void vision(VerifyCheck& c) {
    if (!vl_) return skip(c, "text-only bundle");
    size_t n = 0, lora = 0;
    std::map<std::string, size_t> dtypes;
    for (const auto& [name, v] : t_) {
      if (!bundle::is_vision_or_lora(name)) continue;
      ++n;
      if (name.find("lora") != std::string::npos) ++lora;
      if (ends_with(name, ".scales") || ends_with(name, ".tq_packed") || ends_with(name, ".biases") ||
          ends_with(name, ".tq_norms") || ends_with(name, ".tq_bits"))
        c.problems.push_back(cat("vision/LoRA tensor '", name, "' is quantized; VL bundles keep it float"));
      else if (!is_float(v->dtype)) c.problems.push_back(cat("vision/LoRA tensor '", name, "' is ", dtype_name(v->dtype), ", not float"));
      else ++dtypes[dtype_name(v->dtype)];
    }
    if (n == 0) c.problems.push_back("VL config but no vision/LoRA tensors (vision_tower.*, model.visual*, *lora*) in the shards");
    if (fused_vl() && cfg_.vl.lora_rank_attn > 0 && lora == 0)
      c.problems.push_back("config.json enables vision_lora but no LoRA tensors are stored");
    const fs::path pre = dir_ / "preprocessor_config.json";
    if (!fs::exists(pre)) c.problems.push_back("preprocessor_config.json is missing (the vision encoder needs it)");
    std::string dt;
    for (const auto& [d, k] : dtypes) dt += cat(dt.empty() ? "" : ", ", d, " ×", k);
    c.detail = cat(n, " vision/LoRA tensors (", lora, " LoRA), float: ", dt.empty() ? "none" : dt);
  }

  std::string kind() const {
    std::string k;
    if (jang_.is_object() && jang_.contains("profile") && jang_["profile"].is_string())
      k = cat("JANG ", jang_["profile"].get<std::string>(), " bundle");
    else if (quantized()) k = cat("MLX quantized bundle (mode ", mode_, ")");
    else k = "float checkpoint";
    if (have_cfg_) k += cat(", ", layout_name(cfg_.layout), " layout");
    if (vl_) k += ", VL";
    return k;
  }

  fs::path dir_;
  VerifyReport rep_;
  bool has_index_ = false;
  json index_, cfg_json_, jang_, overrides_ = json::object();
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::set<std::string> bad_shards_;
  std::map<std::string, const TensorView*> t_;
  std::set<std::string> used_, quant_bases_;
  std::map<std::string, std::pair<int64_t, int>> mxtq_;  // base → (in_features, bits)
  std::map<std::string, size_t> formats_;
  ModelConfig cfg_;
  vit::VisionConfig vision_;
  bool have_cfg_ = false, have_vision_ = false, vl_ = false, quant_cfg_ = false;
  int group_ = 64;  // MLX's default when the config does not say
  std::string mode_ = "affine";
  int64_t seed_ = 42;
};

}  // namespace

VerifyReport verify_bundle(const std::string& dir) {
  try {
    return Verifier(dir).run();
  } catch (const std::exception& e) {
    VerifyReport r;
    r.dir = dir;
    VerifyCheck c;
    c.name = "verify";
    c.status = VerifyCheck::Fail;
    c.problems.push_back(e.what());
    r.checks.push_back(c);
    return r;
  }
}

}  // namespace zaya
