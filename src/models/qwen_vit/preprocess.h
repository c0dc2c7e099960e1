#pragma once
// Image preprocessing of the ZAYA1-VL vision tower (spec §3: Qwen2VLImageProcessor, slow/PIL path): RGB image →
// smart_resize → Pillow-exact bicubic resize → rescale + normalise → patches in merge-block-major order.
// The slow PIL processor is the reference (P2): the "fast" torchvision one resizes differently by a few levels.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "io/image.h"
#include "models/qwen_vit/patches.h"

namespace zaya::vit {

// preprocessor_config.json. Every numeric value is required (the HF class defaults, e.g. temporal_patch_size 2,
// are wrong for this model, so a missing key is an error rather than a guess).
struct PreprocessorConfig {
  int64_t min_pixels = 0, max_pixels = 0;  // or size.shortest_edge / size.longest_edge
  int64_t patch_size = 0, merge_size = 0, temporal_patch_size = 0;
  std::array<double, 3> image_mean{}, image_std{};
  double rescale_factor = 0;
  bool do_rescale = true, do_normalize = true;  // honoured; do_resize must be true; do_convert_rgb is implied
  int64_t factor() const { return patch_size * merge_size; }  // smart_resize grid step (28)
};

// Parses and validates; `source` names the file in errors. resample must be 3 (BICUBIC).
PreprocessorConfig parse_preprocessor_config(const std::string& json_text,
                                             const std::string& source = "preprocessor_config.json");
PreprocessorConfig load_preprocessor_config(const std::string& path);

// Target (height, width), multiples of `factor` (spec §3.2): float64 math, Python round-half-even (P17), the
// max-pixels branch floors, the min-pixels branch ceils. Throws for a zero size or an aspect ratio above 200.
std::pair<int64_t, int64_t> smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                                         int64_t max_pixels);

// Pillow's Image.resize(BICUBIC) of an 8-bit RGB image, bit-exact: separable (horizontal pass then vertical),
// a = -0.5, support widened by the downscale factor, 22-bit fixed-point taps, uint8 rounding + clamping after
// each pass; a pass whose size is unchanged is skipped.
RgbImage resize_bicubic(const RgbImage& in, int64_t out_height, int64_t out_width);

// Appends one already-resized image (sides multiples of patch·merge): rescale, normalise, patchify (§3.4–3.6).
void append_patches(const RgbImage& resized, const PreprocessorConfig& cfg, ImagePatches& out);

// The whole of §3 for several images: rows concatenated, one PatchGrid each.
ImagePatches preprocess_images(std::span<const RgbImage> images, const PreprocessorConfig& cfg);

}  // namespace zaya::vit
