// zaya tokenize / zaya template: the tokenizer and the chat-template renderer on their own, one JSON line per input.
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "zaya/error.h"
#include "zaya/jinja.h"
#include "zaya/limits.h"
#include "zaya/tokenizer.h"

namespace zaya::cli {

namespace {

using ojson = nlohmann::ordered_json;

std::string dump_line(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

// Calls fn for each non-empty line of a file ("-" = stdin).
template <typename Fn>
void for_each_line(const std::string& path, Fn fn) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path);
    if (!file) throw Error(cat(path, ": cannot read"));
    in = &file;
  }
  std::string line;
  size_t n = 0;
  while (std::getline(*in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    fn(line, n);
  }
}

std::tm parse_now(const std::string& s) {
  std::tm tm{};
  if (std::sscanf(s.c_str(), "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                  &tm.tm_sec) != 6)
    throw Error(cat("--now '", s, "': expected \"YYYY-MM-DD HH:MM:SS\""));
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  std::tm copy = tm;
  std::mktime(&copy);  // fills the weekday / day of year
  tm.tm_wday = copy.tm_wday;
  tm.tm_yday = copy.tm_yday;
  return tm;
}

}  // namespace

Runner add_tokenize(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, jsonl, text;
    bool add_special = false, decode = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("tokenize", "encode text to token ids (one JSON line per input)");
  auto* m = sub->add_option("-m,--model", o->model, "model folder (its tokenizer.json)");
  auto* t = sub->add_option("-t,--tokenizer", o->tokenizer, "a tokenizer.json file");
  m->excludes(t);
  auto* j = sub->add_option("--jsonl", o->jsonl, "input lines {\"text\": ...} ('-' = stdin)");
  auto* x = sub->add_option("--text", o->text, "one string");
  j->excludes(x);
  sub->add_flag("--add-special", o->add_special, "add the special tokens of the post-processor (e.g. <bos>)");
  sub->add_flag("--decode", o->decode, "also print the decoded text");
  return [o]() {
    if (o->model.empty() && o->tokenizer.empty()) throw Error("tokenize: give -m DIR or -t tokenizer.json");
    if (o->jsonl.empty() && o->text.empty()) throw Error("tokenize: give --jsonl FILE or --text \"...\"");
    const Tokenizer tok = Tokenizer::load(o->model.empty() ? o->tokenizer : o->model);
    auto one = [&](const std::string& text) {
      ojson out;
      auto ids = tok.encode(text, o->add_special);
      out["ids"] = ids;
      if (o->decode) out["decoded"] = tok.decode(ids);
      return out;
    };
    if (!o->text.empty()) {
      std::printf("%s\n", dump_line(one(o->text)).c_str());
      return 0;
    }
    int failures = 0;
    for_each_line(o->jsonl, [&](const std::string& line, size_t n) {
      ojson out;
      try {
        if (limits::json_nesting_depth(line) > limits::kMaxJsonDepth)
          throw Error(cat("JSON nested deeper than ", limits::kMaxJsonDepth, " levels"));
        ojson in = ojson::parse(line);
        if (!in.is_object() || !in.contains("text") || !in["text"].is_string())
          throw Error(cat("line ", n, ": expected an object with a string \"text\""));
        out = one(in["text"].get<std::string>());
      } catch (const std::exception& e) {
        out = ojson{{"error", cat("line ", n, ": ", e.what())}};
        ++failures;
      }
      std::printf("%s\n", dump_line(out).c_str());
    });
    return failures ? 1 : 0;
  };
}

Runner add_template(CLI::App& app) {
  struct Opts {
    std::string jsonl, now;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("template", "render chat templates: {template, context} lines -> {output} / {error}");
  sub->add_option("--jsonl", o->jsonl, "input lines {\"template\": ..., \"context\": {...}} ('-' = stdin)")->required();
  sub->add_option("--now", o->now, "fixed time for strftime_now, \"YYYY-MM-DD HH:MM:SS\" (default: the clock)");
  return [o]() {
    jinja::RenderOptions ro;
    if (!o->now.empty()) ro.now = parse_now(o->now);
    for_each_line(o->jsonl, [&](const std::string& line, size_t n) {
      ojson out;
      try {
        if (limits::json_nesting_depth(line) > limits::kMaxJsonDepth)
          throw Error(cat("JSON nested deeper than ", limits::kMaxJsonDepth, " levels"));
        ojson in = ojson::parse(line);
        if (!in.is_object() || !in.contains("template") || !in["template"].is_string())
          throw Error(cat("line ", n, ": expected an object with a string \"template\""));
        ojson ctx = in.contains("context") ? in["context"] : ojson::object();
        if (!ctx.is_object()) throw Error(cat("line ", n, ": \"context\" must be an object"));
        out["output"] = jinja::Template(in["template"].get<std::string>()).render(ctx, ro);
      } catch (const jinja::TemplateException& e) {
        out = ojson{{"error", e.what()}};  // raise_exception(msg): the message exactly
      } catch (const std::exception& e) {
        out = ojson{{"error", e.what()}};
      }
      std::printf("%s\n", dump_line(out).c_str());
    });
    return 0;
  };
}

}  // namespace zaya::cli
