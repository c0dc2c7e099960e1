// The model's input forms: token ids, or precomputed embedding rows for flagged tokens (what the VL model feeds
// image features through).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/format_table.h"
#include "models/zaya/model_weights.h"
#include "test_util.h"
#include "zaya/error.h"
#include "zaya/model.h"

namespace zaya {
namespace {

std::unique_ptr<Model> tiny() {
  LoadOptions o;
  o.verbose = false;
  return Model::load(test::require_path(test::data_dir() + "/golden/zaya1-text/tiny-a"), o);
}

std::vector<float> run(const Model& m, std::span<const int32_t> ids, std::span<const float> emb = {},
                       std::span<const uint8_t> flags = {}) {
  DecodeState st = m.new_state();
  Model::BatchItem it(ids, &st, LogitsMode::All);
  it.embeddings = emb;
  it.flags = flags;
  m.forward_batch(std::span(&it, 1));
  return it.logits;
}

TEST(ModelInput, EmbeddingRowsEqualToTheLookupGiveTheSameLogits) {
  auto m = tiny();
  const size_t H = m->config().hidden;
  const std::vector<int32_t> ids = {2, 17, 5, 99, 3};
  std::vector<float> emb(ids.size() * H);
  for (size_t t = 0; t < ids.size(); ++t) decode_row(m->weights().embedding, ids[t], &emb[t * H]);
  const auto ref = run(*m, ids);
  EXPECT_EQ(run(*m, ids, emb), ref);  // every row given
  // Only some rows flagged: the others come from the lookup, whatever the unflagged rows hold.
  std::vector<float> partial = emb;
  const std::vector<uint8_t> flags = {0, 1, 0, 1, 0};
  for (size_t t : {0, 2, 4}) std::fill(&partial[t * H], &partial[(t + 1) * H], 1e9f);
  EXPECT_EQ(run(*m, ids, partial, flags), ref);
}

TEST(ModelInput, FlaggedRowsReplaceTheLookup) {
  auto m = tiny();
  const size_t H = m->config().hidden, V = m->config().vocab;
  const std::vector<int32_t> ids = {2, 17, 5};
  std::vector<float> emb(ids.size() * H, 0.25f);
  const std::vector<uint8_t> flags = {0, 1, 0};
  const auto ref = run(*m, ids), got = run(*m, ids, emb, flags);
  // Causal: the first position is untouched, later ones change.
  EXPECT_TRUE(std::equal(ref.begin(), ref.begin() + V, got.begin()));
  EXPECT_FALSE(std::equal(ref.begin() + V, ref.end(), got.begin() + V));
}

TEST(ModelInput, BadShapesAreErrors) {
  auto m = tiny();
  const std::vector<int32_t> ids = {2, 17};
  std::vector<float> short_emb(m->config().hidden);
  EXPECT_THROW(run(*m, ids, short_emb), Error);
  std::vector<float> emb(2 * m->config().hidden);
  const std::vector<uint8_t> one_flag = {1};
  EXPECT_THROW(run(*m, ids, emb, one_flag), Error);
  const std::vector<uint8_t> flags = {1, 0};
  EXPECT_THROW(run(*m, ids, {}, flags), Error);
}

}  // namespace
}  // namespace zaya
