#pragma once
// Images in chat requests (ZAYA1-VL): the URLs of image_url parts → image bytes (data: URLs; file:// when the
// server allows local files) → the vision encoder → the prompt's ids with each image's start/image/end tokens, the
// feature rows, the image flags and the cache key. The prompt is built as `zaya run --image` builds it, so the same
// image and text give the same tokens.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/context.h"
#include "server/request.h"
#include "zaya/vision.h"

namespace zaya::server {

// Strict base64 (RFC 4648 §4: the standard alphabet, padded to a multiple of 4, no whitespace, zero pad bits);
// nullopt when the text is not exactly that.
std::optional<std::string> base64_decode(std::string_view text);

// The bytes an image URL names. Throws ApiError (400, code invalid_image_url) naming the problem: a malformed or
// non-PNG/JPEG data: URL, a file:// URL when local files are not allowed or the file cannot be read, a remote URL.
std::string image_bytes(const ImageRef& ref, bool allow_local_files);

// Refuses images for a model without a vision encoder (400, unsupported_content_type).
void require_vision(const ServerContext& ctx, const std::vector<ImageRef>& images);

struct ImagePrompt {
  MultimodalPrompt prompt;
  double vision_ms = 0;  // decoding + preprocessing + vision encoder
};

// `rendered`: the chat template's output, each image a kImageMarker. Throws ApiError for bad URLs and images (400,
// invalid_image) and for a prompt whose markers do not match the images.
ImagePrompt image_prompt(ServerContext& ctx, const std::string& rendered, const std::vector<ImageRef>& images);

}  // namespace zaya::server
