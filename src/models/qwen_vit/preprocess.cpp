#include "models/qwen_vit/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "zaya/error.h"

namespace zaya::vit {

namespace {

using json = nlohmann::json;

// ---- preprocessor_config.json ------------------------------------------------------------------------------------

struct Reader {
  const json& j;
  const std::string& src;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw Error(cat(src, ": ", key, " ", why));
  }
  const json* find(const std::string& key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  // An integer in [lo, hi]; 3136.0 is accepted as 3136, 3136.5 is not.
  int64_t integer(const std::string& key, const json& v, int64_t lo, int64_t hi) const {
    double d = 0;
    if (v.is_number_integer()) {
      d = static_cast<double>(v.get<int64_t>());
    } else if (v.is_number_float()) {
      d = v.get<double>();
      if (d != std::floor(d)) fail(key, cat("must be an integer, got ", v.dump()));
    } else {
      fail(key, cat("must be an integer, got ", v.dump()));
    }
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)))
      fail(key, cat("must be in [", lo, ", ", hi, "], got ", v.dump()));
    return static_cast<int64_t>(d);
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const {
    const json* v = find(key);
    if (!v) fail(key, "is missing");
    return integer(key, *v, lo, hi);
  }
  double number(const std::string& key, const json& v) const {
    if (!v.is_number()) fail(key, cat("must be a number, got ", v.dump()));
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(key, "must be finite");
    return d;
  }
  std::array<double, 3> triple(const std::string& key) const {
    const json* v = find(key);
    if (!v) fail(key, "is missing");
    if (!v->is_array() || v->size() != 3) fail(key, cat("must be a list of 3 numbers (R, G, B), got ", v->dump()));
    return {number(key, (*v)[0]), number(key, (*v)[1]), number(key, (*v)[2])};
  }
  bool flag(const std::string& key) const {
    const json* v = find(key);
    if (!v) return true;  // the HF processor's default for every do_* flag
    if (!v->is_boolean()) fail(key, cat("must be true or false, got ", v->dump()));
    return v->get<bool>();
  }
  // min_pixels / max_pixels, or the newer size.{shortest_edge,longest_edge} spelling.
  int64_t pixels(const std::string& key, const std::string& size_key) const {
    if (const json* v = find(key)) return integer(key, *v, 1, kMaxImagePixels);
    const json* size = find("size");
    if (size && size->is_object() && size->contains(size_key))
      return integer("size." + size_key, size->at(size_key), 1, kMaxImagePixels);
    fail(key, cat("is missing (nor is size.", size_key, " given)"));
  }
};

// ---- Pillow's bicubic resampling -----------------------------------------------------------------------------------

// Fixed-point precision of the taps: 8 bits of result, 2 bits of headroom for the filter's negative lobes.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr int32_t kHalf = int32_t{1} << (kPrecisionBits - 1);

// Keys' cubic convolution with a = -0.5, in the exact evaluation order Pillow uses (bit-exact taps).
double bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output index: the first input index it reads, how many, and the fixed-point weights.
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> k;  // [out, ksize]
};

Taps make_taps(int in_size, int out_size) {
  Taps t;
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);  // downscaling widens the kernel (antialiasing)
  const double support = 2.0 * filterscale;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.k.assign(static_cast<size_t>(out_size) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  const double ss = 1.0 / filterscale;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    // Truncating casts, as Pillow's: the bounds round half up for the non-negative values that survive the clamp.
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = hi - lo;
    double sum = 0.0;
    for (int x = 0; x < n; ++x) {
      w[x] = bicubic((static_cast<double>(x + lo) - center + 0.5) * ss);
      sum += w[x];
    }
    int32_t* k = &t.k[static_cast<size_t>(xx) * t.ksize];
    for (int x = 0; x < n; ++x) {
      const double v = (sum != 0.0 ? w[x] / sum : w[x]) * (1 << kPrecisionBits);
      k[x] = static_cast<int32_t>(v < 0 ? v - 0.5 : v + 0.5);  // round half away from zero
    }
    t.first[xx] = lo;
    t.count[xx] = n;
  }
  return t;
}

inline uint8_t clip8(int32_t v) { return static_cast<uint8_t>(std::clamp(v >> kPrecisionBits, 0, 255)); }

// Rows [row0, row0 + rows) of `in` (width in_w) resampled horizontally into `out` (rows × taps.first.size()).
void pass_horizontal(const uint8_t* in, int in_w, int row0, int rows, const Taps& t, uint8_t* out) {
  const int out_w = static_cast<int>(t.first.size());
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src = in + static_cast<size_t>(row0 + y) * in_w * 3;
    uint8_t* dst = out + static_cast<size_t>(y) * out_w * 3;
    for (int xx = 0; xx < out_w; ++xx) {
      const int32_t* k = &t.k[static_cast<size_t>(xx) * t.ksize];
      const uint8_t* p = src + static_cast<size_t>(t.first[xx]) * 3;
      int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int x = 0; x < t.count[xx]; ++x, p += 3) {
        s0 += p[0] * k[x];
        s1 += p[1] * k[x];
        s2 += p[2] * k[x];
      }
      dst[xx * 3 + 0] = clip8(s0);
      dst[xx * 3 + 1] = clip8(s1);
      dst[xx * 3 + 2] = clip8(s2);
    }
  }
}

// Vertical pass: row yy of `out` from rows first[yy] - row0 … of `in`. Integer sums, so accumulating a whole row
// at a time (vectorisable) gives exactly Pillow's per-pixel result.
void pass_vertical(const uint8_t* in, int width, int row0, const Taps& t, uint8_t* out) {
  const size_t row_len = static_cast<size_t>(width) * 3;
  std::vector<int32_t> acc(row_len);
  for (size_t yy = 0; yy < t.first.size(); ++yy) {
    const int32_t* k = &t.k[yy * t.ksize];
    std::fill(acc.begin(), acc.end(), kHalf);
    for (int y = 0; y < t.count[yy]; ++y) {
      const uint8_t* src = in + static_cast<size_t>(t.first[yy] - row0 + y) * row_len;
      const int32_t ky = k[y];
      for (size_t i = 0; i < row_len; ++i) acc[i] += src[i] * ky;
    }
    uint8_t* dst = out + yy * row_len;
    for (size_t i = 0; i < row_len; ++i) dst[i] = clip8(acc[i]);
  }
}

void check_image(const RgbImage& img, const char* what) {
  if (img.height <= 0 || img.width <= 0 || img.height > kMaxImageSide * 64 || img.width > kMaxImageSide * 64 ||
      img.pixels.size() != static_cast<size_t>(img.height * img.width * 3))
    throw Error(cat(what, ": bad RGB image (", img.height, "x", img.width, ", ", img.pixels.size(), " bytes)"));
}

}  // namespace

PreprocessorConfig parse_preprocessor_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(cat(source, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object()) throw Error(cat(source, ": expected a JSON object"));
  const Reader r{j, source};
  PreprocessorConfig c;
  c.min_pixels = r.pixels("min_pixels", "shortest_edge");
  c.max_pixels = r.pixels("max_pixels", "longest_edge");
  if (c.min_pixels > c.max_pixels) r.fail("min_pixels", cat("(", c.min_pixels, ") exceeds max_pixels (", c.max_pixels, ")"));
  c.patch_size = r.integer("patch_size", 1, 1024);
  c.merge_size = r.integer("merge_size", 1, 64);
  c.temporal_patch_size = r.integer("temporal_patch_size", 1, 64);
  c.image_mean = r.triple("image_mean");
  c.image_std = r.triple("image_std");
  for (double s : c.image_std)
    if (s == 0.0 || static_cast<float>(s) == 0.0f) r.fail("image_std", "must not contain 0");
  const json* rf = r.find("rescale_factor");
  if (!rf) r.fail("rescale_factor", "is missing");
  c.rescale_factor = r.number("rescale_factor", *rf);
  if (!(c.rescale_factor > 0)) r.fail("rescale_factor", "must be positive");
  const int64_t resample = r.integer("resample", 0, 5);
  if (resample != 3) r.fail("resample", cat("is ", resample, "; only 3 (BICUBIC, what the reference uses) is supported"));
  if (!r.flag("do_resize")) r.fail("do_resize", "is false; the vision tower needs the smart_resize grid");
  c.do_rescale = r.flag("do_rescale");
  c.do_normalize = r.flag("do_normalize");
  r.flag("do_convert_rgb");  // validated only: decoding always yields RGB
  return c;
}

PreprocessorConfig load_preprocessor_config(const std::string& path_or_dir) {
  // A model folder or the file itself.
  const std::string path = std::filesystem::is_directory(path_or_dir)
                               ? (std::filesystem::path(path_or_dir) / "preprocessor_config.json").string()
                               : path_or_dir;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(cat(path, ": cannot open preprocessor config"));
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_preprocessor_config(ss.str(), path);
}

std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                                         int64_t max_pixels) {
  if (height <= 0 || width <= 0) throw Error(cat("image has zero size (", height, "x", width, ")"));
  if (height > kMaxImageSide * 64 || width > kMaxImageSide * 64)
    throw Error(cat("image of ", height, "x", width, " is too large"));
  if (factor <= 0 || min_pixels <= 0 || max_pixels < min_pixels) throw Error("smart_resize: bad factor or pixel bounds");
  const double ratio = static_cast<double>(std::max(height, width)) / static_cast<double>(std::min(height, width));
  if (ratio > 200)
    throw Error(cat("image of ", height, "x", width, " has an aspect ratio of ", ratio, ", above the limit of 200"));
  const double H = static_cast<double>(height), W = static_cast<double>(width), f = static_cast<double>(factor);
  // Python round() is round-half-to-even: nearbyint in the default rounding mode, not std::round (P17).
  int64_t h = static_cast<int64_t>(std::nearbyint(H / f)) * factor;
  int64_t w = static_cast<int64_t>(std::nearbyint(W / f)) * factor;
  if (h * w > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(height * width) / static_cast<double>(max_pixels));
    h = std::max(factor, static_cast<int64_t>(std::floor(H / beta / f)) * factor);
    w = std::max(factor, static_cast<int64_t>(std::floor(W / beta / f)) * factor);
  } else if (h * w < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(height * width));
    h = static_cast<int64_t>(std::ceil(H * beta / f)) * factor;
    w = static_cast<int64_t>(std::ceil(W * beta / f)) * factor;
  }
  return {h, w};
}

RgbImage resize_bicubic(const RgbImage& in, int64_t out_height, int64_t out_width) {
  check_image(in, "resize");
  if (out_height <= 0 || out_width <= 0 || out_height > kMaxImageSide * 64 || out_width > kMaxImageSide * 64 ||
      out_height * out_width > kMaxImagePixels)
    throw Error(cat("resize: bad target size ", out_height, "x", out_width));
  const int in_h = static_cast<int>(in.height), in_w = static_cast<int>(in.width);
  const int out_h = static_cast<int>(out_height), out_w = static_cast<int>(out_width);
  RgbImage out;
  out.height = out_height;
  out.width = out_width;
  const bool need_h = out_w != in_w, need_v = out_h != in_h;
  if (!need_h && !need_v) {
    out.pixels = in.pixels;
    return out;
  }
  out.pixels.resize(static_cast<size_t>(out_h) * out_w * 3);
  const Taps tv = make_taps(in_h, out_h);
  if (!need_h) {
    pass_vertical(in.pixels.data(), in_w, 0, tv, out.pixels.data());
    return out;
  }
  const Taps th = make_taps(in_w, out_w);
  if (!need_v) {
    pass_horizontal(in.pixels.data(), in_w, 0, in_h, th, out.pixels.data());
    return out;
  }
  // Horizontal pass only over the source rows the vertical pass reads.
  const int row0 = tv.first.front(), row1 = tv.first.back() + tv.count.back();
  std::vector<uint8_t> tmp(static_cast<size_t>(row1 - row0) * out_w * 3);
  pass_horizontal(in.pixels.data(), in_w, row0, row1 - row0, th, tmp.data());
  pass_vertical(tmp.data(), out_w, row0, tv, out.pixels.data());
  return out;
}

void append_patches(const RgbImage& resized, const PreprocessorConfig& cfg, ImagePatches& out) {
  check_image(resized, "patchify");
  const int64_t ps = cfg.patch_size, m = cfg.merge_size, tps = cfg.temporal_patch_size;
  if (ps <= 0 || m <= 0 || tps <= 0) throw Error("patchify: bad patch, merge or temporal patch size");
  if (resized.height % (ps * m) != 0 || resized.width % (ps * m) != 0)
    throw Error(cat("patchify: image of ", resized.height, "x", resized.width, " is not a multiple of ", ps * m));
  const int64_t cols = 3 * tps * ps * ps;
  if (out.rows != 0 && out.cols != cols)
    throw Error(cat("patchify: patches of ", cols, " values appended to rows of ", out.cols));
  out.cols = cols;

  // u8 → float per channel through a table: exactly §3.4–3.5 (float32(float64(v)·factor), then a float32 subtract
  // and divide with mean/std rounded to float32), computed once per value instead of per pixel.
  std::array<std::array<float, 256>, 3> lut;
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(cfg.image_mean[c]), sd = static_cast<float>(cfg.image_std[c]);
    for (int v = 0; v < 256; ++v) {
      float x = cfg.do_rescale ? static_cast<float>(static_cast<double>(v) * cfg.rescale_factor) : static_cast<float>(v);
      if (cfg.do_normalize) x = (x - mean) / sd;
      lut[c][v] = x;
    }
  }

  const PatchGrid g{1, resized.height / ps, resized.width / ps};
  const size_t frame = static_cast<size_t>(ps * ps);
  const size_t row0 = static_cast<size_t>(out.rows);
  out.pixel_values.resize((row0 + static_cast<size_t>(g.patches())) * cols);
  float* row = out.pixel_values.data() + row0 * cols;
  const uint8_t* pix = resized.pixels.data();
  // Merge-block major (§3.6): 2×2 blocks in raster order, patches raster within a block; a row is (c, t, y, x).
  for (int64_t bh = 0; bh < g.h / m; ++bh)
    for (int64_t bw = 0; bw < g.w / m; ++bw)
      for (int64_t mh = 0; mh < m; ++mh)
        for (int64_t mw = 0; mw < m; ++mw, row += cols) {
          const int64_t py = (bh * m + mh) * ps, px = (bw * m + mw) * ps;
          float* d0 = row;  // channel c, frame 0 starts at c·tps·ps²
          float* d1 = row + tps * frame;
          float* d2 = row + 2 * tps * frame;
          for (int64_t y = 0; y < ps; ++y) {
            const uint8_t* src = pix + ((py + y) * resized.width + px) * 3;
            for (int64_t x = 0; x < ps; ++x, src += 3) {
              d0[y * ps + x] = lut[0][src[0]];
              d1[y * ps + x] = lut[1][src[1]];
              d2[y * ps + x] = lut[2][src[2]];
            }
          }
          // A still image fills all tps frames with itself (the reference repeats the last frame).
          for (float* d : {d0, d1, d2})
            for (int64_t t = 1; t < tps; ++t) std::memcpy(d + t * frame, d, frame * sizeof(float));
        }
  out.rows += g.patches();
  out.grids.push_back(g);
}

ImagePatches preprocess_images(std::span<const RgbImage> images, const PreprocessorConfig& cfg) {
  ImagePatches out;
  for (size_t i = 0; i < images.size(); ++i) {
    const RgbImage& img = images[i];
    check_image(img, "preprocess");
    const auto [h, w] = smart_resize(img.height, img.width, cfg.factor(), cfg.min_pixels, cfg.max_pixels);
    append_patches(resize_bicubic(img, h, w), cfg, out);
  }
  return out;
}

}  // namespace zaya::vit
