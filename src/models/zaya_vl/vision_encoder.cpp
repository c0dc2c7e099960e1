// The public vision encoder (include/zaya/vision.h): decode → Qwen2-VL preprocessing → the Qwen2.5-VL tower.
#include <chrono>

#include "io/image.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "models/qwen_vit/preprocess.h"
#include "models/qwen_vit/vision_activations.h"
#include "models/qwen_vit/vision_config.h"
#include "models/qwen_vit/vision_layout.h"
#include "models/qwen_vit/vision_tower.h"
#include "models/qwen_vit/vision_weights.h"
#include "zaya/error.h"
#include "zaya/vision.h"

namespace zaya {

namespace {

// FNV-1a over the pixels and their size: cheap, and a collision only costs a wrong prompt-cache hit between two
// images of identical size whose 64-bit hashes agree.
uint64_t fingerprint(const RgbImage& im) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xFF)) * 1099511628211ull;
  };
  mix(static_cast<uint64_t>(im.height));
  mix(static_cast<uint64_t>(im.width));
  for (uint8_t b : im.pixels) h = (h ^ b) * 1099511628211ull;
  return h;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int64_t ImageFeatures::total_tokens() const {
  int64_t n = 0;
  for (int64_t t : tokens) n += t;
  return n;
}

struct VisionEncoder::Impl {
  vit::VisionConfig cfg;
  vit::PreprocessorConfig pre;
  std::unique_ptr<TensorStore> store;
  vit::VisionWeights weights;
  Compute compute;
  mutable vit::VisionActivations act;  // reused across calls (one encode at a time per encoder)

  ImageFeatures run(const std::vector<RgbImage>& images, double decode_s) const {
    ImageFeatures f;
    if (images.empty()) return f;
    const auto t0 = std::chrono::steady_clock::now();
    vit::ImagePatches patches = vit::preprocess_images(images, pre);
    f.preprocess_seconds = decode_s + seconds_since(t0);
    for (const RgbImage& im : images) f.fingerprints.push_back(fingerprint(im));
    for (const vit::PatchGrid& g : patches.grids) f.tokens.push_back(vit::ImagePatches::tokens(g, cfg.merge));
    f.patches = static_cast<size_t>(patches.rows);
    const auto t1 = std::chrono::steady_clock::now();
    vit::encode(cfg, weights, patches, act, f.rows, compute);
    f.encode_seconds = seconds_since(t1);
    f.encode_flops = vit::encode_flops(cfg, vit::VisionLayout::plan(cfg, patches.grids));
    f.hidden = cfg.out_hidden;
    return f;
  }
};

VisionEncoder::VisionEncoder() : impl_(std::make_unique<Impl>()) {}
VisionEncoder::~VisionEncoder() = default;

std::unique_ptr<VisionEncoder> VisionEncoder::load(const std::string& dir, const LoadOptions& opts) {
  std::unique_ptr<VisionEncoder> v(new VisionEncoder());
  Impl& m = *v->impl_;
  m.cfg = vit::VisionConfig::load(dir);
  m.pre = vit::load_preprocessor_config(dir);
  if (m.pre.patch_size != m.cfg.patch || m.pre.merge_size != m.cfg.merge ||
      m.pre.temporal_patch_size != m.cfg.temporal_patch)
    throw Error(cat(dir, ": preprocessor_config.json (patch ", m.pre.patch_size, ", merge ", m.pre.merge_size,
                    ", temporal ", m.pre.temporal_patch_size, ") disagrees with config.json's vision_config (patch ",
                    m.cfg.patch, ", merge ", m.cfg.merge, ", temporal ", m.cfg.temporal_patch,
                    ")"));
  // Mapped, never copied: the tower shares the files with the decoder (which may hold its own copy), and its
  // products are compute-bound.
  m.store = std::make_unique<TensorStore>(TensorStore::open(dir, FileAccess::Populate));
  m.weights = vit::VisionWeights::load(*m.store, m.cfg);
  m.compute = Compute(nullptr, opts.exact ? Precision::Exact : opts.int8 ? Precision::Int8 : Precision::Fast);
  return v;
}

ImageFeatures VisionEncoder::encode_files(const std::vector<std::string>& paths) const {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<RgbImage> images;
  for (const std::string& p : paths) images.push_back(read_image(p));
  return impl_->run(images, seconds_since(t0));
}

ImageFeatures VisionEncoder::encode_bytes(const std::vector<std::string>& blobs,
                                          const std::vector<std::string>& names) const {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<RgbImage> images;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const auto* p = reinterpret_cast<const uint8_t*>(blobs[i].data());
    images.push_back(decode_image(std::span(p, blobs[i].size()), i < names.size() ? names[i] : cat("image ", i + 1)));
  }
  return impl_->run(images, seconds_since(t0));
}

ImageFeatures VisionEncoder::encode_rgb(std::span<const uint8_t> rgb, int64_t height, int64_t width) const {
  if (height <= 0 || width <= 0 || height * width > kMaxImagePixels ||
      rgb.size() != static_cast<size_t>(height * width * 3))
    throw Error(cat("encode_rgb: ", rgb.size(), " bytes are not a ", width, "x", height, " RGB image (or it is too large)"));
  RgbImage im;
  im.height = height;
  im.width = width;
  im.pixels.assign(rgb.begin(), rgb.end());
  return impl_->run({im}, 0.0);
}

int64_t VisionEncoder::hidden() const { return impl_->cfg.out_hidden; }
int64_t VisionEncoder::parameters() const { return impl_->cfg.parameter_count(); }

double VisionEncoder::flops(int64_t patches, int64_t patches_per_image) const {
  // A square-ish grid per image with the given patch count stands in for the real layout.
  const int64_t m = impl_->cfg.merge;
  int64_t side = 1;
  while ((side + 1) * (side + 1) * m * m <= patches_per_image) ++side;
  const int64_t images = std::max<int64_t>(1, patches / std::max<int64_t>(1, side * side * m * m));
  std::vector<vit::PatchGrid> grids(static_cast<size_t>(images), vit::PatchGrid{1, side * m, side * m});
  return vit::encode_flops(impl_->cfg, vit::VisionLayout::plan(impl_->cfg, grids));
}

}  // namespace zaya
