// zaya convert --search-scales: the searched affine scales/biases and MXTQ norms never lose to MLX's / JANG's recipe
// on the error they minimise, are float16-exact, and a searched bundle has the default bundle's exact layout (same
// headers, index, config) with lower reconstruction error and lower KL divergence on trained-small.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <filesystem>
#include <random>

#include "test_util.h"
#include "zaya/convert.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "zaya/perplexity.h"
#include "tensor/quant_formats.h"
#include "io/safetensors.h"
#include "zaya/tokenizer.h"
#include "zaya/verify.h"

using namespace zaya;
namespace fs = std::filesystem;

namespace {

std::string trained_small() { return test::require_path(test::data_dir() + "/golden/zaya1-text/trained-small"); }

float f16r(float v) { return f16_to_f32(f32_to_f16(v)); }

std::vector<float> gaussian_row(int64_t n, uint32_t seed, float outlier = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = nd(rng);
  if (outlier != 0) w[static_cast<size_t>(n / 3)] = outlier;  // one large weight in one group
  return w;
}

// Squared error of a row stored with F16 scales/biases, as a reader dequantizes it.
double affine_error(const std::vector<float>& w, int bits, int g, const std::vector<uint32_t>& packed,
                    std::vector<float> s, std::vector<float> b) {
  for (auto& v : s) v = f16r(v);
  for (auto& v : b) v = f16r(v);
  std::vector<float> y(w.size());
  quant::affine_dequantize_row(packed.data(), s.data(), b.data(), static_cast<int64_t>(w.size()), bits, g, y.data());
  double e = 0;
  for (size_t i = 0; i < w.size(); ++i) e += (double(y[i]) - w[i]) * (double(y[i]) - w[i]);
  return e;
}

struct RowErrors {
  double mlx = 0, searched = 0;
};

RowErrors compare_affine(const std::vector<float>& w, int bits, int g) {
  const int64_t n = static_cast<int64_t>(w.size());
  std::vector<uint32_t> p1(quant::packed_words(n, bits)), p2(p1.size());
  std::vector<float> s1(n / g), b1(n / g), s2(n / g), b2(n / g);
  quant::affine_quantize_row(w.data(), n, bits, g, true, p1.data(), s1.data(), b1.data());
  quant::affine_quantize_row_search(w.data(), n, bits, g, quant::ScaleWeighting::None, p2.data(), s2.data(), b2.data());
  for (int64_t i = 0; i < n / g; ++i) {
    EXPECT_EQ(s2[i], f16r(s2[i])) << "searched scales are float16 values";
    EXPECT_EQ(b2[i], f16r(b2[i]));
  }
  return {affine_error(w, bits, g, p1, s1, b1), affine_error(w, bits, g, p2, s2, b2)};
}

// Per-tensor squared reconstruction error of every affine tensor of a bundle against the float source.
std::map<std::string, double> bundle_errors(const std::string& bundle, const TensorStore& src) {
  const TensorStore b = TensorStore::open(bundle);
  std::map<std::string, double> out;
  for (const auto& name : b.names()) {
    if (!name.ends_with(".scales")) continue;
    const std::string base = name.substr(0, name.size() - 7);
    const TensorView& wq = b.require(base + ".weight");
    const std::vector<float> sc = to_f32(b.require(name)), bi = to_f32(b.require(base + ".biases"));
    const int64_t groups = b.require(name).shape.back(), words = wq.shape.back();
    std::vector<float> source;
    const size_t sw = base.find("switch_mlp.");
    if (sw == std::string::npos) {
      source = to_f32(src.require(base + ".weight"));
    } else {  // stacked experts: gate/up = fc1 rows [0, I) / [I, 2I), down = fc2
      const std::string layer = base.substr(0, base.find(".experts."));
      const int64_t E = wq.shape[0];
      for (int64_t e = 0; e < E; ++e) {
        const std::string le = layer + ".experts.local_experts." + std::to_string(e);
        const std::string part = base.substr(sw + 11);
        std::vector<float> m = to_f32(src.require(le + (part == "down_proj" ? ".linear_fc2.weight" : ".linear_fc1.weight")));
        const size_t half = m.size() / 2;
        if (part == "gate_proj") m.resize(half);
        if (part == "up_proj") m.erase(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(half));
        source.insert(source.end(), m.begin(), m.end());
      }
    }
    // Group size and bits from the shapes: C = groups · G and words · 32 = C · bits.
    const int64_t rows = static_cast<int64_t>(sc.size()) / groups, C = static_cast<int64_t>(source.size()) / rows;
    const int G = static_cast<int>(C / groups), bits = static_cast<int>(words * 32 / C);
    std::vector<uint32_t> packed(static_cast<size_t>(words));
    std::vector<float> y(static_cast<size_t>(C));
    double e = 0;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(packed.data(), wq.data + static_cast<size_t>(r * words) * 4, static_cast<size_t>(words) * 4);
      quant::affine_dequantize_row(packed.data(), &sc[r * groups], &bi[r * groups], C, bits, G, y.data());
      for (int64_t i = 0; i < C; ++i) e += (double(y[i]) - source[r * C + i]) * (double(y[i]) - source[r * C + i]);
    }
    out[base] = e;
  }
  return out;
}

// The raw safetensors header (JSON with every name, dtype, shape and offset) of every shard.
std::string header_bytes(const std::string& dir) {
  std::string all;
  for (const auto& f : fs::directory_iterator(dir)) {
    if (f.path().extension() != ".safetensors") continue;
    const std::string bytes = test::read_file(f.path().string());
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    all += f.path().filename().string() + ":" + bytes.substr(0, 8 + n) + "\n";
  }
  return all;
}

}  // namespace

TEST(ScaleSearch, AffineNeverWorseThanMlxAndClearlyBetterAtFourBits) {
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int g : {32, 64, 128})
      for (float outlier : {0.0f, 0.2f}) {
        const auto w = gaussian_row(512, static_cast<uint32_t>(bits * 1000 + g + (outlier != 0)), outlier);
        const RowErrors e = compare_affine(w, bits, g);
        EXPECT_LE(e.searched, e.mlx) << bits << "-bit g" << g;
        if (bits <= 4) {
          EXPECT_LT(e.searched, 0.9 * e.mlx) << bits << "-bit g" << g << " outlier " << outlier;
        }
      }
  // A constant group (zero range, a float16 value) and an all-zero row stay exact.
  std::vector<float> flat(64, 0.015625f), zero(64, 0.0f);
  EXPECT_EQ(compare_affine(flat, 4, 32).searched, 0.0);
  EXPECT_EQ(compare_affine(zero, 4, 32).searched, 0.0);
  // Bad sizes are refused like MLX's recipe.
  std::vector<uint32_t> p(64);
  std::vector<float> s(8), b(8);
  EXPECT_THROW(quant::affine_quantize_row_search(flat.data(), 48, 4, 32, quant::ScaleWeighting::None, p.data(), s.data(), b.data()), Error);
  EXPECT_THROW(quant::affine_quantize_row_search(flat.data(), 64, 7, 32, quant::ScaleWeighting::None, p.data(), s.data(), b.data()), Error);
}

TEST(ScaleSearch, MagnitudeWeightingKeepsLargeWeightsCloser) {
  const auto w = gaussian_row(1024, 7, 0.15f);
  const int64_t n = 1024;
  std::vector<uint32_t> pn(quant::packed_words(n, 4)), pm(pn.size());
  std::vector<float> sn(32), bn(32), sm(32), bm(32), yn(n), ym(n);
  quant::affine_quantize_row_search(w.data(), n, 4, 32, quant::ScaleWeighting::None, pn.data(), sn.data(), bn.data());
  quant::affine_quantize_row_search(w.data(), n, 4, 32, quant::ScaleWeighting::Magnitude, pm.data(), sm.data(), bm.data());
  quant::affine_dequantize_row(pn.data(), sn.data(), bn.data(), n, 4, 32, yn.data());
  quant::affine_dequantize_row(pm.data(), sm.data(), bm.data(), n, 4, 32, ym.data());
  double big_n = 0, big_m = 0;  // error on the largest 10 % of the weights
  std::vector<float> mags(w.size());
  for (size_t i = 0; i < w.size(); ++i) mags[i] = std::fabs(w[i]);
  std::vector<float> sorted = mags;
  const float cut = percentile(sorted, 0.9);
  for (size_t i = 0; i < w.size(); ++i)
    if (mags[i] >= cut) big_n += std::pow(yn[i] - w[i], 2), big_m += std::pow(ym[i] - w[i], 2);
  EXPECT_LT(big_m, big_n);
}

TEST(ScaleSearch, MxtqNormNeverWorseThanJang) {
  for (int bits : {2, 3, 4}) {
    for (int64_t n : {128, 192, 256}) {
      const auto w = gaussian_row(n, static_cast<uint32_t>(bits * 7 + n));
      const auto signs = quant::mxtq_signs(n, 42);
      const auto cb = quant::mxtq_codebook(n, bits);
      std::vector<uint32_t> p1(quant::mxtq_words(n, bits)), p2(p1.size());
      float n1 = 0, n2 = 0;
      quant::mxtq_quantize_row(w.data(), n, bits, signs.data(), cb.data(), p1.data(), &n1);
      quant::mxtq_quantize_row_search(w.data(), n, bits, signs.data(), cb.data(), p2.data(), &n2);
      EXPECT_EQ(n2, f16r(n2));
      std::vector<float> y1(n), y2(n);
      quant::mxtq_dequantize_row(p1.data(), f16r(n1), n, bits, signs.data(), cb.data(), y1.data());
      quant::mxtq_dequantize_row(p2.data(), n2, n, bits, signs.data(), cb.data(), y2.data());
      double e1 = 0, e2 = 0;
      for (int64_t i = 0; i < n; ++i) e1 += std::pow(y1[i] - w[i], 2), e2 += std::pow(y2[i] - w[i], 2);
      EXPECT_LE(e2, e1 * (1 + 1e-5)) << bits << "-bit n=" << n;
      EXPECT_LT(e2, e1) << "the least-squares norm improves on ‖r‖ for " << bits << "-bit n=" << n;
    }
  }
}

// The searched bundle is the default bundle with other numbers: same files, same headers (names, dtypes, shapes,
// offsets), same index and config; it verifies, loads, and every affine tensor reconstructs the source better.
TEST(ScaleSearch, BundleHasTheDefaultLayoutAndLowerError) {
  test::TempDir tmp("scale_search");
  const TensorStore src = TensorStore::open(trained_small());
  for (Profile p : {Profile::Mxfp4, Profile::Jangtq4, Profile::Q8}) {
    ConvertOptions o;
    o.profile = p;
    const std::string def = tmp / cat(profile_name(p), "-default"), srch = tmp / cat(profile_name(p), "-search");
    convert_checkpoint(trained_small(), def, o);
    o.search_scales = true;
    convert_checkpoint(trained_small(), srch, o);
    EXPECT_EQ(header_bytes(def), header_bytes(srch)) << profile_name(p);
    std::vector<std::string> files;
    for (const auto& f : fs::directory_iterator(def)) files.push_back(f.path().filename().string());
    for (const auto& f : files) {
      ASSERT_TRUE(fs::exists(srch + "/" + f)) << f;
      EXPECT_EQ(fs::file_size(def + "/" + f), fs::file_size(srch + "/" + f)) << f;
      if (!f.ends_with(".safetensors") || f == "jangtq_runtime.safetensors") {
        EXPECT_TRUE(test::read_file(def + "/" + f) == test::read_file(srch + "/" + f)) << profile_name(p) << ": " << f;
      }
    }
    const VerifyReport vr = verify_bundle(srch);
    EXPECT_TRUE(vr.ok()) << verify_report_table(vr);
    EXPECT_NO_THROW(Model::load(srch, LoadOptions{.verbose = false}));
    const auto ed = bundle_errors(def, src), es = bundle_errors(srch, src);
    ASSERT_EQ(ed.size(), es.size());
    ASSERT_FALSE(ed.empty());
    double td = 0, ts = 0;
    for (const auto& [name, e] : ed) {
      EXPECT_LT(es.at(name), e) << profile_name(p) << ": " << name;
      td += e, ts += es.at(name);
    }
    std::printf("  %-8s affine reconstruction error: searched / default = %.3f\n", profile_name(p), ts / td);
    if (p == Profile::Mxfp4) {
      EXPECT_LT(ts, 0.8 * td);  // 4-bit: ~28 % lower
    }
  }
}

// What the option is for: lower KL divergence from the float model at the same size (docs/bundles.md has the table).
TEST(ScaleSearch, FourBitKldLowerThanMlxRecipe) {
  test::TempDir tmp("scale_search_kld");
  ConvertOptions o;
  o.profile = Profile::Mxfp4;
  convert_checkpoint(trained_small(), tmp / "default", o);
  o.search_scales = true;
  convert_checkpoint(trained_small(), tmp / "search", o);
  const auto ids = perplexity_tokens(Tokenizer::load(trained_small()), test::read_file(trained_small() + "/valid.txt"), "valid.txt");
  LoadOptions lo{.verbose = false};
  auto ref = Model::load(trained_small(), lo), def = Model::load(tmp / "default", lo), srch = Model::load(tmp / "search", lo);
  PerplexityOptions po;
  po.ctx = 256;
  const double kd = evaluate_perplexity(*def, ids, po, ref.get()).kld->mean;
  const double ks = evaluate_perplexity(*srch, ids, po, ref.get()).kld->mean;
  std::printf("  mean KLD on valid.txt: MLX recipe %.5f, searched %.5f (%.1f %% lower)\n", kd, ks, 100 * (1 - ks / kd));
  EXPECT_LT(ks, 0.85 * kd);
}

TEST(ScaleSearch, CliOption) {
  test::TempDir tmp("scale_search_cli");
  std::string out, err;
  const std::string cmd = test::cli_path() + " convert -q " + trained_small() + " " + (tmp / "b") + " -p q4";
  ASSERT_EQ(test::run_command(cmd + " --search-scales --search-weight magnitude", &out, &err), 0) << err;
  EXPECT_EQ(test::run_command(test::cli_path() + " verify " + (tmp / "b"), &out, &err), 0) << out;
  // The weighting alone means nothing.
  EXPECT_NE(test::run_command(cmd + " -f --search-weight magnitude", &out, &err), 0);
  EXPECT_NE(err.find("--search-scales"), std::string::npos) << err;
  EXPECT_NE(test::run_command(cmd + " -f --search-scales --search-weight loud", &out, &err), 0);
}
