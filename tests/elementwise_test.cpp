// Element-wise kernels of the forward pass against their scalar twins, on several thread counts and ragged sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <random>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/kernels_testing.h"
#include "util/thread_pool.h"

namespace zaya {
namespace {

std::vector<float> randv(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs fn under pools of 1, 2 and 3 threads (the pool the kernels use is the default one).
template <class Fn>
void for_thread_counts(Fn fn) {
  for (size_t threads : {1, 2, 3}) {
    set_num_threads(threads);
    SCOPED_TRACE(testing::Message() << threads << " threads");
    fn();
  }
  set_num_threads(0);
}

TEST(Elementwise, ResidualMergeMatchesTwin) {
  std::mt19937 rng(1);
  for_thread_counts([&] {
    for (size_t n : {1, 3, 67})
      for (size_t H : {5, 64, 1000}) {
        auto m = randv(n * H, rng), r0 = randv(n * H, rng), hs = randv(H, rng), hb = randv(H, rng),
             rs = randv(H, rng), rb = randv(H, rng);
        for (bool first : {true, false}) {
          auto r = r0, rr = r0;
          residual_merge(m.data(), r.data(), hs.data(), hb.data(), first ? nullptr : rs.data(), rb.data(), n, H);
          residual_merge_ref(m.data(), rr.data(), hs.data(), hb.data(), first ? nullptr : rs.data(), rb.data(), n, H);
          EXPECT_TRUE(same_bits(r, rr)) << n << "x" << H << (first ? " first" : "");
        }
      }
  });
}

TEST(Elementwise, BiasGeluAndEdaMatchTwins) {
  std::mt19937 rng(2);
  for_thread_counts([&] {
    for (size_t n : {1, 9, 130})
      for (size_t d : {3, 256}) {
        auto a = randv(n * d, rng, 3.0f), b = randv(d, rng);
        auto a2 = a;
        bias_gelu(a.data(), b.data(), n, d);
        bias_gelu_ref(a2.data(), b.data(), n, d);
        EXPECT_TRUE(same_bits(a, a2));
        for (bool with_scale : {false, true}) {
          auto h = randv(n * d, rng), rho = randv(n * d, rng), s = randv(d, rng);
          auto h2 = h, rho2 = rho;
          eda_mix(h.data(), b.data(), with_scale ? s.data() : nullptr, rho.data(), n, d);
          eda_mix_ref(h2.data(), b.data(), with_scale ? s.data() : nullptr, rho2.data(), n, d);
          EXPECT_TRUE(same_bits(h, h2));
          EXPECT_TRUE(same_bits(rho, rho2));
          EXPECT_TRUE(same_bits(h, rho));
        }
      }
  });
}

// q/k coupling uses the SIMD dot for its norms: against the float64 twin to rounding, on every SIMD target, and
// bitwise the same for any thread count.
TEST(Elementwise, QkCouplingMatchesTwin) {
  std::mt19937 rng(3);
  for (int64_t target : kernels_testing::available_targets()) {
    kernels_testing::force_target(target);
    for (auto [nq_, nk_, dh_] : {std::tuple<size_t, size_t, size_t>{8, 2, 16}, {4, 4, 7}, {6, 3, 128}}) {
      const size_t nq = nq_, nk = nk_, dh = dh_;  // lambdas cannot capture structured bindings before clang 16
      const size_t n = 5, qw = nq * dh, kw = nk * dh;
      auto q = randv(n * qw, rng), k = randv(n * kw, rng), z = randv(n * (qw + kw), rng), temp = randv(nk, rng);
      std::vector<float> Q(n * qw), K(n * kw), Qr(n * qw), Kr(n * kw);
      qk_coupling_ref(q.data(), k.data(), z.data(), n, nq, nk, dh, temp.data(), Qr.data(), Kr.data());
      std::vector<float> Q1, K1;
      for_thread_counts([&] {
        qk_coupling(q.data(), k.data(), z.data(), n, nq, nk, dh, temp.data(), Q.data(), K.data());
        if (Q1.empty()) Q1 = Q, K1 = K;
        EXPECT_TRUE(same_bits(Q, Q1) && same_bits(K, K1));
      });
      for (size_t i = 0; i < Q.size(); ++i) ASSERT_NEAR(Q[i], Qr[i], 2e-6f * (1 + std::fabs(Qr[i]))) << i;
      for (size_t i = 0; i < K.size(); ++i) ASSERT_NEAR(K[i], Kr[i], 2e-6f * (1 + std::fabs(Kr[i]))) << i;
      // Unit norms ×√dh (keys also × temp), as the spec says.
      double ss = 0;
      for (size_t i = 0; i < dh; ++i) ss += static_cast<double>(Q[i]) * Q[i];
      EXPECT_NEAR(std::sqrt(ss), std::sqrt(static_cast<double>(dh)), 1e-4);
    }
  }
  kernels_testing::force_target(0);
}

}  // namespace
}  // namespace zaya
