// Generation sessions: greedy output against the golden continuation, prompt reuse through snapshots (results
// identical to a fresh run), stop tokens / strings, cancellation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "zaya/session.h"
#include "zaya/snapshot_pool.h"
#include "zaya/tokenizer.h"

using namespace zaya;

namespace {
std::string dir_of(const char* name) { return test::require_path(test::data_dir() + "/golden/zaya1-text/" + name); }
std::unique_ptr<Model> load(const char* name) {
  LoadOptions o;
  o.verbose = false;
  return Model::load(dir_of(name), o);
}
GenerateOptions greedy(int n) {
  GenerateOptions g;
  g.sampling.temperature = 0;
  g.max_tokens = n;
  return g;
}
}  // namespace

TEST(Session, GreedyMatchesGolden) {
  auto m = load("tiny-a");
  auto meta = nlohmann::json::parse(test::read_file(dir_of("tiny-a") + "/cases.json"));
  auto prompt = meta["greedy"]["prompt_ids"].get<std::vector<int32_t>>();
  Session s(*m, nullptr);
  auto opts = greedy(8);
  opts.ignore_eos = true;
  auto r = s.complete(prompt, opts);
  EXPECT_EQ(r.tokens, meta["greedy"]["generated_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(r.finish, FinishReason::Length);
  EXPECT_EQ(r.cached_tokens, 0u);
}

TEST(Session, PromptReuseGivesTheSameTokensAsAFreshRun) {
  auto m = load("trained-small");
  Tokenizer tok = Tokenizer::load(dir_of("trained-small"));
  const auto a = tok.encode("The GNU General Public License is", true);
  Session s(*m, &tok);
  auto r1 = s.complete(a, greedy(6));
  // Turn 2 extends turn 1 (prompt + generated + new text): everything cached is reused.
  std::vector<int32_t> b = a;
  b.insert(b.end(), r1.tokens.begin(), r1.tokens.end());
  auto more = tok.encode(" and the", false);
  b.insert(b.end(), more.begin(), more.end());
  auto r2 = s.complete(b, greedy(6));
  EXPECT_EQ(r2.cached_tokens, a.size() + r1.tokens.size());
  // A prompt that diverges after `a` resumes from the snapshot taken at the end of `a`.
  std::vector<int32_t> c = a;
  auto other = tok.encode(" free software", false);
  c.insert(c.end(), other.begin(), other.end());
  auto r3 = s.complete(c, greedy(6));
  EXPECT_EQ(r3.cached_tokens, a.size());
  // Same results as fresh sessions.
  for (auto [prompt, got] : {std::pair{&b, &r2}, {&c, &r3}}) {
    Session fresh(*m, &tok);
    auto want = fresh.complete(*prompt, greedy(6));
    EXPECT_EQ(got->tokens, want.tokens);
    EXPECT_EQ(got->text, want.text);
  }
}

TEST(Session, StopStringsAndCancellation) {
  auto m = load("trained-small");
  Tokenizer tok = Tokenizer::load(dir_of("trained-small"));
  const auto prompt = tok.encode("The GNU General Public License is", true);
  Session s(*m, &tok);
  auto full = s.complete(prompt, greedy(32));
  ASSERT_GT(full.text.size(), 10u);
  // Stop at a string that appears in the greedy text: the output is the text before it.
  const std::string stop = full.text.substr(5, 4);
  auto opts = greedy(32);
  opts.stop = {stop};
  auto r = s.complete(prompt, opts);
  EXPECT_EQ(r.finish, FinishReason::Stop);
  EXPECT_EQ(r.stop_string, stop);
  EXPECT_EQ(r.text, full.text.substr(0, full.text.find(stop)));
  // Cancel after the first piece.
  int pieces = 0;
  auto c = s.complete(prompt, greedy(32), [&](const std::string&, int32_t) { return ++pieces < 1; });
  EXPECT_EQ(c.finish, FinishReason::Cancelled);
  EXPECT_EQ(pieces, 1);
}

TEST(Session, BadPromptsAreRejected) {
  auto m = load("tiny-a");
  Session s(*m, nullptr);
  std::vector<int32_t> empty;
  EXPECT_THROW(s.prefill(empty), Error);
  std::vector<int32_t> bad = {2, 100000};
  EXPECT_THROW(s.prefill(bad), Error);
  EXPECT_TRUE(s.tokens().empty());
  EXPECT_THROW(s.generate(greedy(1)), Error);
}

TEST(SnapshotPool, LongestResumablePrefixAndLruEviction) {
  auto m = load("tiny-a");
  SnapshotPool pool(2);
  auto snap = [&](std::vector<int32_t> t, bool logits) {
    return PrefixSnapshot{std::move(t), m->new_state(), logits ? std::vector<float>(4, 0.f) : std::vector<float>{}, 0};
  };
  pool.add(snap({2, 5}, true));
  pool.add(snap({2, 5, 7}, false));
  const std::vector<int32_t> prompt = {2, 5, 7, 9};
  EXPECT_EQ(pool.find(prompt), 1);                          // longest prefix
  EXPECT_EQ(pool.find(std::vector<int32_t>{2, 5, 7}), 0);   // no logits: only strict prefixes resume
  EXPECT_EQ(pool.find(prompt, 3), -1);                      // nothing longer than 3 tokens
  const size_t bytes = pool.total_bytes();
  pool.add(snap({2, 5}, true));                             // same history: refresh, no new entry
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_EQ(pool.total_bytes(), bytes);
  pool.use(0);
  pool.add(snap({3}, true));                                // evicts the least recently used ({2,5,7})
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_EQ(pool.find(prompt), 0);
  pool.drop_prefixes_of({3, 4});                            // has logits: kept
  EXPECT_EQ(pool.size(), 2u);
}
