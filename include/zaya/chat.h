#pragma once
// Chat prompts: the model's Jinja chat template rendered the way Hugging Face's apply_chat_template renders it,
// with the model's own special tokens, and the generation settings a model folder ships.
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "zaya/sampler.h"

namespace zaya {

class Tokenizer;
namespace jinja { class Template; }

struct ChatRenderOptions {
  bool add_generation_prompt = true;
  std::optional<bool> enable_thinking;  // unset: the template's own default
  nlohmann::ordered_json tools;         // OpenAI-style tool list, or null
  nlohmann::ordered_json extra;         // more template variables (chat_template_kwargs)
};

class ChatFormatter {
 public:
  // The template comes from `template_path` when given, else the tokenizer's (chat_template.jinja or
  // tokenizer_config.json). Throws zaya::Error when there is none or it does not parse.
  ChatFormatter(const Tokenizer& tok, const std::string& template_path = "");
  ~ChatFormatter();

  // messages: a JSON list of {role, content, …}. Throws jinja::TemplateException for raise_exception().
  std::string render(const nlohmann::ordered_json& messages, const ChatRenderOptions& opts = {}) const;

  // Whether a rendered prompt leaves the model inside an open <think> block (so its output starts as reasoning).
  static bool ends_inside_think(const std::string& prompt);

 private:
  const Tokenizer& tok_;
  std::unique_ptr<jinja::Template> tmpl_;
};

// Images in chat prompts (ZAYA1-VL). A message's content names each image by kImageMarker; after rendering,
// tokenize_with_image_markers turns every marker into one `placeholder` id, which expand_image_tokens (vision.h)
// replaces by the image's start/image/end tokens. `zaya run --image` and the server's image_url parts both build
// content this way, so the same image and text give the same tokens.
inline constexpr const char* kImageMarker = "<|zaya:image|>";
// Content of a message from its parts in order: a text part as is, an image as kImageMarker + "\n".
std::string image_content(size_t images_before_text, const std::string& text);
std::vector<int32_t> tokenize_with_image_markers(const Tokenizer& tok, const std::string& rendered, int32_t placeholder,
                                                 size_t* markers = nullptr);

// Sampling defaults from generation_config.json (temperature, top_k, top_p, min_p, repetition_penalty, do_sample)
// where present, over `base`.
SamplingParams sampling_defaults(const std::string& model_dir, SamplingParams base);

}  // namespace zaya
