#include "models/qwen_vit/vision_layout.h"

#include <algorithm>
#include <cmath>

#include "zaya/error.h"

namespace zaya::vit {

namespace {

// Far above a max_pixels image (16384 patches) yet small enough that no size product below can overflow.
constexpr int64_t kMaxGridSide = 1 << 14, kMaxFrames = 1 << 10, kMaxPatches = int64_t{1} << 22;

}  // namespace

VisionLayout VisionLayout::plan(const VisionConfig& cfg, const std::vector<PatchGrid>& grids) {
  const int64_t m = cfg.merge, mm = cfg.merge_rows(), ws = cfg.window_units(), quarter = cfg.head_dim() / 4;
  VisionLayout L;
  if (grids.empty()) throw Error("vision tower: no images");
  for (size_t i = 0; i < grids.size(); ++i) {
    const PatchGrid& g = grids[i];
    if (g.t < 1 || g.t > kMaxFrames || g.h < 1 || g.h > kMaxGridSide || g.w < 1 || g.w > kMaxGridSide)
      throw Error(cat("vision tower: image ", i, " has grid (t, h, w) = (", g.t, ", ", g.h, ", ", g.w,
                      "), outside 1..", kMaxFrames, " frames and 1..", kMaxGridSide, " patches per side"));
    if (g.h % m != 0 || g.w % m != 0)
      throw Error(cat("vision tower: image ", i, " has a ", g.h, "×", g.w, " patch grid, not divisible by the merge size ", m));
    L.patches += g.patches();
    if (L.patches > kMaxPatches)
      throw Error(cat("vision tower: the images hold more than ", kMaxPatches, " patches"));
  }
  L.units = L.patches / mm;

  // inv_freq[k] = θ^(-2k/(dh/2)) in fp32, as the reference's VisionRotaryEmbedding(dh/2) computes it.
  std::vector<float> inv_freq(static_cast<size_t>(quarter));
  for (int64_t k = 0; k < quarter; ++k)
    inv_freq[k] = 1.0f / std::pow(cfg.rope_theta, static_cast<float>(2 * k) / static_cast<float>(2 * quarter));

  L.pos_hw.reserve(static_cast<size_t>(2 * L.patches));
  L.angles.reserve(static_cast<size_t>(L.patches * 2 * quarter));
  L.window_index.reserve(static_cast<size_t>(L.units));
  L.cu_window_seqlens.push_back(0);
  int64_t unit0 = 0, row0 = 0;
  for (const PatchGrid& g : grids) {
    const int64_t Hm = g.h / m, Wm = g.w / m;
    // Processor order: frame, merged row, merged column, then the m×m patches of the unit row-major.
    for (int64_t t = 0; t < g.t; ++t)
      for (int64_t bh = 0; bh < Hm; ++bh)
        for (int64_t bw = 0; bw < Wm; ++bw)
          for (int64_t mh = 0; mh < m; ++mh)
            for (int64_t mw = 0; mw < m; ++mw) {
              const int64_t hp = bh * m + mh, wp = bw * m + mw;
              L.pos_hw.push_back(hp);
              L.pos_hw.push_back(wp);
              for (int64_t k = 0; k < quarter; ++k) L.angles.push_back(static_cast<float>(hp) * inv_freq[k]);
              for (int64_t k = 0; k < quarter; ++k) L.angles.push_back(static_cast<float>(wp) * inv_freq[k]);
            }
    // Windows of ws×ws units, row-major per frame. The reference pads by ws − H' % ws, a whole empty row/column
    // of windows when H' is already a multiple (spec P14); those windows are empty and dropped, as here.
    const int64_t nwh = Hm / ws + 1, nww = Wm / ws + 1;
    for (int64_t t = 0; t < g.t; ++t) {
      const int64_t frame_begin = row0 + t * g.h * g.w;
      L.frames.push_back({frame_begin, frame_begin + g.h * g.w});
      for (int64_t wh = 0; wh < nwh; ++wh)
        for (int64_t ww = 0; ww < nww; ++ww) {
          const size_t before = L.window_index.size();
          for (int64_t r = wh * ws; r < std::min(Hm, (wh + 1) * ws); ++r)
            for (int64_t c = ww * ws; c < std::min(Wm, (ww + 1) * ws); ++c)
              L.window_index.push_back(unit0 + (t * Hm + r) * Wm + c);
          const int64_t n = static_cast<int64_t>(L.window_index.size() - before);
          if (n == 0) continue;
          const int64_t begin = L.cu_window_seqlens.back();
          L.windows.push_back({begin, begin + n * mm});
          L.cu_window_seqlens.push_back(static_cast<int32_t>(begin + n * mm));
        }
    }
    unit0 += g.patches() / mm;
    row0 += g.patches();
  }
  return L;
}

}  // namespace zaya::vit
