#pragma once
// Image decoding: PNG and JPEG (file or bytes in memory) to 8-bit RGB, converted the way Pillow's
// `Image.open(...).convert("RGB")` does, since that is what the ZAYA1-VL reference processor sees (spec §3.1):
//   * grey → replicated to R=G=B; grey+alpha and RGBA → alpha dropped (not composited); palette → its RGB entries
//     (a tRNS chunk is ignored likewise);
//   * 16-bit RGB / RGBA / grey+alpha → the high byte of each sample (Pillow reads them as "RGB;16B"/"RGBA;16B"/
//     "LA;16B"), as stb_image does too;
//   * 16-bit grey (no alpha) → min(v, 255): Pillow opens it as an integer mode ("I"/"I;16") whose RGB conversion
//     clamps rather than scales, so such images come out almost white. stb alone would give v >> 8; we follow
//     Pillow for parity with the reference;
//   * EXIF orientation is NOT applied (convert("RGB") does not either);
//   * JPEG: stb_image's IDCT and chroma upsampling are not libjpeg-turbo's, so pixels may differ from Pillow by a
//     few levels (PNG is exact). CMYK/YCCK JPEGs are converted by stb's rule, not Pillow's;
//   * stb does not verify PNG chunk CRCs (Pillow checks those of the header chunks), so a PNG with a bad CRC
//     but intact data decodes here where Pillow would refuse it.
// Everything bad (not a PNG/JPEG, truncated, zero-sized, too large) is a zaya::Error naming the source.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace zaya {

// Bounds checked from the header, before any pixel is decoded, so a hostile header cannot make us allocate
// gigabytes: each side at most kMaxImageSide, width·height at most kMaxImagePixels (768 MiB of RGB).
inline constexpr int64_t kMaxImageSide = 16384;
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

struct RgbImage {
  int64_t height = 0, width = 0;
  std::vector<uint8_t> pixels;  // [height, width, 3], row-major, channels R, G, B

  uint8_t at(int64_t y, int64_t x, int c) const { return pixels[static_cast<size_t>((y * width + x) * 3 + c)]; }
};

// `source` names the bytes in error messages (a file name, "request image 2", …).
RgbImage decode_image(std::span<const uint8_t> bytes, const std::string& source = "image");
RgbImage read_image(const std::string& path);

}  // namespace zaya
