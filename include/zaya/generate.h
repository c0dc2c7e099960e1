#pragma once
// What one generation is asked to do and what each of its steps hands back, for `zaya run/chat/generate`
// (through Session) and the server engine alike: both run the same per-sequence step (src/generate/generation.h).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "zaya/output_parser.h"
#include "zaya/sampler.h"

namespace zaya {

// Reasoning / tool-call parsing of the streamed text (chat answers). Raw completions and id-only generation leave
// it unset and get plain text.
struct OutputParsing {
  OutputParserOptions parser;
  std::string prefix;               // output the caller already wrote into the prompt for the model (a forced call start)
  bool close_call_at_stop = false;  // a stop token between the parameters of a tool call closes the call
  bool single_tool_call = false;    // end the generation once the first tool call is complete
};

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<std::string> stop;       // stop strings (never part of the output)
  std::vector<int32_t> stop_token_ids;  // in addition to the model's eos ids
  bool ignore_eos = false;
  bool skip_special_tokens = true;      // in the streamed text
  int top_logprobs = -1;                // >= 0: collect the chosen token's logprob and this many alternatives
  std::optional<OutputParsing> parse;   // unset: no parsing (StepOutput::events stays empty)
};

enum class FinishReason { Stop, Length, Cancelled };
const char* finish_reason_name(FinishReason r);

// What one generated token (or the final flush) adds to the output.
struct StepOutput {
  int32_t token = -1;               // -1: the final flush of held-back text
  std::string text;                 // text that became safe to show (may be empty; stop strings never appear)
  std::vector<OutputEvent> events;  // with parsing: what this step decided (reasoning, content, tool calls)
  bool stop_token = false;          // the token ended the generation (eos / stop id); it has no text
  bool has_logprob = false;
  SampleResult logprob;
};

}  // namespace zaya
