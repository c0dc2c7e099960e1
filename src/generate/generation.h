#pragma once
// The one generation step per sequence: sample (with logprobs when asked) → stop ids / eos → incremental
// detokenizing → stop strings → reasoning / tool-call parsing. Session (the CLI) and the server engine both drive
// it; they own the model state and decide when to feed a token back, the step decides what to show and when the
// generation ends.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "zaya/config.h"
#include "zaya/generate.h"
#include "zaya/output_parser.h"
#include "zaya/sampler.h"
#include "generate/stop.h"
#include "zaya/tokenizer.h"

namespace zaya {

class Generation {
 public:
  // history: the tokens before the first generated one (the penalties look at them). room: how many generated
  // tokens the context can still take (a token past it ends the generation with Length). tok may be null (id-only
  // generation: no text, no stop strings, no parsing). Throws zaya::Error on invalid options.
  Generation(const ModelConfig& cfg, const Tokenizer* tok, const GenerateOptions& opts,
             std::span<const int32_t> history, size_t room);

  // Samples the next token from `logits` (the model's output after the last token) and says what it adds.
  // Call only while !done().
  StepOutput step(const float* logits);
  // End of the generation: the held-back text and the parser's last events (the prefix's too if no step ran).
  StepOutput flush();

  bool done() const { return done_; }
  FinishReason finish() const { return finish_; }  // Stop or Length once done()
  const std::string& stop_string() const { return stop_string_; }
  int32_t stop_token() const { return stop_token_; }
  size_t generated() const { return generated_; }

 private:
  void end(FinishReason r) { done_ = true, finish_ = r; }
  void parse(const std::string& text, std::vector<OutputEvent>& out);
  void track(std::vector<OutputEvent>& events);

  GenerateOptions opt_;
  Sampler sampler_;
  std::vector<int32_t> stop_ids_;
  std::vector<int> history_;
  size_t room_;
  std::unique_ptr<StreamingDetokenizer> detok_;
  StopStringMatcher stopper_;
  std::unique_ptr<OutputParser> parser_;
  std::vector<OutputEvent> prefix_events_;  // handed out with the first output
  std::set<int> open_calls_;
  int calls_done_ = 0;
  bool cut_ = false;            // single_tool_call ended the generation: nothing after the call is shown
  bool injected_close_ = false;

  bool done_ = false;
  FinishReason finish_ = FinishReason::Length;
  std::string stop_string_;
  int32_t stop_token_ = -1;
  size_t generated_ = 0;
};

}  // namespace zaya
