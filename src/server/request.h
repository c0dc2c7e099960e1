#pragma once
// OpenAI request bodies → validated internal requests. Every problem becomes an ApiError (server/openai.h)
// carrying the HTTP status and the OpenAI error object.
//
// Policy for fields: every documented field is type-checked. Fields that would change the output and that this
// server cannot honour (n > 1, best_of > 1, suffix, response_format json_*, audio, functions, …) are rejected with
// 400 rather than silently ignored; fields that do not change the output (user, metadata, store, service_tier, …)
// and unknown vendor extensions are accepted and ignored, since real clients send them.
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/openai.h"
#include "zaya/chat.h"
#include "zaya/generate.h"

namespace zaya::server {

// Parses a request body: valid UTF-8, valid JSON, a JSON object. Throws ApiError.
nlohmann::ordered_json parse_body(std::string_view body);

enum class ToolChoice { Auto, None, Required, Named };

// An image_url content part (ZAYA1-VL): its URL as sent, and where it was in the request (for error messages).
struct ImageRef {
  std::string url;
  std::string param;  // e.g. messages[2].content[0].image_url
};

struct ChatRequest {
  std::string model;
  nlohmann::ordered_json messages;  // normalized for the template (content parts joined, tool arguments as objects)
  std::vector<ImageRef> images;     // image parts of every message, in order; each is a kImageMarker line in content
  ChatRenderOptions render;
  GenerateOptions gen;
  bool max_tokens_given = false;
  bool stream = false, include_usage = false, logprobs = false;
  nlohmann::ordered_json tools;     // null or the list as given
  ToolChoice tool_choice = ToolChoice::Auto;
  std::string tool_name;            // for ToolChoice::Named
  bool parallel_tool_calls = true;
};

struct CompletionRequest {
  std::string model;
  std::optional<std::string> prompt_text;  // a text prompt …
  std::vector<int32_t> prompt_ids;         // … or token ids
  GenerateOptions gen;
  bool max_tokens_given = false;
  bool stream = false, include_usage = false, echo = false;
  int logprobs = -1;  // -1: none; else 0..5 alternatives
};

// `defaults` carries the model's generation_config sampling; `vocab` range-checks token ids and logit_bias.
ChatRequest parse_chat_request(const nlohmann::ordered_json& body, const SamplingParams& defaults, size_t vocab);
CompletionRequest parse_completion_request(const nlohmann::ordered_json& body, const SamplingParams& defaults,
                                           size_t vocab);

// Valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF)?
bool valid_utf8(std::string_view s);

}  // namespace zaya::server
