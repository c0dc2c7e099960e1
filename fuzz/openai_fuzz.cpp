// OpenAI request bodies as the server reads them: UTF-8 and depth checks, JSON, then the chat and completion request
// parsers (tool-call arguments re-parsed from their strings included).
#include "server/openai.h"
#include "server/request.h"
#include "zaya/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  zaya::SamplingParams defaults;
  try {
    const auto j = zaya::server::parse_body(body);
    try {
      const auto chat = zaya::server::parse_chat_request(j, defaults, 384);
      (void)chat.messages.dump();
    } catch (const zaya::server::ApiError&) {
    }
    try {
      (void)zaya::server::parse_completion_request(j, defaults, 384);
    } catch (const zaya::server::ApiError&) {
    }
  } catch (const zaya::server::ApiError&) {
  }
  return 0;
}
