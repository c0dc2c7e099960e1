#include "server/images.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>

#include "server/openai.h"
#include "zaya/chat.h"
#include "zaya/error.h"

namespace zaya::server {

namespace {

// Local image files larger than this are refused before reading (the decoder's own bound is 2 GiB).
constexpr uintmax_t kMaxImageFileBytes = uintmax_t{256} << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

[[noreturn]] void bad_url(const ImageRef& ref, const std::string& why) {
  throw ApiError(400, cat(ref.param, ": ", why), "invalid_image_url", ref.param);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// data:[<media type>][;<parameter>]*;base64,<payload>
std::string data_url_bytes(const ImageRef& ref) {
  const std::string_view url = ref.url;
  const size_t comma = url.find(',');
  if (comma == std::string_view::npos) bad_url(ref, "malformed data: URL (no ',' before the data)");
  std::vector<std::string> header;
  const std::string_view head = url.substr(5, comma - 5);
  for (size_t at = 0;;) {
    const size_t semi = head.find(';', at);
    header.push_back(lower(head.substr(at, semi == std::string_view::npos ? std::string_view::npos : semi - at)));
    if (semi == std::string_view::npos) break;
    at = semi + 1;
  }
  const std::string& type = header.front();
  if (type != "image/png" && type != "image/jpeg" && type != "image/jpg")
    bad_url(ref, cat("unsupported image type '", type, "' in the data: URL (image/png or image/jpeg)"));
  if (header.size() < 2 || header.back() != "base64")
    bad_url(ref, "the data: URL must be base64-encoded (data:image/png;base64,…)");
  const std::optional<std::string> bytes = base64_decode(url.substr(comma + 1));
  if (!bytes) bad_url(ref, "the data: URL's payload is not valid base64");
  if (bytes->empty()) bad_url(ref, "the data: URL holds no image data");
  return *bytes;
}

// file:///absolute/path or file://localhost/absolute/path, percent-escapes decoded.
std::string file_url_bytes(const ImageRef& ref) {
  std::string_view rest = std::string_view(ref.url).substr(7);
  if (starts_with_ci(rest, "localhost/")) rest.remove_prefix(9);
  if (rest.empty() || rest.front() != '/')
    bad_url(ref, "a file:// URL must name an absolute path on the server (file:///path/to/image.png)");
  std::string path;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] != '%') {
      path += rest[i];
      continue;
    }
    const int hi = i + 2 < rest.size() ? hex_value(rest[i + 1]) : -1, lo = hi >= 0 ? hex_value(rest[i + 2]) : -1;
    if (lo < 0 || (hi == 0 && lo == 0)) bad_url(ref, "invalid percent-escape in the file:// URL");
    path += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) bad_url(ref, cat(path, ": no such image file"));
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) bad_url(ref, cat(path, ": cannot read image file"));
  if (size > kMaxImageFileBytes)
    bad_url(ref, cat(path, ": image file of ", size, " bytes is too large (limit ", kMaxImageFileBytes, ")"));
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (!in || !in.read(bytes.data(), static_cast<std::streamsize>(size)))
    bad_url(ref, cat(path, ": cannot read image file"));
  return bytes;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t n = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      int v = 0;
      if (c == '=') {
        if (i + 4 != text.size() || k < 2) return std::nullopt;  // padding only ends the last group
        ++pad;
      } else if (pad > 0 || (v = value(c)) < 0) {
        return std::nullopt;
      }
      n = (n << 6) | static_cast<uint32_t>(v);
    }
    if ((pad == 1 && (n & 0xFF)) || (pad == 2 && (n & 0xFFFF))) return std::nullopt;  // non-zero pad bits
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

std::string image_bytes(const ImageRef& ref, bool allow_local_files) {
  if (starts_with_ci(ref.url, "data:")) return data_url_bytes(ref);
  if (starts_with_ci(ref.url, "file://")) {
    if (!allow_local_files)
      bad_url(ref, "file:// image URLs are refused; start the server with --allow-local-files to read images "
                   "from its disk, or send the image as a data: URL");
    return file_url_bytes(ref);
  }
  if (starts_with_ci(ref.url, "http://") || starts_with_ci(ref.url, "https://"))
    bad_url(ref, "remote image URLs are not fetched; send the image as a data:image/png;base64,… URL");
  const std::string shown = ref.url.size() > 40 ? ref.url.substr(0, 40) + "…" : ref.url;
  bad_url(ref, cat("unsupported image URL '", shown,
                   "' (expected data:image/png;base64,… or data:image/jpeg;base64,…)"));
}

void require_vision(const ServerContext& ctx, const std::vector<ImageRef>& images) {
  if (!images.empty() && !ctx.vision)
    throw ApiError(400, cat(images.front().param, ": this model takes no images (it is not a ZAYA1-VL model)"),
                   "unsupported_content_type", images.front().param);
}

ImagePrompt image_prompt(ServerContext& ctx, const std::string& rendered, const std::vector<ImageRef>& images) {
  require_vision(ctx, images);
  constexpr int32_t kPlace = -1;
  size_t markers = 0;
  const std::vector<int32_t> ids = tokenize_with_image_markers(ctx.tok, rendered, kPlace, &markers);
  if (markers != images.size())
    throw ApiError(400, cat("the rendered prompt has ", markers, " image place(s) for ", images.size(),
                            " image(s): message text must not contain ", kImageMarker, ", and the chat template ",
                            "must keep every message that holds an image"), "invalid_messages", "messages");
  std::vector<std::string> blobs, names;
  for (const ImageRef& ref : images) {
    blobs.push_back(image_bytes(ref, ctx.opt.allow_local_files));
    names.push_back(ref.param);
  }
  ImageFeatures features;
  {
    std::lock_guard<std::mutex> lk(ctx.vision_mu);
    try {
      features = ctx.vision->encode_bytes(blobs, names);
    } catch (const Error& e) {
      throw ApiError(400, e.what(), "invalid_image", "messages");
    }
  }
  const double seconds = features.preprocess_seconds + features.encode_seconds;
  ctx.metrics.images(images.size(), seconds);
  const ModelConfig& cfg = ctx.model->config();
  ImagePrompt out;
  out.prompt = attach_images(cfg, expand_image_tokens(cfg, ids, kPlace, features), features);
  out.vision_ms = seconds * 1000.0;
  return out;
}

}  // namespace zaya::server
