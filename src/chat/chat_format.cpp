#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/json_limits.h"
#include "zaya/chat.h"
#include "zaya/error.h"
#include "zaya/jinja.h"
#include "zaya/sampler.h"
#include "zaya/tokenizer.h"

namespace zaya {
namespace fs = std::filesystem;

ChatFormatter::ChatFormatter(const Tokenizer& tok, const std::string& template_path) : tok_(tok) {
  std::string src;
  if (!template_path.empty()) {
    std::ifstream in(template_path);
    if (!in) throw Error(cat(template_path, ": cannot read chat template"));
    std::stringstream ss;
    ss << in.rdbuf();
    src = ss.str();
  } else {
    if (!tok.has_chat_template())
      throw Error("the model has no chat template (chat_template.jinja / tokenizer_config.json); use --raw or --chat-template FILE");
    src = tok.chat_template();
  }
  tmpl_ = std::make_unique<jinja::Template>(src);
}

ChatFormatter::~ChatFormatter() = default;

std::string ChatFormatter::render(const nlohmann::ordered_json& messages, const ChatRenderOptions& opts) const {
  if (!messages.is_array()) throw Error("chat messages must be a list");
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = opts.add_generation_prompt;
  ctx["bos_token"] = tok_.bos_token();
  ctx["eos_token"] = tok_.eos_token();
  // transformers passes tools (None when absent); enable_thinking only when the caller set it.
  ctx["tools"] = opts.tools.is_null() ? nlohmann::ordered_json() : opts.tools;
  if (opts.enable_thinking) ctx["enable_thinking"] = *opts.enable_thinking;
  if (opts.extra.is_object())
    for (auto it = opts.extra.begin(); it != opts.extra.end(); ++it) ctx[it.key()] = it.value();
  return tmpl_->render(ctx);
}

bool ChatFormatter::ends_inside_think(const std::string& prompt) {
  const size_t open = prompt.rfind("<think>");
  if (open == std::string::npos) return false;
  return prompt.find("</think>", open) == std::string::npos;
}

SamplingParams sampling_defaults(const std::string& model_dir, SamplingParams p) {
  const fs::path f = fs::path(model_dir) / "generation_config.json";
  if (!fs::exists(f)) return p;
  using json = nlohmann::json;
  const json j = parse_json_file<json>(f.string());
  auto num = [&](const char* k, float& out) {
    if (j.contains(k) && j[k].is_number()) out = j[k].get<float>();
  };
  num("temperature", p.temperature);
  num("top_p", p.top_p);
  num("min_p", p.min_p);
  num("repetition_penalty", p.repetition_penalty);
  if (j.contains("top_k") && j["top_k"].is_number_integer()) {
    const json& k = j["top_k"];
    if (k.is_number_unsigned() ? k.get<uint64_t>() > uint64_t(INT32_MAX) : k.get<int64_t>() > INT32_MAX)
      throw Error(cat(f.string(), ": top_k ", k.dump(), " is out of range"));
    p.top_k = int(std::max<int64_t>(k.get<int64_t>(), INT32_MIN));
  }
  if (j.contains("do_sample") && j["do_sample"] == false) p.temperature = 0;
  try {  // 1e300 reads as an infinite float: refuse it here, naming the file, not in every request
    validate(p, 1);
  } catch (const Error& e) {
    throw Error(cat(f.string(), ": ", e.what()));
  }
  return p;
}

}  // namespace zaya

namespace zaya {

std::string image_content(size_t images_before_text, const std::string& text) {
  std::string out;
  for (size_t i = 0; i < images_before_text; ++i) out += std::string(kImageMarker) + "\n";
  return out + text;
}

std::vector<int32_t> tokenize_with_image_markers(const Tokenizer& tok, const std::string& rendered, int32_t placeholder,
                                                 size_t* markers) {
  std::vector<int32_t> ids;
  size_t at = 0, count = 0;
  const std::string marker = kImageMarker;
  while (true) {
    const size_t hit = rendered.find(marker, at);
    const std::string_view piece = std::string_view(rendered).substr(at, hit == std::string::npos ? std::string::npos : hit - at);
    const auto part = tok.encode(piece);
    ids.insert(ids.end(), part.begin(), part.end());
    if (hit == std::string::npos) break;
    ids.push_back(placeholder);
    ++count;
    at = hit + marker.size();
  }
  if (markers) *markers = count;
  return ids;
}

}  // namespace zaya
