#include "io/image.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <fstream>
#include <memory>

#include "zaya/error.h"

// stb_image is third-party C code: its implementation lives in this file only, static (no symbol clashes with
// libstb.a or another copy), PNG and JPEG only, no stdio (we read files ourselves), and its warnings silenced here.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace zaya {

namespace {

enum class Format { Png, Jpeg };

Format sniff(std::span<const uint8_t> b, const std::string& source) {
  static constexpr uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 8 && std::memcmp(b.data(), kPng, 8) == 0) return Format::Png;
  if (b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return Format::Jpeg;
  throw Error(cat(source, ": not a PNG or JPEG image (", b.size(), " bytes, unrecognised signature)"));
}

// stb fills missing JPEG data with zeros and "succeeds"; Pillow refuses a truncated file. Entropy-coded data
// cannot contain FF D9 (0xFF is byte-stuffed), so a complete file has an end-of-image marker after its last
// start-of-scan. (An EXIF thumbnail's markers come earlier, inside APP1, and do not satisfy this by themselves.)
bool jpeg_complete(std::span<const uint8_t> b) {
  size_t last_sos = 0, last_eoi = 0;
  bool sos = false, eoi = false;
  for (size_t i = 0; i + 1 < b.size(); ++i) {
    if (b[i] != 0xff) continue;
    if (b[i + 1] == 0xda) sos = true, last_sos = i;
    if (b[i + 1] == 0xd9) eoi = true, last_eoi = i;
  }
  return sos && eoi && last_eoi > last_sos;
}

int64_t be32(const uint8_t* p) {
  return (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | int64_t{p[3]};
}

struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown reason";
}

}  // namespace

RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& source) {
  if (bytes.empty()) throw Error(cat(source, ": empty image data"));
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    throw Error(cat(source, ": image data of ", bytes.size(), " bytes is too large (limit 2 GiB)"));
  const Format fmt = sniff(bytes, source);
  const char* name = fmt == Format::Png ? "PNG" : "JPEG";
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());

  // Header first: reject bad and oversized images before allocating for pixels.
  const auto check_size = [&](int64_t w, int64_t h) {
    if (w <= 0 || h <= 0) throw Error(cat(source, ": ", name, " has zero size (", w, "x", h, ")"));
    if (w > kMaxImageSide || h > kMaxImageSide || w * h > kMaxImagePixels)
      throw Error(cat(source, ": ", name, " is ", w, "x", h, " (WxH), beyond the limit of ", kMaxImageSide,
                      " per side and ", kMaxImagePixels, " pixels"));
  };
  // A PNG's size is at a fixed place in IHDR; read it ourselves because stb's own "too large" verdict is
  // overwritten by its JPEG probe ("unknown image type").
  if (fmt == Format::Png && bytes.size() >= 24 && std::memcmp(&bytes[12], "IHDR", 4) == 0)
    check_size(be32(&bytes[16]), be32(&bytes[20]));
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    throw Error(cat(source, ": invalid or truncated ", name, " header (", stb_reason(), ")"));
  check_size(w, h);
  if (fmt == Format::Jpeg && !jpeg_complete(bytes))
    throw Error(cat(source, ": truncated JPEG (no end-of-image marker after the last scan)"));

  RgbImage img;
  img.height = h;
  img.width = w;
  img.pixels.resize(static_cast<size_t>(w) * h * 3);
  int dw = 0, dh = 0, dc = 0;
  if (fmt == Format::Png && comp == 1 && stbi_is_16_bit_from_memory(data, len)) {
    // 16-bit grey: Pillow clamps to 255 instead of scaling (see image.h).
    std::unique_ptr<stbi_us, StbFree> grey(stbi_load_16_from_memory(data, len, &dw, &dh, &dc, 1));
    if (!grey || dw != w || dh != h) throw Error(cat(source, ": corrupt or truncated PNG (", stb_reason(), ")"));
    for (size_t i = 0, n = static_cast<size_t>(w) * h; i < n; ++i)
      std::memset(&img.pixels[i * 3], std::min<int>(grey.get()[i], 255), 3);
    return img;
  }
  std::unique_ptr<stbi_uc, StbFree> rgb(stbi_load_from_memory(data, len, &dw, &dh, &dc, 3));
  if (!rgb || dw != w || dh != h) throw Error(cat(source, ": corrupt or truncated ", name, " (", stb_reason(), ")"));
  std::memcpy(img.pixels.data(), rgb.get(), img.pixels.size());
  return img;
}

RgbImage read_image(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(cat(path, ": cannot open image file"));
  const std::streamoff size = f.tellg();
  if (size < 0) throw Error(cat(path, ": cannot read image file"));
  if (size > INT_MAX) throw Error(cat(path, ": image file of ", size, " bytes is too large (limit 2 GiB)"));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(bytes.data()), size)) throw Error(cat(path, ": cannot read image file"));
  return decode_image(bytes, path);
}

}  // namespace zaya
