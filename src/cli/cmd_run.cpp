// zaya run (one prompt, streamed answer) and zaya chat (interactive, the decode state kept between turns).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/load.h"
#include "zaya/chat.h"
#include "zaya/error.h"
#include "zaya/jinja.h"
#include "zaya/limits.h"
#include "zaya/session.h"
#include "zaya/tokenizer.h"
#include "zaya/vision.h"

namespace zaya::cli {

namespace {

using ojson = nlohmann::ordered_json;

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

// SIGINT stops the current answer while this is alive; otherwise Ctrl-C ends the program as usual.
struct InterruptScope {
  struct sigaction old {};
  InterruptScope() {
    g_interrupted = false;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
  }
  ~InterruptScope() { sigaction(SIGINT, &old, nullptr); }
};

struct GenFlags {
  ModelOptions model;
  int n = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::string chat_template, system;
  bool think = false, no_think = false, show_thinking = false, ignore_eos = false;
  CLI::Option *temp = nullptr, *top_k = nullptr, *top_p = nullptr, *min_p = nullptr, *rep = nullptr, *pres = nullptr,
              *freq = nullptr, *seed = nullptr;

  void add_to(CLI::App* sub) {
    model.add_to(sub);
    sub->add_option("-n,--max-tokens", n, "maximum tokens to generate")->check(CLI::NonNegativeNumber);
    temp = sub->add_option("--temp,--temperature", sampling.temperature, "temperature (0 = greedy)");
    top_k = sub->add_option("--top-k", sampling.top_k, "top-k (0 = off)");
    top_p = sub->add_option("--top-p", sampling.top_p, "top-p (1 = off)");
    min_p = sub->add_option("--min-p", sampling.min_p, "min-p (0 = off)");
    rep = sub->add_option("--repeat-penalty", sampling.repetition_penalty, "repetition penalty (1 = off)");
    pres = sub->add_option("--presence-penalty", sampling.presence_penalty, "presence penalty");
    freq = sub->add_option("--frequency-penalty", sampling.frequency_penalty, "frequency penalty");
    seed = sub->add_option("--seed", sampling.seed, "random seed (same seed, same output)");
    sub->add_option("--stop", stop, "stop string (repeatable)");
    sub->add_option("--chat-template", chat_template, "Jinja chat template file (overrides the model's)");
    sub->add_option("--system", system, "system message");
    auto* t = sub->add_flag("--think", think, "enable thinking (enable_thinking=true)");
    sub->add_flag("--no-think", no_think, "disable thinking (enable_thinking=false)")->excludes(t);
    sub->add_flag("--show-thinking", show_thinking, "show the reasoning (dimmed) instead of hiding it");
    sub->add_flag("--ignore-eos", ignore_eos, "do not stop at end-of-sequence tokens");
  }

  // llama.cpp-like defaults, then generation_config.json, then the flags given.
  GenerateOptions options() const {
    SamplingParams base;
    base.temperature = 0.8f;
    base.top_k = 40;
    base.top_p = 0.95f;
    base.min_p = 0.05f;
    SamplingParams p = sampling_defaults(model.dir, base);
    if (temp->count()) p.temperature = sampling.temperature;
    if (top_k->count()) p.top_k = sampling.top_k;
    if (top_p->count()) p.top_p = sampling.top_p;
    if (min_p->count()) p.min_p = sampling.min_p;
    if (rep->count()) p.repetition_penalty = sampling.repetition_penalty;
    if (pres->count()) p.presence_penalty = sampling.presence_penalty;
    if (freq->count()) p.frequency_penalty = sampling.frequency_penalty;
    p.seed = seed->count() ? sampling.seed : random_seed();
    GenerateOptions g;
    g.sampling = p;
    g.max_tokens = n;
    g.stop = stop;
    g.ignore_eos = ignore_eos;
    return g;
  }
  std::optional<bool> enable_thinking() const {
    if (think) return true;
    if (no_think) return false;
    return std::nullopt;
  }
};

// Streams one answer: reasoning dimmed (or hidden), content plain, tool calls as one line each.
class AnswerPrinter {
 public:
  explicit AnswerPrinter(bool show_thinking) : show_thinking_(show_thinking), color_(isatty(STDOUT_FILENO)) {}
  // The parsing the answer needs: reasoning and tool calls when templated, plain content when raw.
  static OutputParsing parsing(bool start_in_reasoning, bool parse) {
    OutputParsing p;
    p.parser.start_in_reasoning = start_in_reasoning;
    p.parser.parse_reasoning = parse;
    p.parser.parse_tool_calls = parse;
    return p;
  }
  bool print(const StepOutput& step) {
    show(step.events);
    return !g_interrupted;
  }
  void finish() {
    if (in_reasoning_) end_dim();
    std::fflush(stdout);
  }
  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }

 private:
  void end_dim() {
    if (color_) std::fputs("\x1b[0m", stdout);
    std::fputs("\n", stdout);
    in_reasoning_ = false;
  }
  void show(const std::vector<OutputEvent>& events) {
    for (const auto& e : events) {
      switch (e.type) {
        case OutputEvent::Type::Reasoning:
          reasoning_ += e.text;
          if (!show_thinking_) break;
          if (!in_reasoning_) {
            if (color_) std::fputs("\x1b[2m", stdout);
            in_reasoning_ = true;
          }
          std::fputs(e.text.c_str(), stdout);
          break;
        case OutputEvent::Type::Content:
          if (in_reasoning_) end_dim();
          content_ += e.text;
          std::fputs(e.text.c_str(), stdout);
          break;
        case OutputEvent::Type::ToolCallEnd:
          if (in_reasoning_) end_dim();
          std::printf("\n[tool call] %s %s\n", e.call.name.c_str(),
                      e.call.arguments.dump(-1, ' ', false, ojson::error_handler_t::replace).c_str());
          tool_calls_.push_back(e.call);
          break;
        case OutputEvent::Type::ToolCallError:
          std::fprintf(stderr, "\nzaya: malformed tool call: %s\n", e.text.c_str());
          break;
        default: break;
      }
    }
    std::fflush(stdout);
  }
  bool show_thinking_, color_, in_reasoning_ = false;
  std::string content_, reasoning_;
  std::vector<ToolCall> tool_calls_;
};

void print_stats(const GenerationResult& r) {
  std::fprintf(stderr,
               "\nzaya: prompt %zu tokens (%zu cached) in %.3f s (%.1f tok/s) | generated %zu tokens in %.3f s (%.1f tok/s) | %s\n",
               r.prompt_tokens, r.cached_tokens, r.prompt_seconds,
               (r.prompt_tokens - r.cached_tokens) / std::max(r.prompt_seconds, 1e-9), r.tokens.size(),
               r.generation_seconds, r.tokens.size() / std::max(r.generation_seconds, 1e-9), finish_reason_name(r.finish));
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const Model& m, const std::string& text, bool add_special) {
  if (text.empty()) throw Error("empty prompt");
  auto ids = tok.encode(text, add_special);  // throws on invalid UTF-8
  if (ids.empty()) throw Error("the prompt encodes to no tokens");
  if (static_cast<int64_t>(ids.size()) >= m.config().max_positions)
    throw Error(cat("the prompt has ", ids.size(), " tokens; the model's context is ", m.config().max_positions));
  return ids;
}

// A rendered prompt with images: each image marker becomes the image's start/image/end tokens, and the features
// are attached for the decoder.
MultimodalPrompt image_prompt(const Tokenizer& tok, const Model& m, const std::string& rendered,
                              const ImageFeatures& images) {
  constexpr int32_t kPlace = -1;
  const auto ids = tokenize_with_image_markers(tok, rendered, kPlace);
  MultimodalPrompt p = attach_images(m.config(), expand_image_tokens(m.config(), ids, kPlace, images), images);
  if (static_cast<int64_t>(p.ids.size()) > m.config().max_positions)
    throw Error(cat("the prompt has ", p.ids.size(), " tokens; the model's context is ", m.config().max_positions));
  return p;
}

void print_vision_time(const ImageFeatures& f) {
  std::fprintf(stderr, "zaya: %zu image(s), %zu patches → %lld image tokens: preprocess %.3f s, vision encoder %.3f s\n",
               f.tokens.size(), f.patches, static_cast<long long>(f.total_tokens()), f.preprocess_seconds,
               f.encode_seconds);
}

}  // namespace

Runner add_run(CLI::App& app) {
  struct Opts {
    GenFlags g;
    std::string prompt, file;
    bool raw = false;
    std::vector<std::string> images;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("run", "generate an answer to one prompt, streamed");
  o->g.add_to(sub);
  sub->add_option("--image", o->images, "ZAYA1-VL: an image (PNG/JPEG) shown before the prompt; repeatable");
  auto* p = sub->add_option("-p,--prompt", o->prompt, "the prompt");
  sub->add_option("-f,--file", o->file, "read the prompt from a file")->excludes(p);
  sub->add_flag("--raw", o->raw, "no chat template: the prompt text is the model input");
  return [o]() {
    std::string text = o->prompt;
    if (!o->file.empty()) {
      std::ifstream in(o->file);
      if (!in) throw Error(cat(o->file, ": cannot read"));
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    } else if (text.empty() && !isatty(STDIN_FILENO)) {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      text = ss.str();
    }
    if (text.empty()) throw Error("empty prompt: give -p, -f or text on stdin");
    auto model = load_model(o->g.model);
    const Tokenizer tok = Tokenizer::load(o->g.model.dir);
    std::string input = text;
    bool in_think = false;
    if (!o->raw) {
      ChatFormatter fmt(tok, o->g.chat_template);
      ojson messages = ojson::array();
      if (!o->g.system.empty()) messages.push_back({{"role", "system"}, {"content", o->g.system}});
      messages.push_back({{"role", "user"}, {"content", image_content(o->images.size(), text)}});
      ChatRenderOptions ro;
      ro.enable_thinking = o->g.enable_thinking();
      input = fmt.render(messages, ro);
      in_think = ChatFormatter::ends_inside_think(input);
    } else if (!o->images.empty()) {
      throw Error("--image needs the chat template (it places the images); drop --raw");
    }
    Session session(*model, &tok);
    AnswerPrinter printer(o->g.show_thinking);
    GenerateOptions opts = o->g.options();
    opts.parse = AnswerPrinter::parsing(in_think, !o->raw);
    InterruptScope interrupt;
    auto on_step = [&](const StepOutput& step) { return printer.print(step); };
    GenerationResult r;
    if (!o->images.empty()) {
      const auto vision = VisionEncoder::load(o->g.model.dir, model_load_options(o->g.model));
      const ImageFeatures f = vision->encode_files(o->images);
      if (!o->g.model.quiet) print_vision_time(f);
      r = session.complete_steps(image_prompt(tok, *model, input, f), opts, on_step);
    } else {
      // A raw prompt gets the tokenizer's special tokens (<bos>); a rendered template already has them.
      r = session.complete_steps(encode_prompt(tok, *model, input, o->raw), opts, on_step);
    }
    printer.finish();
    std::fputs("\n", stdout);
    if (!o->g.model.quiet) print_stats(r);
    return 0;
  };
}

Runner add_chat(CLI::App& app) {
  struct Opts {
    GenFlags g;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("chat", "interactive multi-turn chat (/help for commands)");
  o->g.add_to(sub);
  return [o]() {
    auto model = load_model(o->g.model);
    const Tokenizer tok = Tokenizer::load(o->g.model.dir);
    ChatFormatter fmt(tok, o->g.chat_template);
    Session session(*model, &tok);
    std::optional<bool> thinking = o->g.enable_thinking();
    ojson messages = ojson::array();
    // ZAYA1-VL: images of the whole conversation, in order (a re-rendered history needs all of them), and those
    // queued by /image for the next message.
    std::unique_ptr<VisionEncoder> vision;
    ImageFeatures images;
    std::vector<std::string> pending;
    auto reset = [&] {
      messages = ojson::array();
      images = ImageFeatures();
      pending.clear();
      if (!o->g.system.empty()) messages.push_back({{"role", "system"}, {"content", o->g.system}});
      session.reset();
    };
    reset();
    const bool tty = isatty(STDIN_FILENO);
    if (tty)
      std::fprintf(stderr, "zaya chat: /reset, /think on|off, /image PATH, /save FILE, /load FILE, /exit. Ctrl-C stops an answer.\n");
    std::string line;
    for (;;) {
      if (tty) std::fputs("> ", stdout), std::fflush(stdout);
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      if (line[0] == '/') {
        std::istringstream cmd(line);
        std::string verb, arg;
        cmd >> verb >> arg;
        try {
          if (verb == "/exit" || verb == "/quit") break;
          if (verb == "/reset") {
            reset();
            std::fprintf(stderr, "zaya: conversation reset\n");
          } else if (verb == "/think") {
            if (arg != "on" && arg != "off") throw Error("usage: /think on|off");
            thinking = arg == "on";
            std::fprintf(stderr, "zaya: thinking %s\n", arg.c_str());
          } else if (verb == "/save") {
            if (arg.empty()) throw Error("usage: /save FILE");
            std::ofstream out(arg);
            if (!out) throw Error(cat(arg, ": cannot write"));
            out << messages.dump(2) << "\n";
            std::fprintf(stderr, "zaya: saved %zu messages to %s\n", messages.size(), arg.c_str());
          } else if (verb == "/load") {
            if (arg.empty()) throw Error("usage: /load FILE");
            std::ifstream in(arg);
            if (!in) throw Error(cat(arg, ": cannot read"));
            const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (limits::json_nesting_depth(text) > limits::kMaxJsonDepth)
              throw Error(cat(arg, ": JSON nested deeper than ", limits::kMaxJsonDepth, " levels"));
            ojson loaded = ojson::parse(text);
            if (!loaded.is_array()) throw Error(cat(arg, ": expected a JSON list of messages"));
            messages = loaded;
            std::fprintf(stderr, "zaya: loaded %zu messages\n", messages.size());
          } else if (verb == "/image") {
            if (arg.empty()) throw Error("usage: /image PATH (shown with your next message)");
            if (!model->config().vl.enabled) throw Error("this model takes no images (it is not a ZAYA1-VL model)");
            pending.push_back(arg);
            std::fprintf(stderr, "zaya: image %s queued for the next message\n", arg.c_str());
          } else if (verb == "/help") {
            std::fprintf(stderr, "/reset, /think on|off, /image PATH, /save FILE, /load FILE, /exit\n");
          } else {
            throw Error(cat("unknown command ", verb, " (/help lists them)"));
          }
        } catch (const std::exception& e) {
          std::fprintf(stderr, "zaya: %s\n", e.what());
        }
        continue;
      }
      try {
        ojson turn = messages;
        ImageFeatures with_new = images;
        if (!pending.empty()) {
          if (!vision) vision = VisionEncoder::load(o->g.model.dir, model_load_options(o->g.model));
          const ImageFeatures f = vision->encode_files(pending);
          if (!o->g.model.quiet) print_vision_time(f);
          with_new.rows.insert(with_new.rows.end(), f.rows.begin(), f.rows.end());
          with_new.hidden = f.hidden;
          with_new.tokens.insert(with_new.tokens.end(), f.tokens.begin(), f.tokens.end());
          with_new.fingerprints.insert(with_new.fingerprints.end(), f.fingerprints.begin(), f.fingerprints.end());
        }
        turn.push_back({{"role", "user"}, {"content", image_content(pending.size(), line)}});
        ChatRenderOptions ro;
        ro.enable_thinking = thinking;
        const std::string input = fmt.render(turn, ro);
        const bool has_images = !with_new.tokens.empty();
        const MultimodalPrompt mm = has_images ? image_prompt(tok, *model, input, with_new) : MultimodalPrompt{};
        const auto ids = has_images ? mm.ids : encode_prompt(tok, *model, input, false);
        AnswerPrinter printer(o->g.show_thinking);
        GenerateOptions opts = o->g.options();
        opts.parse = AnswerPrinter::parsing(ChatFormatter::ends_inside_think(input), true);
        InterruptScope interrupt;
        auto on_step = [&](const StepOutput& step) { return printer.print(step); };
        auto r = has_images ? session.complete_steps(mm, opts, on_step) : session.complete_steps(ids, opts, on_step);
        printer.finish();
        std::fputs("\n", stdout);
        std::fflush(stdout);
        messages = turn;
        images = std::move(with_new);
        pending.clear();
        ojson answer = {{"role", "assistant"}, {"content", printer.content()}};
        if (!printer.reasoning().empty()) answer["reasoning_content"] = printer.reasoning();
        messages.push_back(answer);
        if (!o->g.model.quiet) print_stats(r);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "zaya: error: %s\n", e.what());
      }
    }
    return 0;
  };
}

}  // namespace zaya::cli
