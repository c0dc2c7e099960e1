// zaya convert / zaya synth: stream a model into a bundle profile, row chunk by row chunk.
#include "zaya/convert.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "quant/convert_plan.h"
#include "zaya/error.h"
#include "tensor/quant_formats.h"
#include "util/json_limits.h"
#include "util/thread_pool.h"

namespace zaya {
namespace fs = std::filesystem;
using bundle::Enc;
using bundle::Item;
using ojson = nlohmann::ordered_json;

namespace {

struct ProfileName {
  Profile p;
  const char* name;
};
constexpr ProfileName kProfiles[] = {
    {Profile::Mxfp4, "mxfp4"}, {Profile::Jangtq4, "jangtq4"}, {Profile::Q8, "q8"},   {Profile::Q4, "q4"},
    {Profile::Mxfp4E2m1, "mxfp4-e2m1"}, {Profile::Bf16, "bf16"}, {Profile::F16, "f16"}, {Profile::F32, "f32"},
};

}  // namespace

Profile parse_profile(const std::string& name) {
  for (const auto& p : kProfiles)
    if (name == p.name) return p.p;
  std::string all;
  for (const auto& p : kProfiles) all += std::string(all.empty() ? "" : ", ") + p.name;
  throw Error(cat("unknown profile '", name, "' (valid: ", all, ")"));
}

const char* profile_name(Profile p) {
  for (const auto& x : kProfiles)
    if (x.p == p) return x.name;
  return "?";
}

bool profile_is_quantized(Profile p) { return p != Profile::Bf16 && p != Profile::F16 && p != Profile::F32; }

std::vector<std::string> profile_names() {
  std::vector<std::string> v;
  for (const auto& p : kProfiles) v.push_back(p.name);
  return v;
}

const std::vector<std::string>& tokenizer_sidecar_files() {
  static const std::vector<std::string> files = {
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
      "chat_template.jinja", "chat_template.json", "tokenizer.model", "added_tokens.json", "vocab.json", "merges.txt"};
  return files;
}

namespace {

// Fills rows [r0, r0+n) of an item (n·cols floats). Called concurrently on disjoint ranges.
using RowFn = std::function<void(const Item&, int64_t r0, int64_t n, float* out)>;

constexpr int64_t kChunkFloats = int64_t{4} << 20;  // 16 MB of fp32 rows per chunk

float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }

class Emitter {
 public:
  Emitter(SafetensorsWriter& w, const ConvertOptions& o, bool f16_input, ThreadPool& pool, size_t n_items)
      : w_(w), o_(o), f16_input_(f16_input), pool_(pool), n_items_(n_items) {}

  void emit(const Item& it, size_t item_no, const RowFn& rows) {
    const std::vector<TensorSpec> outs = it.outputs();
    std::vector<size_t> idx;
    for (const auto& s : outs) idx.push_back(w_.index_of(s.name));
    report(item_no, it.name);
    const int64_t R = it.rows(), C = it.cols();
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(R, kChunkFloats / std::max<int64_t>(C, 1)));
    std::vector<float> buf(static_cast<size_t>(chunk * C));
    const auto weighting = o_.search_weighted ? quant::ScaleWeighting::Magnitude : quant::ScaleWeighting::None;
    const bundle::Item* ip = &it;
    std::shared_ptr<const MxtqTables> tq;
    if (it.enc == Enc::Mxtq) tq = tables(C, it.bits);
    // Per-row output sizes.
    const int64_t words = it.enc == Enc::Mxtq ? quant::mxtq_words(C, it.bits)
                          : (it.enc == Enc::Affine || it.enc == Enc::Fp) ? quant::packed_words(C, it.bits) : 0;
    const int64_t groups = (it.enc == Enc::Affine || it.enc == Enc::Fp) ? C / it.group : 0;
    std::vector<uint32_t> packed(static_cast<size_t>(chunk * words));
    std::vector<uint16_t> sc16(static_cast<size_t>(it.enc == Enc::Affine ? chunk * groups : it.enc == Enc::Mxtq ? chunk : 0));
    std::vector<uint16_t> bi16(static_cast<size_t>(it.enc == Enc::Affine ? chunk * groups : 0));
    std::vector<uint8_t> sc8(static_cast<size_t>(it.enc == Enc::Fp ? chunk * groups : 0));
    std::vector<uint8_t> raw(static_cast<size_t>(it.enc == Enc::Float ? chunk * C * dtype_size(it.float_dtype) : 0));

    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
      const int64_t n = std::min(chunk, R - r0);
      pool_.parallel_for(static_cast<size_t>(n), 16, [&](size_t b, size_t e) {
        rows(*ip, r0 + static_cast<int64_t>(b), static_cast<int64_t>(e - b), &buf[b * C]);
        std::vector<float> s(static_cast<size_t>(groups)), bb(static_cast<size_t>(groups));
        for (size_t r = b; r < e; ++r) {
          float* x = &buf[r * C];
          // JANG casts to float16 before mx.quantize (affine / fp modes); its MXTQ path rotates the source floats.
          if (it.enc != Enc::Float && it.enc != Enc::Mxtq && f16_input_ && !o_.search_scales)
            for (int64_t i = 0; i < C; ++i) x[i] = f16_round(x[i]);
          switch (it.enc) {
            case Enc::Float: encode_float(x, C, it.float_dtype, &raw[r * C * dtype_size(it.float_dtype)]); break;
            case Enc::Affine:
              if (o_.search_scales)
                quant::affine_quantize_row_search(x, C, it.bits, it.group, weighting, &packed[r * words], s.data(), bb.data());
              else
                quant::affine_quantize_row(x, C, it.bits, it.group, o_.metal_rules, &packed[r * words], s.data(), bb.data());
              for (int64_t g = 0; g < groups; ++g) {
                sc16[r * groups + g] = f32_to_f16(s[g]);
                bi16[r * groups + g] = f32_to_f16(bb[g]);
              }
              break;
            case Enc::Fp: quant::fp_quantize_row(WeightFormat::MxFp4, x, C, &packed[r * words], &sc8[r * groups]); break;
            case Enc::Mxtq: {
              float nrm = 0;
              (o_.search_scales ? quant::mxtq_quantize_row_search : quant::mxtq_quantize_row)(
                  x, C, it.bits, tq->signs.data(), tq->codebook.data(), &packed[r * words], &nrm);
              sc16[r] = f32_to_f16(nrm);
              break;
            }
          }
        }
      });
      switch (it.enc) {
        case Enc::Float: {
          const uint64_t es = dtype_size(it.float_dtype);
          w_.write(idx[0], raw.data(), static_cast<uint64_t>(n * C) * es, static_cast<uint64_t>(r0 * C) * es);
          break;
        }
        case Enc::Affine:
          w_.write(idx[0], packed.data(), static_cast<uint64_t>(n * words) * 4, static_cast<uint64_t>(r0 * words) * 4);
          w_.write(idx[1], sc16.data(), static_cast<uint64_t>(n * groups) * 2, static_cast<uint64_t>(r0 * groups) * 2);
          w_.write(idx[2], bi16.data(), static_cast<uint64_t>(n * groups) * 2, static_cast<uint64_t>(r0 * groups) * 2);
          break;
        case Enc::Fp:
          w_.write(idx[0], packed.data(), static_cast<uint64_t>(n * words) * 4, static_cast<uint64_t>(r0 * words) * 4);
          w_.write(idx[1], sc8.data(), static_cast<uint64_t>(n * groups), static_cast<uint64_t>(r0 * groups));
          break;
        case Enc::Mxtq:
          w_.write(idx[0], packed.data(), static_cast<uint64_t>(n * words) * 4, static_cast<uint64_t>(r0 * words) * 4);
          w_.write(idx[1], sc16.data(), static_cast<uint64_t>(n) * 2, static_cast<uint64_t>(r0) * 2);
          break;
      }
      report(item_no, it.name);
    }
    if (it.enc == Enc::Mxtq) {
      const uint8_t b = static_cast<uint8_t>(it.bits);
      w_.write(idx[2], &b, 1, 0);
    }
  }

  // Signs and codebook per (in_features, bits), shared by every MXTQ tensor (and written to the sidecar).
  std::shared_ptr<const MxtqTables> tables(int64_t in, int bits) {
    auto key = std::make_pair(in, bits);
    auto itr = tables_.find(key);
    if (itr != tables_.end()) return itr->second;
    auto t = std::make_shared<MxtqTables>();
    t->in_features = in;
    t->bits = bits;
    t->signs = quant::mxtq_signs(in, o_.mxtq_seed);
    t->codebook = quant::mxtq_codebook(in, bits);
    tables_[key] = t;
    return t;
  }
  const std::map<std::pair<int64_t, int>, std::shared_ptr<const MxtqTables>>& all_tables() const { return tables_; }

 private:
  static void encode_float(const float* x, int64_t n, DType dt, uint8_t* out) {
    if (dt == DType::F32) {
      std::memcpy(out, x, static_cast<size_t>(n) * 4);
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t v = dt == DType::BF16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
      std::memcpy(out + 2 * i, &v, 2);
    }
  }
  void report(size_t item_no, const std::string& name) {
    if (!o_.progress) return;
    ConvertProgress p;
    p.tensor = item_no + 1;
    p.tensors = n_items_;
    p.name = name;
    p.bytes_written = w_.bytes_written();
    p.bytes_total = w_.total_tensor_bytes();
    o_.progress(p);
  }

  SafetensorsWriter& w_;
  const ConvertOptions& o_;
  bool f16_input_;
  ThreadPool& pool_;
  size_t n_items_;
  std::map<std::pair<int64_t, int>, std::shared_ptr<const MxtqTables>> tables_;
};

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw Error(cat(p.string(), ": write failed"));
}

ojson read_ordered_json(const fs::path& p) {
  return parse_json_file<ojson>(p.string());
}

// Prepares DST: refuses an existing one unless force (and never the source itself); creates it.
void prepare_dst(const fs::path& dst, bool force, const fs::path& src) {
  if (fs::exists(dst)) {
    if (!force) throw Error(cat(dst.string(), ": already exists (use --force to replace it)"));
    std::error_code ec;
    if (!src.empty() && fs::exists(src) && fs::equivalent(dst, src, ec))
      throw Error(cat(dst.string(), ": is the source folder; refusing to replace it"));
    if (!src.empty() && fs::exists(src)) {
      const std::string s = fs::weakly_canonical(src).string(), d = fs::weakly_canonical(dst).string();
      if (s.compare(0, d.size(), d) == 0 && (s.size() == d.size() || s[d.size()] == '/'))
        throw Error(cat(dst.string(), ": contains the source; refusing to replace it"));
    }
    if (!fs::is_directory(dst)) throw Error(cat(dst.string(), ": exists and is not a folder"));
    fs::remove_all(dst);
  }
  std::error_code ec;
  fs::create_directories(dst, ec);
  if (ec) throw Error(cat(dst.string(), ": cannot create: ", ec.message()));
}

void copy_sidecars(const fs::path& from, const fs::path& dst) {
  if (from.empty()) return;
  for (const auto& f : tokenizer_sidecar_files()) {
    const fs::path p = from / f;
    if (fs::is_regular_file(p)) fs::copy_file(p, dst / f, fs::copy_options::overwrite_existing);
  }
}

// The sidecars a VL bundle carries (preprocessor_config.json, …, §7.1), from the source folder.
void copy_vl_sidecars(const fs::path& from, const fs::path& dst) {
  if (from.empty() || !fs::is_directory(from)) return;
  for (const auto& e : fs::directory_iterator(from))
    if (e.is_regular_file() && bundle::is_vl_sidecar(e.path().filename().string()))
      fs::copy_file(e.path(), dst / e.path().filename(), fs::copy_options::overwrite_existing);
}

// preprocessor_config.json of ZAYA1-VL-8B (VL spec §1.1), for a synthetic VL model whose config folder has none.
std::string default_preprocessor_config(int64_t patch, int64_t merge, int64_t temporal) {
  ojson j;
  j["do_convert_rgb"] = true;
  j["do_normalize"] = true;
  j["do_rescale"] = true;
  j["do_resize"] = true;
  j["image_mean"] = {0.48145466, 0.4578275, 0.40821073};
  j["image_processor_type"] = "Qwen2VLImageProcessor";
  j["image_std"] = {0.26862954, 0.26130258, 0.27577711};
  j["max_pixels"] = 12845056;
  j["merge_size"] = merge;
  j["min_pixels"] = 3136;
  j["patch_size"] = patch;
  j["processor_class"] = "Zaya1VLProcessor";
  j["resample"] = 3;
  j["rescale_factor"] = 1.0 / 255.0;
  j["temporal_patch_size"] = temporal;
  return j.dump(2);
}

struct Job {
  ModelConfig cfg;
  bool vl = false;     // ZAYA1-VL: VL config.json, jang_config and sidecars
  fs::path vl_from;    // folder whose VL sidecars are copied
  vit::VisionConfig vision;
  ojson base_config;
  std::vector<Item> plan;
  RowFn rows;
  bool f16_input = true;
  fs::path tokenizer_from;
};

ConvertResult run_job(Job& job, const fs::path& dst, const ConvertOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<ThreadPool> own;
  if (o.threads > 0) own = std::make_unique<ThreadPool>(static_cast<size_t>(o.threads));
  ThreadPool& pool = own ? *own : default_pool();

  const ojson config = job.vl ? bundle::vl_bundle_config(job.base_config, o.profile, job.cfg, o.mxtq_seed)
                              : bundle::bundle_config(job.base_config, o.profile, job.cfg, o.mxtq_seed);
  write_text(dst / "config.json", config.dump(2));
  const ojson jc = bundle::jang_config(o.profile, job.plan, o.mxtq_seed, job.vl);
  if (!jc.is_null()) write_text(dst / "jang_config.json", jc.dump(2));
  copy_sidecars(job.tokenizer_from, dst);
  if (job.vl) {
    copy_vl_sidecars(job.vl_from, dst);
    if (!fs::exists(dst / "preprocessor_config.json"))
      write_text(dst / "preprocessor_config.json",
                 default_preprocessor_config(job.vision.patch, job.vision.merge, job.vision.temporal_patch));
  }

  std::vector<TensorSpec> specs;
  for (const auto& it : job.plan)
    for (auto& s : it.outputs()) specs.push_back(std::move(s));
  SafetensorsWriter w(dst.string(), std::move(specs), bundle::writer_options(o.profile, o.shard_bytes));
  Emitter em(w, o, job.f16_input, pool, job.plan.size());
  for (size_t i = 0; i < job.plan.size(); ++i) em.emit(job.plan[i], i, job.rows);
  const auto sum = w.finish();
  if (o.progress) {  // a final report: every byte written (MXTQ's tq_bits land after the last chunk report)
    ConvertProgress p;
    p.tensor = p.tensors = job.plan.size();
    p.name = "done";
    p.bytes_written = p.bytes_total = sum.tensor_bytes;
    o.progress(p);
  }

  if (!em.all_tables().empty()) {
    // jangtq_runtime.safetensors: signs.{in}.{seed} and codebook.{in}.{bits} for every (in, bits) used (§8.4).
    std::vector<std::pair<TensorSpec, const void*>> side;
    std::set<int64_t> ins;
    for (const auto& [key, t] : em.all_tables()) {
      if (ins.insert(key.first).second)
        side.push_back({TensorSpec{cat("signs.", key.first, ".", o.mxtq_seed), DType::F32, {key.first}}, t->signs.data()});
      side.push_back({TensorSpec{cat("codebook.", key.first, ".", key.second), DType::F32,
                                 {static_cast<int64_t>(t->codebook.size())}}, t->codebook.data()});
    }
    write_safetensors_file((dst / "jangtq_runtime.safetensors").string(), side);
  }
  ConvertResult r;
  r.dir = dst.string();
  r.shards = sum.files;
  r.tensors = sum.tensors;
  r.tensor_bytes = sum.tensor_bytes;
  r.file_bytes = sum.file_bytes;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// Runs the job into a freshly prepared DST; a failure removes the partial output.
ConvertResult run_into(Job& job, const fs::path& dst, const ConvertOptions& o, const fs::path& src) {
  prepare_dst(dst, o.force, src);
  try {
    return run_job(job, dst, o);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dst, ec);
    throw;
  }
}

// Rows [row, row+n) of a float tensor viewed as [*, cols], to fp32.
void read_rows(const TensorView& t, int64_t row, int64_t n, int64_t cols, float* out) {
  const size_t es = dtype_size(t.dtype);
  const uint8_t* p = t.data + static_cast<size_t>(row * cols) * es;
  const size_t m = static_cast<size_t>(n * cols);
  switch (t.dtype) {
    case DType::F32: std::memcpy(out, p, m * 4); break;
    case DType::F16:
    case DType::BF16:
      for (size_t i = 0; i < m; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = t.dtype == DType::F16 ? f16_to_f32(v) : bf16_to_f32(v);
      }
      break;
    case DType::F64:
      for (size_t i = 0; i < m; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
      break;
    default: throw Error(cat(t.file, ": tensor '", t.name, "' is not a float tensor"));
  }
  // The source is a read-only file mapping: drop the pages just read from our resident set (they stay in the page
  // cache), so converting a 16 GB checkpoint does not show up as 16 GB of RSS.
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t e = reinterpret_cast<uintptr_t>(p + m * es);
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

bool is_float_dtype(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16 || d == DType::F64; }

// ---- synth random numbers: a pure function of (seed, tensor, row), whatever the chunking or thread count ------

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

void synth_row(const Item& it, uint64_t seed, int64_t row, float* out) {
  const int64_t C = it.cols();
  switch (it.init) {
    case bundle::Init::Ones: std::fill(out, out + C, 1.0f); return;
    case bundle::Init::Zeros: std::fill(out, out + C, 0.0f); return;
    default: break;
  }
  uint64_t s = seed * 0x9E3779B97F4A7C15ull ^ hash_name(it.name) ^ (static_cast<uint64_t>(row) * 0xD1B54A32D192ED03ull);
  // Sum of 4 uniforms (Irwin–Hall), centred and scaled to unit variance: close to normal, bounded at ±3.46σ, and
  // one 64-bit draw per value — fast enough to synthesize an 8B model in minutes.
  const float k = it.init_std * 1.7320508f / 65536.0f;
  for (int64_t i = 0; i < C; ++i) {
    const uint64_t r = splitmix(s);
    const int32_t sum = static_cast<int32_t>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)) -
                        2 * 65536;
    out[i] = static_cast<float>(sum) * k;
  }
}

}  // namespace

ConvertResult convert_checkpoint(const std::string& src, const std::string& dst, const ConvertOptions& o) {
  const fs::path sp(src);
  if (!fs::is_directory(sp)) throw Error(cat(src, ": not a folder (expected a checkpoint folder with config.json)"));
  if (!fs::exists(sp / "config.json")) throw Error(cat(src, ": has no config.json"));
  Job job;
  job.cfg = ModelConfig::load(src);
  auto store = std::make_shared<TensorStore>(TensorStore::open(src));
  const Layout found = detect_layout(*store);
  if (found != job.cfg.layout)
    throw Error(cat(src, ": config.json describes the ", layout_name(job.cfg.layout), " layout but the tensors are in the ",
                    layout_name(found), " layout"));
  for (int64_t n : {0, 1})
    for (const char* suffix : {"weight", "tq_packed"})
      if (store->find(cat("model.layers.", n, ".zaya_block.experts.switch_mlp.gate_proj.", suffix)))
        throw Error(cat(src, ": is already a quantized bundle; convert needs a float checkpoint"));
  if (store->find("model.embed_tokens.scales"))
    throw Error(cat(src, ": is already a quantized bundle; convert needs a float checkpoint"));
  job.vl = job.cfg.layout == Layout::Fused;
  if (job.vl) {
    job.vision = vit::VisionConfig::load(src);
    job.vl_from = sp;
  }

  // Every tensor the architecture needs, present, float, with its shape.
  std::vector<std::string> missing;
  for (const auto& t : job.vl ? bundle::vl_tensors(job.cfg, job.vision, false) : expected_tensors(job.cfg)) {
    const TensorView* v = store->find(t.name);
    if (!v) {
      missing.push_back(t.name);
      continue;
    }
    if (!is_float_dtype(v->dtype))
      throw Error(cat(v->file, ": tensor '", t.name, "' has dtype ", dtype_name(v->dtype), "; convert needs BF16/F16/F32"));
    if (v->shape != t.shape) {
      TensorView want;
      want.shape = t.shape;
      throw Error(cat(v->file, ": tensor '", t.name, "' has shape ", v->shape_str(), ", expected ", want.shape_str()));
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += cat(", … (", missing.size() - 8, " more)");
    throw Error(cat(src, ": missing ", missing.size(), " source tensor(s) the architecture needs: ", list));
  }

  job.plan = job.vl ? bundle::build_vl_plan(job.cfg, job.vision, o.profile)
                    : bundle::build_plan(job.cfg, o.profile, job.cfg.layout);
  job.base_config = job.cfg.layout != Layout::Native ? read_ordered_json(sp / "config.json")
                                                     : bundle::legacy_config_json(job.cfg);
  job.tokenizer_from = sp;
  job.f16_input = true;
  // Resolve every part once; rows are then read straight from the mapped files.
  auto views = std::make_shared<std::map<std::string, const TensorView*>>();
  for (const auto& it : job.plan)
    for (const auto& p : it.parts) {
      const TensorView* v = store->find(p.tensor);
      if (!v) throw Error(cat(src, ": missing source tensor '", p.tensor, "'"));
      if (v->shape.empty() || v->shape.back() != it.cols() || (p.row0 + it.part_rows) * it.cols() > v->numel())
        throw Error(cat(v->file, ": tensor '", p.tensor, "' of shape ", v->shape_str(), " does not hold the rows of '",
                        it.name, "'"));
      (*views)[p.tensor] = v;
    }
  job.rows = [store, views](const Item& it, int64_t r0, int64_t n, float* out) {
    const int64_t C = it.cols();
    while (n > 0) {
      const int64_t part = r0 / it.part_rows, in_part = r0 % it.part_rows;
      const int64_t take = std::min(n, it.part_rows - in_part);
      const Item::Part& p = it.parts[static_cast<size_t>(part)];
      read_rows(*views->at(p.tensor), p.row0 + in_part, take, C, out);
      out += take * C;
      r0 += take;
      n -= take;
    }
  };
  return run_into(job, dst, o, sp);
}

ConvertResult synth_bundle(const std::string& config_path, const std::string& dst, const SynthOptions& o) {
  const fs::path cp = fs::is_directory(config_path) ? fs::path(config_path) / "config.json" : fs::path(config_path);
  Job job;
  job.cfg = ModelConfig::load(cp.string());
  job.base_config = job.cfg.layout != Layout::Native ? read_ordered_json(cp) : bundle::legacy_config_json(job.cfg);
  job.vl = job.cfg.layout == Layout::Fused;
  if (job.vl) {
    // A random VL model: decoder + LoRA + vision tower, plus the preprocessor config beside the config (or ZAYA1-VL-8B's).
    job.vision = vit::VisionConfig::load(cp.string());
    job.vl_from = cp.parent_path();
    job.plan = bundle::build_vl_plan(job.cfg, job.vision, o.profile);
  } else {
    job.plan = bundle::build_plan(job.cfg, o.profile, Layout::Legacy);
  }
  if (!o.tokenizer_dir.empty()) {
    if (!fs::is_directory(o.tokenizer_dir)) throw Error(cat(o.tokenizer_dir, ": tokenizer folder not found"));
    job.tokenizer_from = o.tokenizer_dir;
  }
  job.f16_input = false;  // random values need no float16 staging
  const uint64_t seed = o.seed;
  job.rows = [seed](const Item& it, int64_t r0, int64_t n, float* out) {
    for (int64_t r = 0; r < n; ++r) synth_row(it, seed, r0 + r, out + r * it.cols());
  };
  return run_into(job, dst, o, fs::path());
}

}  // namespace zaya
