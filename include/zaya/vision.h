#pragma once
// Images for ZAYA1-VL: the vision encoder (Qwen2.5-VL ViT + its preprocessing, from the model folder) and the
// decoder input of a prompt that holds images (VL spec §3, §5).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zaya/config.h"
#include "zaya/model.h"

namespace zaya {

// Vision features of one or more images, in prompt order.
struct ImageFeatures {
  std::vector<float> rows;               // [Σ tokens, hidden]
  int64_t hidden = 0;
  std::vector<int64_t> tokens;           // image tokens (feature rows) of each image
  std::vector<uint64_t> fingerprints;    // of each image's pixels: what tells prompts with different images apart
  size_t patches = 0;
  double preprocess_seconds = 0, encode_seconds = 0;
  double encode_flops = 0;               // multiply-adds ×2 of the tower for these images' patch grids
  int64_t total_tokens() const;
};

class VisionEncoder {
 public:
  // Loads the vision tower of a ZAYA1-VL folder: config.json (vision_config), preprocessor_config.json and the
  // vision_tower.* tensors. Throws zaya::Error when the folder has no vision model.
  static std::unique_ptr<VisionEncoder> load(const std::string& dir, const LoadOptions& opts = {});
  ~VisionEncoder();

  // PNG or JPEG files, or their bytes; throws zaya::Error naming the bad image.
  ImageFeatures encode_files(const std::vector<std::string>& paths) const;
  ImageFeatures encode_bytes(const std::vector<std::string>& blobs, const std::vector<std::string>& names = {}) const;
  // One decoded image: `rgb` is [height, width, 3] row-major 8-bit RGB (for benchmarks and programs that decode
  // themselves). Throws zaya::Error on a size mismatch or an unsupported size.
  ImageFeatures encode_rgb(std::span<const uint8_t> rgb, int64_t height, int64_t width) const;

  int64_t hidden() const;
  int64_t parameters() const;
  // Multiply-adds ×2 of encoding `patches` patches in images of `patches_per_image` (for speed reports).
  double flops(int64_t patches, int64_t patches_per_image) const;

 private:
  VisionEncoder();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A prompt with its images attached: the ids, the embedding rows replacing the lookup at image tokens (feature rows,
// zeros elsewhere), the image flags, and the cache key — the ids with each image token replaced by a negative
// number derived from its image's fingerprint, so that a cached prefix is reused only for the same images.
struct MultimodalPrompt {
  std::vector<int32_t> ids;
  std::vector<float> embeddings;  // [ids.size(), hidden]
  std::vector<uint8_t> flags;
  std::vector<int32_t> key;
};

// `ids` must already hold every image's tokens (image_token_id repeated once per feature row, image by image):
// checks the count against the features and attaches them. Throws zaya::Error on a mismatch.
MultimodalPrompt attach_images(const ModelConfig& cfg, std::vector<int32_t> ids, const ImageFeatures& images);

// Replaces each occurrence of `placeholder` in `ids` (one per image, in order) by
// [vision_start_token_id] + image_token_id × N + [vision_end_token_id], N = that image's feature rows (start/end
// only where the config defines them). Throws zaya::Error when the placeholder count differs from the images.
std::vector<int32_t> expand_image_tokens(const ModelConfig& cfg, std::span<const int32_t> ids, int32_t placeholder,
                                         const ImageFeatures& images);

}  // namespace zaya
