// ZAYA1-VL image input (spec §3): PNG/JPEG decoding to RGB as Pillow's convert("RGB"), smart_resize, the
// Pillow-exact bicubic resize, rescale/normalise and merge-block-major patchify, against the reference golden data
// (tests/data/golden/zaya1-vl/tiny-a) and hand-made images.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/image.h"
#include "io/safetensors.h"
#include "models/qwen_vit/preprocess.h"
#include "test_util.h"
#include "zaya/error.h"

// stb_image_write only makes a JPEG for the decoder tests (third-party code: static, warnings silenced).
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace zaya {
namespace {

using Bytes = std::vector<uint8_t>;

std::string case_dir() { return test::require_path(test::data_dir() + "/golden/zaya1-vl/tiny-a"); }

using test::crc32;
using test::make_png;

Bytes rgb_of(const RgbImage& im) { return im.pixels; }

void expect_error(const Bytes& bytes, const std::string& fragment) {
  try {
    decode_image(bytes, "test image");
    ADD_FAILURE() << "expected an error containing '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

RgbImage from_tensor(const TensorView& t) {
  EXPECT_EQ(t.dtype, DType::U8);
  EXPECT_EQ(t.shape.size(), 3u);
  RgbImage im;
  im.height = t.shape[0];
  im.width = t.shape[1];
  im.pixels.assign(t.data, t.data + t.nbytes);
  return im;
}

// A smooth test pattern with values inside [40, 215] (no clamping in either pass).
RgbImage pattern(int64_t h, int64_t w) {
  RgbImage im;
  im.height = h;
  im.width = w;
  im.pixels.resize(static_cast<size_t>(h * w * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        im.pixels[(y * w + x) * 3 + c] = static_cast<uint8_t>(
            127.5 + 87 * std::sin(0.05 * x * (c + 1) + 0.031 * y) * std::cos(0.043 * y * (3 - c) + 0.01 * x));
  return im;
}

// The antialiased Keys-cubic resize straight from its definition, in float64 with no intermediate rounding:
// output sample i of a side averages inputs j with weight cubic((j + 0.5 − (i + 0.5)·s) / max(s, 1)), normalised.
std::vector<double> weights_1d(int64_t in, int64_t out, int64_t i) {
  const double s = static_cast<double>(in) / out, fs = std::max(s, 1.0), c = (i + 0.5) * s;
  std::vector<double> w(in);
  double sum = 0;
  for (int64_t j = 0; j < in; ++j) {
    const double x = std::abs((j + 0.5 - c) / fs);
    w[j] = x < 1 ? (1.5 * x - 2.5) * x * x + 1 : x < 2 ? ((-0.5 * x + 2.5) * x - 4) * x + 2 : 0;
    sum += w[j];
  }
  for (double& v : w) v /= sum;
  return w;
}

std::vector<double> reference_resize(const RgbImage& im, int64_t oh, int64_t ow) {
  // Pillow stores the horizontal pass as uint8, so its overshoot is clamped before the vertical pass.
  const auto clamp = [](double v) { return std::clamp(v, 0.0, 255.0); };
  std::vector<double> tmp(im.height * ow * 3), out(oh * ow * 3);
  for (int64_t x = 0; x < ow; ++x) {
    const auto w = weights_1d(im.width, ow, x);
    for (int64_t y = 0; y < im.height; ++y)
      for (int c = 0; c < 3; ++c) {
        double s = 0;
        for (int64_t j = 0; j < im.width; ++j) s += w[j] * im.at(y, j, c);
        tmp[(y * ow + x) * 3 + c] = clamp(s);
      }
  }
  for (int64_t y = 0; y < oh; ++y) {
    const auto w = weights_1d(im.height, oh, y);
    for (int64_t x = 0; x < ow * 3; ++x) {
      double s = 0;
      for (int64_t j = 0; j < im.height; ++j) s += w[j] * tmp[j * ow * 3 + x];
      out[y * ow * 3 + x] = clamp(s);
    }
  }
  return out;
}

// Pillow rounds to uint8 after each pass, so it may differ from the float definition by about a level.
// One pass alone is the exact value rounded once (≤ 0.5 level, plus the 2^-22 tap quantisation).
void expect_near_reference(const RgbImage& in, int64_t oh, int64_t ow) {
  const RgbImage got = vit::resize_bicubic(in, oh, ow);
  ASSERT_EQ(got.height, oh);
  ASSERT_EQ(got.width, ow);
  const auto ref = reference_resize(in, oh, ow);
  double worst = 0, total = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::abs(got.pixels[i] - ref[i]);
    worst = std::max(worst, d);
    total += d;
  }
  const bool one_pass = oh == in.height || ow == in.width;
  EXPECT_LE(worst, one_pass ? 0.501 : 1.5) << in.height << "x" << in.width << " -> " << oh << "x" << ow;
  EXPECT_LE(total / ref.size(), 0.4) << in.height << "x" << in.width << " -> " << oh << "x" << ow;
}

// stb_image_write's output callback.
void append_bytes(void* ctx, void* data, int size) {
  if (size <= 0) return;
  auto* out = static_cast<Bytes*>(ctx);
  const size_t old = out->size();
  out->resize(old + static_cast<size_t>(size));
  std::memcpy(out->data() + old, data, static_cast<size_t>(size));
}

vit::PreprocessorConfig golden_config() { return vit::load_preprocessor_config(case_dir() + "/preprocessor_config.json"); }

// ---- decoding ------------------------------------------------------------------------------------------------------

TEST(ImageDecode, GoldenPngMatchesTheReferenceDecode) {
  const auto inputs = SafetensorsFile::open(case_dir() + "/inputs.safetensors");
  const RgbImage want = from_tensor(*inputs->find("image_rgb_u8"));
  const RgbImage got = read_image(case_dir() + "/image.png");
  EXPECT_EQ(got.height, 100);
  EXPECT_EQ(got.width, 130);
  EXPECT_EQ(got.pixels, want.pixels);
  // The same bytes from memory.
  const std::string file = test::read_file(case_dir() + "/image.png");
  EXPECT_EQ(decode_image(Bytes(file.begin(), file.end())).pixels, want.pixels);
}

TEST(ImageDecode, GreyAndAlphaConvertLikePillow) {
  // 8-bit grey: replicated.
  EXPECT_EQ(rgb_of(decode_image(make_png(3, 1, 8, 0, {0, 77, 255}))), (Bytes{0, 0, 0, 77, 77, 77, 255, 255, 255}));
  // Grey + alpha and RGBA: alpha dropped, never composited (a fully transparent pixel keeps its colour).
  EXPECT_EQ(rgb_of(decode_image(make_png(2, 1, 8, 4, {10, 0, 200, 128}))), (Bytes{10, 10, 10, 200, 200, 200}));
  EXPECT_EQ(rgb_of(decode_image(make_png(2, 1, 8, 6, {1, 2, 3, 0, 250, 251, 252, 255}))),
            (Bytes{1, 2, 3, 250, 251, 252}));
  // Low bit depths scale to full range (Pillow's "1", "L;2", "L;4" unpackers).
  EXPECT_EQ(rgb_of(decode_image(make_png(2, 1, 1, 0, {0x80}))), (Bytes{255, 255, 255, 0, 0, 0}));
  EXPECT_EQ(rgb_of(decode_image(make_png(2, 1, 4, 0, {0x3f}))), (Bytes{51, 51, 51, 255, 255, 255}));
  // An RGB tRNS colour key changes nothing.
  EXPECT_EQ(rgb_of(decode_image(make_png(1, 1, 8, 2, {9, 8, 7}, {}, {0, 9, 0, 8, 0, 7}))), (Bytes{9, 8, 7}));
}

TEST(ImageDecode, PaletteConvertsToItsColours) {
  const Bytes plte = {255, 0, 0, 0, 128, 0, 1, 2, 3, 200, 100, 50};
  EXPECT_EQ(rgb_of(decode_image(make_png(4, 1, 8, 3, {3, 2, 1, 0}, plte))),
            (Bytes{200, 100, 50, 1, 2, 3, 0, 128, 0, 255, 0, 0}));
  // 2-bit indices with a tRNS (alpha per entry): the colours stay, the alpha goes.
  EXPECT_EQ(rgb_of(decode_image(make_png(4, 1, 2, 3, {0x1b}, plte, {0, 10, 255}))),
            (Bytes{255, 0, 0, 0, 128, 0, 1, 2, 3, 200, 100, 50}));
}

TEST(ImageDecode, SixteenBitSamplesReduceLikePillow) {
  // RGB / grey+alpha: the high byte.
  EXPECT_EQ(rgb_of(decode_image(make_png(1, 1, 16, 2, {0x12, 0x34, 0xab, 0xcd, 0x00, 0xff}))), (Bytes{0x12, 0xab, 0x00}));
  EXPECT_EQ(rgb_of(decode_image(make_png(1, 1, 16, 4, {0x80, 0x7f, 0x00, 0x00}))), (Bytes{0x80, 0x80, 0x80}));
  // Grey without alpha: Pillow's integer mode clamps to 255 (stb alone would give the high byte).
  EXPECT_EQ(rgb_of(decode_image(make_png(4, 1, 16, 0, {0x00, 0x00, 0x00, 0xc8, 0x01, 0x00, 0xff, 0xff}))),
            (Bytes{0, 0, 0, 200, 200, 200, 255, 255, 255, 255, 255, 255}));
}

TEST(ImageDecode, JpegDecodes) {
  const RgbImage src = pattern(40, 56);
  Bytes jpg;
  stbi_write_jpg_to_func(append_bytes, &jpg, 56, 40, 3, src.pixels.data(), 100);
  ASSERT_GT(jpg.size(), 100u);
  const RgbImage got = decode_image(jpg);
  ASSERT_EQ(got.height, 40);
  ASSERT_EQ(got.width, 56);
  double err = 0;
  for (size_t i = 0; i < src.pixels.size(); ++i) err += std::abs(got.pixels[i] - src.pixels[i]);
  EXPECT_LT(err / src.pixels.size(), 3.0);  // lossy, but close at quality 100
  // Cut anywhere after the header: refused, never decoded as zeros.
  for (size_t n : {jpg.size() / 2, jpg.size() - 2, jpg.size() - 1}) expect_error(Bytes(jpg.begin(), jpg.begin() + n), "JPEG");
  Bytes junk = {0xff, 0xd8, 0xff};
  junk.resize(64, 0x55);
  expect_error(junk, "JPEG");
}

TEST(ImageDecode, BadInputsAreErrors) {
  expect_error({}, "empty");
  expect_error(Bytes(100, 0x42), "not a PNG or JPEG");
  expect_error(Bytes{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0}, "not a PNG or JPEG");
  // Truncated: every prefix of a small PNG that cuts its header or pixel data is refused. (A cut inside the final
  // IEND chunk loses no pixels; stb then decodes the image, as Pillow does.)
  Bytes rows(60);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<uint8_t>(i * 37);
  const Bytes png = make_png(5, 4, 8, 2, rows);
  for (size_t n = 8; n < png.size() - 12; ++n) {
    SCOPED_TRACE(n);
    EXPECT_THROW(decode_image(Bytes(png.begin(), png.begin() + n)), Error);
  }
  EXPECT_EQ(decode_image(png).pixels, rows);
  EXPECT_EQ(decode_image(Bytes(png.begin(), png.end() - 2)).pixels, rows);
  // And the golden PNG cut in the middle of its pixel data.
  const std::string file = test::read_file(case_dir() + "/image.png");
  for (size_t n : {file.size() / 3, file.size() / 2, file.size() - 20})
    expect_error(Bytes(file.begin(), file.begin() + n), "PNG");
  // Zero-sized.
  expect_error(make_png(0, 4, 8, 2, {}), "PNG");
  expect_error(make_png(4, 0, 8, 2, {}), "PNG");
  // Huge declared dimensions: refused from the header alone (no pixel data is even present).
  const Bytes huge = make_png(1, 1, 8, 2, {0, 0, 0});
  const auto set_dims = [&](uint32_t w, uint32_t h) {
    Bytes b = huge;
    for (int i = 0; i < 4; ++i) {
      b[16 + i] = static_cast<uint8_t>(w >> (24 - 8 * i));
      b[20 + i] = static_cast<uint8_t>(h >> (24 - 8 * i));
    }
    const uint32_t crc = crc32(&b[12], 17) ^ 0xffffffffu;  // keep the IHDR CRC valid
    for (int i = 0; i < 4; ++i) b[29 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
    return b;
  };
  expect_error(set_dims(100000, 100000), "limit");
  expect_error(set_dims(16385, 2), "limit");
  expect_error(set_dims(20000000, 20000000), "limit");
  // Missing file.
  EXPECT_THROW(read_image(case_dir() + "/no-such-image.png"), Error);
}

// ---- preprocessing -------------------------------------------------------------------------------------------------

TEST(PreprocessConfig, ParsesTheGoldenFile) {
  const auto c = golden_config();
  EXPECT_EQ(c.min_pixels, 3136);
  EXPECT_EQ(c.max_pixels, 12845056);
  EXPECT_EQ(c.patch_size, 14);
  EXPECT_EQ(c.merge_size, 2);
  EXPECT_EQ(c.temporal_patch_size, 1);
  EXPECT_EQ(c.factor(), 28);
  EXPECT_DOUBLE_EQ(c.image_mean[0], 0.48145466);
  EXPECT_DOUBLE_EQ(c.image_std[2], 0.27577711);
  EXPECT_DOUBLE_EQ(c.rescale_factor, 1.0 / 255);
  EXPECT_TRUE(c.do_rescale && c.do_normalize);
}

TEST(PreprocessConfig, BadValuesAreClearErrors) {
  const auto good = nlohmann::json::parse(test::read_file(case_dir() + "/preprocessor_config.json"));
  const auto expect_bad = [&](const nlohmann::json& j, const std::string& fragment) {
    try {
      vit::parse_preprocessor_config(j.dump(), "cfg.json");
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  const auto with = [&](const std::string& key, const nlohmann::json& v) {
    auto j = good;
    j[key] = v;
    return j;
  };
  const auto without = [&](const std::string& key) {
    auto j = good;
    j.erase(key);
    return j;
  };
  expect_bad(with("resample", 2), "resample is 2");
  expect_bad(without("temporal_patch_size"), "temporal_patch_size is missing");
  expect_bad(without("min_pixels"), "min_pixels is missing");
  expect_bad(without("rescale_factor"), "rescale_factor is missing");
  expect_bad(with("patch_size", "14"), "patch_size must be an integer");
  expect_bad(with("patch_size", 14.5), "patch_size must be an integer");
  expect_bad(with("patch_size", 0), "patch_size must be in");
  expect_bad(with("image_mean", {0.5, 0.5}), "image_mean must be a list of 3");
  expect_bad(with("image_std", {0.5, 0, 0.5}), "image_std must not contain 0");
  expect_bad(with("rescale_factor", -1), "rescale_factor must be positive");
  expect_bad(with("do_resize", false), "do_resize");
  expect_bad(with("do_rescale", 1), "do_rescale must be true or false");
  expect_bad(with("min_pixels", 99999999), "exceeds max_pixels");
  EXPECT_THROW(vit::parse_preprocessor_config("{not json", "cfg.json"), Error);
  EXPECT_THROW(vit::parse_preprocessor_config("[1, 2]", "cfg.json"), Error);
  EXPECT_EQ(vit::parse_preprocessor_config(with("patch_size", 14.0).dump()).patch_size, 14);
  // The newer spelling of the pixel bounds.
  auto sized = without("min_pixels");
  sized.erase("max_pixels");
  sized["size"] = {{"shortest_edge", 1000}, {"longest_edge", 5000}};
  const auto c = vit::parse_preprocessor_config(sized.dump());
  EXPECT_EQ(c.min_pixels, 1000);
  EXPECT_EQ(c.max_pixels, 5000);
}

TEST(PreprocessSmartResize, MatchesTheReference) {
  const int64_t lo = 3136, hi = 12845056;
  const auto sr = [&](int64_t h, int64_t w) { return vit::smart_resize(h, w, 28, lo, hi); };
  using P = std::pair<int64_t, int64_t>;
  EXPECT_EQ(sr(100, 130), P(112, 140));  // the golden image
  // P17: Python rounds half to even: 70/28 = 2.5 → 2 (std::round would give 3 → 84); 98/28 = 3.5 → 4.
  EXPECT_EQ(sr(70, 140), P(56, 140));
  EXPECT_EQ(sr(70, 70), P(56, 56));
  EXPECT_EQ(sr(98, 98), P(112, 112));
  EXPECT_EQ(sr(42, 42), P(56, 56));
  EXPECT_EQ(sr(1080, 1920), P(1092, 1932));
  EXPECT_EQ(sr(3024, 4032), P(3024, 4032));  // exactly at the bound: kept
  // Max-pixels branch (floors).
  EXPECT_EQ(sr(4000, 6000), P(2912, 4368));
  EXPECT_EQ(sr(8192, 8192), P(3584, 3584));
  EXPECT_EQ(sr(16384, 16384), P(3584, 3584));
  EXPECT_EQ(vit::smart_resize(300, 410, 28, lo, 28 * 28 * 16), P(84, 112));
  EXPECT_EQ(vit::smart_resize(1000, 1000, 28, lo, 256 * 28 * 28), P(448, 448));
  // Min-pixels branch (ceils).
  EXPECT_EQ(sr(10, 20), P(56, 84));
  EXPECT_EQ(sr(13, 13), P(56, 56));
  EXPECT_EQ(sr(1, 200), P(28, 812));
  EXPECT_EQ(sr(5, 1000), P(28, 812));
  EXPECT_EQ(sr(200, 40000), P(196, 40012));
  // Rejected: aspect ratio above 200, zero size.
  EXPECT_THROW(sr(1, 201), Error);
  EXPECT_THROW(sr(40200, 200), Error);
  EXPECT_THROW(sr(0, 10), Error);
  EXPECT_THROW(sr(10, 0), Error);
}

TEST(PreprocessResize, GoldenUpscaleIsPillowExact) {
  const auto inputs = SafetensorsFile::open(case_dir() + "/inputs.safetensors");
  const RgbImage src = from_tensor(*inputs->find("image_rgb_u8"));
  const RgbImage want = from_tensor(*inputs->find("resized_rgb_u8"));
  ASSERT_EQ(want.height, 112);
  ASSERT_EQ(want.width, 140);
  const RgbImage got = vit::resize_bicubic(src, 112, 140);
  ASSERT_EQ(got.pixels.size(), want.pixels.size());
  size_t diff = 0;
  for (size_t i = 0; i < got.pixels.size(); ++i) diff += got.pixels[i] != want.pixels[i];
  EXPECT_EQ(diff, 0u) << "pixels differing from Pillow";
}

TEST(PreprocessResize, AgreesWithTheFilterDefinition) {
  // Up, down (antialiased support), one axis at a time, and non-integer ratios, against the float64 definition.
  const RgbImage big = pattern(300, 410);
  expect_near_reference(big, 84, 112);   // the max-pixels case below: 3.6× down
  expect_near_reference(big, 150, 205);  // exactly 2× down
  expect_near_reference(big, 300, 140);  // horizontal only
  expect_near_reference(big, 97, 410);   // vertical only
  const RgbImage small = pattern(33, 47);
  expect_near_reference(small, 56, 84);  // up
  expect_near_reference(small, 20, 70);  // down one side, up the other
  const auto inputs = SafetensorsFile::open(case_dir() + "/inputs.safetensors");
  expect_near_reference(from_tensor(*inputs->find("image_rgb_u8")), 56, 70);
}

TEST(PreprocessResize, ConstantsStayConstantAndSameSizeIsACopy) {
  for (uint8_t v : {0, 1, 128, 254, 255}) {
    RgbImage im;
    im.height = 123;
    im.width = 77;
    im.pixels.assign(123 * 77 * 3, v);
    for (auto [h, w] : {std::pair{28, 28}, std::pair{1000, 31}, std::pair{123, 400}})
      for (uint8_t p : vit::resize_bicubic(im, h, w).pixels) ASSERT_EQ(p, v) << h << "x" << w;
  }
  const RgbImage im = pattern(30, 40);
  EXPECT_EQ(vit::resize_bicubic(im, 30, 40).pixels, im.pixels);
  EXPECT_THROW(vit::resize_bicubic(im, 0, 40), Error);
}

TEST(PreprocessGolden, PixelValuesAndGridMatchTheReference) {
  const auto inputs = SafetensorsFile::open(case_dir() + "/inputs.safetensors");
  const RgbImage img = read_image(case_dir() + "/image.png");
  const RgbImage one[] = {img};
  const vit::ImagePatches p = vit::preprocess_images(one, golden_config());
  const auto grid = to_i64(*inputs->find("image_grid_thw"));
  ASSERT_EQ(p.grids.size(), 1u);
  EXPECT_EQ(std::vector<int64_t>({p.grids[0].t, p.grids[0].h, p.grids[0].w}), grid);
  EXPECT_EQ(vit::ImagePatches::tokens(p.grids[0], 2), 20);
  const TensorView& pv = *inputs->find("pixel_values");
  ASSERT_EQ(pv.shape, std::vector<int64_t>({p.rows, p.cols}));
  ASSERT_EQ(p.rows, 80);
  ASSERT_EQ(p.cols, 588);
  const std::vector<float> want = to_f32(pv);
  double worst = 0;
  size_t inexact = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(p.pixel_values[i] - want[i])));
    inexact += std::memcmp(&p.pixel_values[i], &want[i], sizeof(float)) != 0;
  }
  EXPECT_LE(worst, 1e-6);
  EXPECT_EQ(inexact, 0u) << "values not bit-exact (max abs " << worst << ")";
}

TEST(PreprocessPatchify, MergeBlockMajorOrderAndTemporalFrames) {
  // Raw values (no rescale/normalise) that encode their position, so each row element can be checked.
  vit::PreprocessorConfig cfg = golden_config();
  cfg.do_rescale = cfg.do_normalize = false;
  cfg.temporal_patch_size = 2;
  RgbImage im;
  im.height = 56;
  im.width = 84;
  im.pixels.resize(56 * 84 * 3);
  const auto value = [](int64_t y, int64_t x, int c) { return static_cast<uint8_t>((y * 7 + x * 3 + c * 85) % 256); };
  for (int64_t y = 0; y < 56; ++y)
    for (int64_t x = 0; x < 84; ++x)
      for (int c = 0; c < 3; ++c) im.pixels[(y * 84 + x) * 3 + c] = value(y, x, c);
  vit::ImagePatches p;
  vit::append_patches(im, cfg, p);
  ASSERT_EQ(p.grids.size(), 1u);
  EXPECT_EQ(p.grids[0].t, 1);
  EXPECT_EQ(p.grids[0].h, 4);
  EXPECT_EQ(p.grids[0].w, 6);
  ASSERT_EQ(p.rows, 24);
  ASSERT_EQ(p.cols, 3 * 2 * 14 * 14);
  int64_t r = 0;
  for (int64_t bh = 0; bh < 2; ++bh)
    for (int64_t bw = 0; bw < 3; ++bw)
      for (int64_t mh = 0; mh < 2; ++mh)
        for (int64_t mw = 0; mw < 2; ++mw, ++r)
          for (int c = 0; c < 3; ++c)
            for (int t = 0; t < 2; ++t)
              for (int64_t y = 0; y < 14; ++y)
                for (int64_t x = 0; x < 14; ++x) {
                  const float got = p.pixel_values[r * p.cols + ((c * 2 + t) * 14 + y) * 14 + x];
                  ASSERT_EQ(got, value((2 * bh + mh) * 14 + y, (2 * bw + mw) * 14 + x, c))
                      << "row " << r << " c " << c << " t " << t << " y " << y << " x " << x;
                }
  // A second image appends its rows and its grid; a misfit size is refused.
  RgbImage small = im;
  small.height = 28;
  small.width = 28;
  small.pixels.resize(28 * 28 * 3);
  vit::append_patches(small, cfg, p);
  EXPECT_EQ(p.rows, 28);
  ASSERT_EQ(p.grids.size(), 2u);
  EXPECT_EQ(p.grids[1].h, 2);
  EXPECT_EQ(p.pixel_values.size(), static_cast<size_t>(28 * p.cols));
  small.height = 14;
  small.width = 56;
  small.pixels.resize(14 * 56 * 3);
  EXPECT_THROW(vit::append_patches(small, cfg, p), Error);
}

TEST(PreprocessGolden, SeveralImagesConcatenate) {
  const auto cfg = golden_config();
  const RgbImage img = read_image(case_dir() + "/image.png");
  const RgbImage one[] = {img};
  const vit::ImagePatches single = vit::preprocess_images(one, cfg);
  // The golden image, then a large one that takes the max-pixels (downscale) branch under a small budget.
  vit::PreprocessorConfig small = cfg;
  small.max_pixels = 28 * 28 * 20;  // keeps the golden 112×140 (= 15680 pixels)
  const RgbImage two[] = {img, pattern(300, 410)};
  const vit::ImagePatches p = vit::preprocess_images(two, small);
  ASSERT_EQ(p.grids.size(), 2u);
  EXPECT_EQ(p.grids[1].h, 6);  // 84 × 140
  EXPECT_EQ(p.grids[1].w, 10);
  EXPECT_EQ(p.rows, 80 + 60);
  EXPECT_TRUE(std::equal(single.pixel_values.begin(), single.pixel_values.end(), p.pixel_values.begin()));
  // The second image's rows are that image preprocessed alone.
  const RgbImage second[] = {two[1]};
  const vit::ImagePatches alone = vit::preprocess_images(second, small);
  EXPECT_TRUE(std::equal(alone.pixel_values.begin(), alone.pixel_values.end(), p.pixel_values.begin() + 80 * 588));
  EXPECT_THROW(vit::preprocess_images(std::vector<RgbImage>{RgbImage{}}, cfg), Error);
}

}  // namespace
}  // namespace zaya
