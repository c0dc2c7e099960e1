// Prompts with images for the ZAYA1-VL decoder (VL spec §3 prompt expansion, §5 the scatter of features).
#include <cstring>

#include "zaya/error.h"
#include "zaya/vision.h"

namespace zaya {

MultimodalPrompt attach_images(const ModelConfig& cfg, std::vector<int32_t> ids, const ImageFeatures& images) {
  if (!cfg.vl.enabled) throw Error("this model takes no images (model_type is not zaya1_vl)");
  const int64_t H = cfg.hidden;
  if (!images.tokens.empty() && images.hidden != H)
    throw Error(cat("the vision features are ", images.hidden, " wide but the decoder's hidden size is ", H));
  const auto image_id = static_cast<int32_t>(cfg.vl.image_token_id);
  int64_t n_image_tokens = 0;
  for (int32_t id : ids) n_image_tokens += id == image_id;
  if (n_image_tokens != images.total_tokens())
    throw Error(cat("the prompt has ", n_image_tokens, " image tokens (id ", image_id, ") but its ",
                    images.tokens.size(), " image(s) give ", images.total_tokens(), " features"));
  MultimodalPrompt p;
  p.embeddings.assign(ids.size() * static_cast<size_t>(H), 0.0f);
  p.flags.assign(ids.size(), 0);
  p.key = ids;
  size_t row = 0, image = 0;
  int64_t left_in_image = images.tokens.empty() ? 0 : images.tokens[0];
  for (size_t t = 0; t < ids.size(); ++t) {
    if (ids[t] != image_id) continue;
    while (left_in_image == 0) left_in_image = images.tokens[++image];
    std::memcpy(&p.embeddings[t * H], &images.rows[row * H], static_cast<size_t>(H) * sizeof(float));
    p.flags[t] = 1;
    // The cache key: a negative id per image (never a vocabulary id), so equal ids with other pixels never match.
    p.key[t] = -1 - static_cast<int32_t>(images.fingerprints[image] & 0x3FFFFFFF);
    ++row;
    --left_in_image;
  }
  p.ids = std::move(ids);
  return p;
}

std::vector<int32_t> expand_image_tokens(const ModelConfig& cfg, std::span<const int32_t> ids, int32_t placeholder,
                                         const ImageFeatures& images) {
  std::vector<int32_t> out;
  size_t image = 0;
  for (int32_t id : ids) {
    if (id != placeholder) {
      out.push_back(id);
      continue;
    }
    if (image >= images.tokens.size())
      throw Error(cat("the prompt has more image places than the ", images.tokens.size(), " image(s) given"));
    if (cfg.vl.start_token_id >= 0) out.push_back(static_cast<int32_t>(cfg.vl.start_token_id));
    out.insert(out.end(), static_cast<size_t>(images.tokens[image]), static_cast<int32_t>(cfg.vl.image_token_id));
    if (cfg.vl.end_token_id >= 0) out.push_back(static_cast<int32_t>(cfg.vl.end_token_id));
    ++image;
  }
  if (image != images.tokens.size())
    throw Error(cat(images.tokens.size(), " image(s) given but the prompt has ", image, " place(s) for images"));
  return out;
}

}  // namespace zaya
