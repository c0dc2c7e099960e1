// The one generation step (src/generate/generation.h): the CLI's Session and the server's Engine both run it, so
// the same seed gives the same tokens, text, logprobs and finish either way; parsing, prefixes and the one-call cut.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "generate/generation.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "test_util.h"
#include "zaya/model.h"
#include "zaya/session.h"
#include "zaya/tokenizer.h"

using namespace zaya;

namespace {
std::string dir_of(const char* name) { return test::require_path(test::data_dir() + "/golden/zaya1-text/" + name); }

struct Fixture {
  std::unique_ptr<Model> model;
  Tokenizer tok;
  std::vector<int32_t> prompt;
  explicit Fixture(const char* name = "trained-small") : tok(Tokenizer::load(dir_of(name))) {
    LoadOptions o;
    o.verbose = false;
    model = Model::load(dir_of(name), o);
    prompt = tok.encode("The GNU General Public License is", true);
  }
};

GenerateOptions sampled(uint64_t seed, int n) {
  GenerateOptions g;
  g.sampling.temperature = 1.0f;
  g.sampling.top_k = 20;
  g.sampling.seed = seed;
  g.max_tokens = n;
  g.top_logprobs = 2;
  return g;
}

// Everything the server engine hands out for one task.
struct EngineRun {
  std::vector<StepOutput> steps;
  server::TaskSummary summary;
  std::vector<int32_t> tokens() const {
    std::vector<int32_t> t;
    for (const auto& s : steps)
      if (s.token >= 0) t.push_back(s.token);
    return t;
  }
  std::string text() const {
    std::string t;
    for (const auto& s : steps) t += s.text;
    return t;
  }
};

EngineRun run_engine(const Fixture& f, const GenerateOptions& opts) {
  server::Metrics metrics;
  server::EngineOptions eo;
  server::Engine engine(*f.model, f.tok, eo, metrics);
  auto task = std::make_shared<server::Task>(f.prompt, opts, server::Clock::now() + std::chrono::minutes(5));
  EXPECT_EQ(engine.submit(task), server::Engine::Admit::Ok);
  EngineRun r;
  while (!task->wait(r.steps, std::chrono::milliseconds(50))) {
  }
  r.summary = task->summary();
  return r;
}
}  // namespace

TEST(Generation, SameSeedSameTokensThroughSessionAndEngine) {
  Fixture f;
  for (uint64_t seed : {1u, 7u, 42u}) {
    const GenerateOptions opts = sampled(seed, 12);
    Session session(*f.model, &f.tok);
    const GenerationResult want = session.complete(f.prompt, opts);
    const EngineRun got = run_engine(f, opts);
    EXPECT_EQ(got.tokens(), want.tokens) << "seed " << seed;
    EXPECT_EQ(got.text(), want.text) << "seed " << seed;
    EXPECT_EQ(got.summary.finish, finish_reason_name(want.finish));
    EXPECT_EQ(got.summary.completion_tokens, want.tokens.size());
    size_t i = 0;
    for (const auto& s : got.steps) {
      if (s.token < 0) continue;
      ASSERT_TRUE(s.has_logprob);
      ASSERT_LT(i, want.logprobs.size());
      EXPECT_EQ(s.logprob.token, want.logprobs[i].token);
      EXPECT_EQ(s.logprob.logprob, want.logprobs[i].logprob);
      ++i;
    }
  }
}

TEST(Generation, StepByHandMatchesSession) {
  Fixture f;
  GenerateOptions opts = sampled(3, 10);
  opts.stop = {"\n\n"};
  Session session(*f.model, &f.tok);
  const GenerationResult want = session.complete(f.prompt, opts);

  DecodeState state = f.model->new_state();
  std::vector<float> logits = f.model->forward(f.prompt, state, LogitsMode::Last);
  Generation gen(f.model->config(), &f.tok, opts, f.prompt, 1000);
  std::vector<int32_t> tokens;
  std::string text;
  while (!gen.done()) {
    StepOutput out = gen.step(logits.data());
    tokens.push_back(out.token);
    text += out.text;
    logits = f.model->forward(std::span(&out.token, 1), state, LogitsMode::Last);
  }
  text += gen.flush().text;
  EXPECT_EQ(tokens, want.tokens);
  EXPECT_EQ(text, want.text);
  EXPECT_EQ(gen.finish(), want.finish);
  EXPECT_EQ(gen.stop_string(), want.stop_string);
}

TEST(Generation, LimitsEndWithLength) {
  Fixture f;
  const ModelConfig& cfg = f.model->config();
  std::vector<float> logits(static_cast<size_t>(cfg.vocab), 0.0f);
  logits[100] = 50.0f;  // greedy picks 100, which is no stop id
  GenerateOptions opts;
  opts.sampling.temperature = 0;
  opts.max_tokens = 0;
  Generation none(cfg, &f.tok, opts, f.prompt, 10);
  EXPECT_TRUE(none.done());
  EXPECT_EQ(none.finish(), FinishReason::Length);
  opts.max_tokens = 5;
  Generation room(cfg, &f.tok, opts, f.prompt, 2);  // the context takes two more tokens: the third ends it
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(room.done());
    room.step(logits.data());
  }
  EXPECT_TRUE(room.done());
  EXPECT_EQ(room.finish(), FinishReason::Length);
  EXPECT_EQ(room.generated(), 3u);
}

TEST(Generation, ParsingPrefixAndOneToolCall) {
  Fixture f;
  const ModelConfig& cfg = f.model->config();
  // Drive the parser with the tokens of a known text: greedy over logits that favour each next id in turn.
  const std::string answer = "weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</zyphra_tool_call>\nmore";
  const std::vector<int32_t> ids = f.tok.encode(answer, false);
  GenerateOptions opts;
  opts.sampling.temperature = 0;
  opts.max_tokens = 100;
  opts.parse.emplace();
  opts.parse->prefix = "<zyphra_tool_call>\n<function=";
  opts.parse->single_tool_call = true;
  Generation gen(cfg, &f.tok, opts, f.prompt, 1000);
  std::vector<OutputEvent> events;
  std::vector<float> logits(static_cast<size_t>(cfg.vocab), 0.0f);
  size_t i = 0;
  while (!gen.done() && i < ids.size()) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    logits[static_cast<size_t>(ids[i++])] = 50.0f;
    for (auto& e : gen.step(logits.data()).events) events.push_back(std::move(e));
  }
  for (auto& e : gen.flush().events) events.push_back(std::move(e));
  EXPECT_EQ(gen.finish(), FinishReason::Stop);
  EXPECT_LT(i, ids.size());  // ended at the call's end, before "more"
  int begins = 0, ends = 0;
  for (const auto& e : events) {
    begins += e.type == OutputEvent::Type::ToolCallBegin;
    if (e.type == OutputEvent::Type::ToolCallEnd) {
      ++ends;
      EXPECT_EQ(e.call.name, "weather");
      EXPECT_EQ(e.call.arguments, nlohmann::ordered_json::parse(R"({"city": "Paris"})"));
    }
    EXPECT_NE(e.type, OutputEvent::Type::Content) << e.text;
  }
  EXPECT_EQ(begins, 1);
  EXPECT_EQ(ends, 1);
}

TEST(Generation, StopTokenInsideACallClosesIt) {
  Fixture f;
  const ModelConfig& cfg = f.model->config();
  ASSERT_FALSE(f.tok.eos_ids().empty());
  std::vector<int32_t> ids = f.tok.encode("<parameter=a>\n1\n</parameter>\n", false);
  ids.push_back(f.tok.eos_ids()[0]);
  GenerateOptions opts;
  opts.sampling.temperature = 0;
  opts.max_tokens = 100;
  opts.parse.emplace();
  opts.parse->prefix = "<zyphra_tool_call>\n<function=f>\n";
  for (bool close : {false, true}) {
    opts.parse->close_call_at_stop = close;
    Generation gen(cfg, &f.tok, opts, f.prompt, 1000);
    std::vector<float> logits(static_cast<size_t>(cfg.vocab), 0.0f);
    std::vector<OutputEvent> events;
    for (size_t i = 0; !gen.done(); ++i) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      logits[static_cast<size_t>(ids.at(i))] = 50.0f;
      for (auto& e : gen.step(logits.data()).events) events.push_back(std::move(e));
    }
    EXPECT_EQ(gen.stop_token(), ids.back());
    for (auto& e : gen.flush().events) events.push_back(std::move(e));
    int ends = 0, errors = 0;
    for (const auto& e : events) {
      ends += e.type == OutputEvent::Type::ToolCallEnd;
      errors += e.type == OutputEvent::Type::ToolCallError;
      // The injected closing text never shows in a failed call's raw text.
      if (e.type == OutputEvent::Type::ToolCallError) {
        EXPECT_EQ(e.raw.find("</function>"), std::string::npos) << e.raw;
      }
    }
    EXPECT_EQ(ends, close ? 1 : 0) << "close " << close;
    EXPECT_EQ(errors, close ? 0 : 1) << "close " << close;
  }
}
