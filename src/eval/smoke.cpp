// zaya smoke (zaya/smoke.h): the sections and their checks. The report's text forms are in smoke_report.cpp.
#include "zaya/smoke.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <thread>

#include "zaya/runtime.h"
#include "tokenizer/internal.h"
#include "zaya/chat.h"
#include "zaya/error.h"
#include "zaya/output_parser.h"
#include "zaya/perplexity.h"
#include "zaya/session.h"
#include "util/thread_pool.h"
#include "zaya/tokenizer.h"
#include "zaya/verify.h"

namespace zaya {

const char* smoke_builtin_json();  // generated from src/eval/smoke_data.json

const std::string& smoke_builtin_data() {
  static const std::string data = smoke_builtin_json();
  return data;
}

namespace {

using ojson = nlohmann::ordered_json;
using clock_type = std::chrono::steady_clock;

// Thresholds (docs/smoke.md explains each).
constexpr double kPrefillDecodeMax = 1e-3;  // fp32 reference noise is ≤ 5e-6; the int16 path ≤ 6e-4
constexpr double kBatchMax = 1e-4;          // the kernels are batch-invariant: 0 expected
constexpr double kKldMeanMax = 0.10;        // 4-bit bundles of trained-small: 0.01–0.05
constexpr double kTop1Min = 0.80;
constexpr double kPplRatioMax = 1.10;
constexpr double kGreedyAgreeMin = 0.80;    // teacher-forced agreement with the reference's greedy continuation
constexpr double kDistinct4Min = 0.25;      // a loop to the budget scores a few percent
constexpr int kRefContinuation = 48;        // tokens of each reference continuation

std::string num(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// "vision (VL)" -> "vision_vl": check names are identifiers.
std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if ((c == ' ' || c == '_') && !out.empty() && out.back() != '_') out += '_';
  }
  return out;
}

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= w)) w = std::isnan(d) ? INFINITY : d;
  }
  return w;
}

size_t argmax(const float* v, size_t n) { return static_cast<size_t>(std::max_element(v, v + n) - v); }

double distinct_ngrams(const std::vector<int32_t>& ids, size_t n) {
  if (ids.size() < n + 4) return 1.0;  // too short to loop
  std::set<std::vector<int32_t>> seen;
  for (size_t i = 0; i + n <= ids.size(); ++i) seen.insert(std::vector<int32_t>(ids.begin() + i, ids.begin() + i + n));
  return static_cast<double>(seen.size()) / static_cast<double>(ids.size() - n + 1);
}

struct Prompt {
  std::string id, user_text;
  ojson messages, tools;
  std::optional<bool> thinking;
  int max_tokens = 256;
  std::string expect, expect_tool;
  bool expect_reasoning = false, vision = false;
};

std::vector<Prompt> parse_prompts(const std::string& json_text, const std::string& source) {
  ojson j;
  try {
    j = ojson::parse(json_text);
  } catch (const std::exception& e) {
    throw Error(cat(source, ": not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object() || !j.contains("prompts") || !j["prompts"].is_array() || j["prompts"].empty())
    throw Error(cat(source, ": expected an object with a non-empty \"prompts\" list"));
  std::vector<Prompt> out;
  std::set<std::string> ids;
  for (const auto& p : j["prompts"]) {
    Prompt q;
    if (!p.is_object() || !p.contains("id") || !p["id"].is_string() || !p.contains("messages") || !p["messages"].is_array() ||
        p["messages"].empty())
      throw Error(cat(source, ": every prompt needs a string \"id\" and a non-empty \"messages\" list"));
    q.id = p["id"].get<std::string>();
    if (!ids.insert(q.id).second) throw Error(cat(source, ": prompt id '", q.id, "' appears twice"));
    q.messages = p["messages"];
    for (const auto& m : q.messages)
      if (!m.is_object() || !m.contains("role") || !m.contains("content"))
        throw Error(cat(source, ": prompt '", q.id, "': every message needs \"role\" and \"content\""));
    const ojson& last = q.messages.back()["content"];
    q.user_text = last.is_string() ? last.get<std::string>() : last.dump();
    q.tools = p.value("tools", ojson());
    if (p.contains("enable_thinking")) q.thinking = p["enable_thinking"].get<bool>();
    q.max_tokens = p.value("max_tokens", 256);
    if (q.max_tokens < 1) throw Error(cat(source, ": prompt '", q.id, "': max_tokens must be at least 1"));
    q.expect = p.value("expect", "");
    q.expect_tool = p.value("expect_tool", "");
    q.expect_reasoning = p.value("expect_reasoning", false);
    q.vision = p.value("vision", false);
    out.push_back(std::move(q));
  }
  return out;
}

bool contains_word(const std::string& hay, const std::string& word) {
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  const std::string h = lower(hay), w = lower(word);
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  for (size_t at = h.find(w); at != std::string::npos; at = h.find(w, at + 1)) {
    const bool left = at == 0 || !alnum(h[at - 1]), right = at + w.size() >= h.size() || !alnum(h[at + w.size()]);
    if (left && right) return true;
  }
  return false;
}

class Smoke {
 public:
  Smoke(const std::string& dir, const SmokeOptions& o, SmokeReport& r) : dir_(dir), o_(o), rep_(r) {}

  void run() {
    rep_.model_dir = dir_;
    rep_.ref_dir = o_.ref_dir;
    rep_.strict = o_.strict;
    machine();
    const std::vector<Prompt> prompts = o_.prompts_json.empty() ? parse_prompts(smoke_builtin_data(), "built-in prompt set")
                                                                : parse_prompts(o_.prompts_json, o_.prompts_source);
    const std::string text = o_.text.empty() ? builtin()["text"].get<std::string>() : o_.text;
    if (text.empty()) throw Error(cat(o_.text_source, ": the text is empty"));
    if (!structure()) return;
    state();
    generation(prompts);
    if (!o_.ref_dir.empty()) reference(prompts, text);
    speed();
  }

 private:
  static const ojson& builtin() {
    static const ojson j = ojson::parse(smoke_builtin_data());
    return j;
  }
  void log(const std::string& s) const {
    if (o_.log) o_.log(s);
  }
  void add(const std::string& section, const std::string& name, SmokeCheck::Status st, std::string figure,
           std::string threshold, bool behaviour = false, std::string detail = "") {
    rep_.checks.push_back({section, name, st, std::move(figure), std::move(threshold), behaviour, std::move(detail)});
  }
  void add(const std::string& section, const std::string& name, bool pass, std::string figure, std::string threshold,
           bool behaviour = false, std::string detail = "") {
    add(section, name, pass ? SmokeCheck::Pass : SmokeCheck::Fail, std::move(figure), std::move(threshold), behaviour,
        std::move(detail));
  }

  void machine() {
    std::string cpu = "unknown";
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
        cpu = line.substr(line.find(':') + 2);
        break;
      }
    utsname u{};
    std::string os = ::uname(&u) == 0 ? cat(u.sysname, " ", u.release, " ", u.machine) : "unknown";
    rep_.machine = {{"cpu", cpu},
                    {"cores", std::thread::hardware_concurrency()},
                    {"threads", num_threads()},
                    {"simd", quant_simd_target_name()},
                    {"os", os},
                    {"arithmetic", o_.load.exact  ? "fp32 activations (--exact)"
                                    : o_.load.int8 ? "int8 activations (--int8)"
                                                   : "int16 activations (default)"}};
  }

  // verify's checks, then loading. False when the model cannot be run at all.
  bool structure() {
    namespace fs = std::filesystem;
    if (!fs::is_regular_file(fs::path(dir_) / "config.json"))
      throw Error(cat(dir_, ": cannot read config.json (not a model folder)"));
    log("smoke: structure");
    const VerifyReport vr = verify_bundle(dir_);
    rep_.kind = vr.kind;
    for (const VerifyCheck& v : vr.checks) {
      std::string problems;
      for (size_t i = 0; i < v.problems.size() && i < 3; ++i) problems += (i ? "; " : "") + v.problems[i];
      add("structure", "structure." + slug(v.name),
          v.status == VerifyCheck::Pass ? SmokeCheck::Pass : v.status == VerifyCheck::Fail ? SmokeCheck::Fail : SmokeCheck::Skip,
          v.detail, "no problem", false, problems);
    }
    LoadOptions lo = o_.load;
    lo.verbose = false;
    try {
      model_ = Model::load(dir_, lo);
      const ModelConfig& c = model_->config();
      add("structure", "structure.load", true, cat(layout_name(c.layout), " layout, ", c.legacy_layers(), " layers, H ",
                                                   c.hidden, ", V ", c.vocab), "loads");
    } catch (const std::exception& e) {
      add("structure", "structure.load", false, e.what(), "loads");
      return false;
    }
    try {
      tok_ = std::make_unique<Tokenizer>(Tokenizer::load(dir_));
      fmt_ = std::make_unique<ChatFormatter>(*tok_);
      add("structure", "structure.tokenizer", true, cat(tok_->vocab_size(), " ids, chat template, eos ", tok_->eos_id()),
          "loads with a chat template");
    } catch (const std::exception& e) {
      add("structure", "structure.tokenizer", false, e.what(), "loads with a chat template");
      return false;
    }
    ids_ = tok_->encode(builtin()["text"].get<std::string>());
    const int64_t bos = tok_->bos_id() >= 0 ? tok_->bos_id() : model_->config().bos_token_id;
    ids_.insert(ids_.begin(), static_cast<int32_t>(std::max<int64_t>(bos, 0)));
    return true;
  }

  void state() {
    log("smoke: state contract");
    const Model& m = *model_;
    const std::span<const int32_t> ids = std::span(ids_).first(std::min<size_t>(48, ids_.size()));
    const size_t K = ids.size() / 2;
    {
      DecodeState a = m.new_state(), b = m.new_state();
      const std::vector<float> full = m.forward(ids, a, LogitsMode::All);
      std::vector<float> split = m.forward(ids.first(K), b, LogitsMode::All);
      for (size_t t = K; t < ids.size(); ++t) {
        auto row = m.forward(ids.subspan(t, 1), b, LogitsMode::All);
        split.insert(split.end(), row.begin(), row.end());
      }
      const double d = max_abs_diff(full, split);
      add("state", "state.prefill_decode", d <= kPrefillDecodeMax, "max |Δlogit| " + num("%.2e", d),
          "≤ " + num("%.0e", kPrefillDecodeMax), false,
          cat(ids.size(), " tokens: one forward pass vs a ", K, "-token prefill then one token at a time"));
    }
    {
      std::vector<int32_t> other(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(ids.size() * 2 / 3));
      std::reverse(other.begin() + 1, other.end());  // another sequence of another length, same <bos>
      std::vector<DecodeState> st = {m.new_state(), m.new_state()};
      std::vector<Model::BatchItem> items = {{ids.first(ids.size() - 1), &st[0], LogitsMode::All, {}},
                                             {other, &st[1], LogitsMode::All, {}}};
      m.forward_batch(items);
      std::vector<Model::BatchItem> step = {{ids.last(1), &st[0], LogitsMode::All, {}}};
      m.forward_batch(step);
      items[0].logits.insert(items[0].logits.end(), step[0].logits.begin(), step[0].logits.end());
      DecodeState a = m.new_state(), b = m.new_state();
      std::vector<float> alone0 = m.forward(ids.first(ids.size() - 1), a, LogitsMode::All);
      const auto last = m.forward(ids.last(1), a, LogitsMode::All);
      alone0.insert(alone0.end(), last.begin(), last.end());
      const double d = std::max(max_abs_diff(items[0].logits, alone0), max_abs_diff(items[1].logits, m.forward(other, b)));
      add("state", "state.batch", d <= kBatchMax, "max |Δlogit| " + num("%.2e", d), "≤ " + num("%.0e", kBatchMax), false,
          cat("sequences of ", ids.size(), " and ", other.size(), " tokens in one batch vs each alone"));
    }
    {
      DecodeState st = m.new_state();
      m.forward(ids.first(K), st, LogitsMode::None);
      const DecodeState snapshot = st;
      auto resume = [&](DecodeState s) {
        std::vector<float> out;
        for (size_t t = K; t < ids.size(); ++t) {
          auto row = m.forward(ids.subspan(t, 1), s, LogitsMode::All);
          out.insert(out.end(), row.begin(), row.end());
        }
        return out;
      };
      const auto first = resume(st);
      const double d = max_abs_diff(first, resume(snapshot));
      add("state", "state.snapshot_restore", d == 0.0 && first.size() == (ids.size() - K) * static_cast<size_t>(m.config().vocab),
          "max |Δlogit| " + num("%.2e", d), "= 0 (bitwise)", false,
          cat("state after ", K, " tokens copied, ", ids.size() - K, " decode steps from the original and from the copy"));
    }
  }

  GenerationResult generate(const Model& m, const std::vector<int32_t>& prompt, int max_tokens, bool greedy,
                            std::string* text) {
    Session s(m, tok_.get());
    GenerateOptions g;
    g.max_tokens = max_tokens;
    if (greedy) {
      g.sampling.temperature = 0;
    } else {
      SamplingParams base;
      base.temperature = 0.8f, base.top_k = 40, base.top_p = 0.95f, base.min_p = 0.05f;
      g.sampling = sampling_defaults(dir_, base);
      g.sampling.seed = o_.seed;
    }
    return s.complete(prompt, g, [&](const std::string& piece, int32_t) {
      if (text) *text += piece;
      return true;
    });
  }

  void generation(const std::vector<Prompt>& prompts) {
    for (const Prompt& p : prompts) {
      const std::string base = "generation." + p.id;
      if (p.vision) {
        add("generation", base, SmokeCheck::Skip, "text-only model", "image + text prompt", false,
            "image prompts run on VL models; this model has no vision tower");
        continue;
      }
      std::vector<int32_t> prompt;
      bool in_think = false;
      try {
        ChatRenderOptions ro;
        ro.enable_thinking = p.thinking;
        ro.tools = p.tools;
        const std::string rendered = fmt_->render(p.messages, ro);
        in_think = ChatFormatter::ends_inside_think(rendered);
        prompt = tok_->encode(rendered);
        if (static_cast<int64_t>(prompt.size()) >= model_->config().max_positions)
          throw Error(cat(prompt.size(), " prompt tokens do not fit the context of ", model_->config().max_positions));
      } catch (const std::exception& e) {
        add("generation", base + ".prompt", false, e.what(), "renders and fits the context");
        continue;
      }
      prompts_[p.id] = prompt;
      // A model with a short context gets the budget that fits.
      const int budget = static_cast<int>(std::min<int64_t>(p.max_tokens, model_->config().max_positions -
                                                                              static_cast<int64_t>(prompt.size())));
      for (bool greedy : {true, false}) {
        SmokeSample smp;
        smp.id = p.id;
        smp.mode = greedy ? "greedy" : cat("seeded (seed ", o_.seed, ")");
        smp.prompt = p.user_text;
        smp.max_tokens = static_cast<size_t>(budget);
        log(cat("smoke: generation ", p.id, " ", greedy ? "greedy" : "seeded"));
        const std::string name = base + (greedy ? ".greedy" : ".seeded");
        GenerationResult r;
        try {
          r = generate(*model_, prompt, budget, greedy, &smp.text);
        } catch (const std::exception& e) {
          add("generation", name + ".runs", false, e.what(), "generates");
          continue;
        }
        if (greedy) greedy_[p.id] = r.tokens;
        smp.tokens = r.tokens.size();
        smp.finish = finish_reason_name(r.finish);
        std::vector<int32_t> gen = r.tokens;
        if (r.stop_token >= 0 && !gen.empty()) gen.pop_back();
        smp.distinct4 = distinct_ngrams(gen, 4);
        OutputParserOptions po;
        po.start_in_reasoning = in_think;
        po.tools = p.tools.is_null() ? nlohmann::json() : nlohmann::json::parse(p.tools.dump());
        const ParsedOutput parsed = OutputParser::parse_full(smp.text, po);
        smp.reasoning = parsed.reasoning;
        smp.content = parsed.content;
        for (const auto& c : parsed.tool_calls) smp.tool_calls.push_back({{"name", c.name}, {"arguments", c.arguments}});
        const size_t bad = tok::utf8_first_invalid(smp.text);
        const size_t repl = smp.text.find(tok::kReplacementChar);
        add("generation", name + ".utf8", bad == std::string::npos && repl == std::string::npos,
            bad != std::string::npos ? cat("invalid byte at ", bad) : repl != std::string::npos ? cat("U+FFFD at byte ", repl)
                                                                                                 : cat(smp.text.size(), " bytes valid"),
            "valid UTF-8, no U+FFFD");
        add("generation", name + ".repetition", smp.distinct4 >= kDistinct4Min, "distinct 4-grams " + num("%.2f", smp.distinct4),
            "≥ " + num("%.2f", kDistinct4Min), true, cat(gen.size(), " tokens"));
        const bool stopped = r.finish == FinishReason::Stop && r.stop_token >= 0;
        add("generation", name + ".stop", stopped, cat(smp.finish, " after ", r.tokens.size(), " tokens"),
            cat("end token within ", budget), true);
        if (!p.expect.empty()) {
          const std::string where = parsed.content.empty() ? smp.text : parsed.content;
          add("generation", name + ".expected_answer", contains_word(where, p.expect), cat("answer: \"", where.substr(0, 80), "\""),
              cat("contains \"", p.expect, "\""), true);
        }
        if (p.expect_reasoning)
          add("generation", name + ".reasoning", !parsed.reasoning.empty() && !parsed.content.empty(),
              cat(parsed.reasoning.size(), " bytes of reasoning, ", parsed.content.size(), " bytes of answer"),
              "closed <think> block and an answer", true);
        if (!p.expect_tool.empty()) {
          const bool ok = parsed.errors.empty() && !parsed.tool_calls.empty() && parsed.tool_calls[0].name == p.expect_tool;
          add("generation", name + ".tool_call", ok,
              parsed.tool_calls.empty() ? cat("no tool call", parsed.errors.empty() ? "" : ": " + parsed.errors[0])
                                        : cat("call ", parsed.tool_calls[0].name, " ", parsed.tool_calls[0].arguments.dump()),
              cat("parses, calls ", p.expect_tool), true);
        }
        rep_.samples.push_back(std::move(smp));
      }
    }
  }

  void reference(const std::vector<Prompt>& prompts, const std::string& text) {
    log("smoke: reference");
    LoadOptions lo = o_.load;
    lo.verbose = false;
    std::unique_ptr<Model> ref;
    try {
      ref = Model::load(o_.ref_dir, lo);
    } catch (const std::exception& e) {
      add("reference", "reference.load", false, e.what(), "loads");
      return;
    }
    if (ref->config().vocab != model_->config().vocab) {
      add("reference", "reference.compatible", false, cat("vocab ", ref->config().vocab, " vs ", model_->config().vocab),
          "same vocabulary");
      return;
    }
    const std::vector<int32_t> ids = perplexity_tokens(*tok_, text, o_.text_source);
    PerplexityOptions po;
    po.ctx = std::min<int64_t>({256, static_cast<int64_t>(ids.size()) + 1, model_->config().max_positions,
                                ref->config().max_positions});
    if (tok_->bos_id() >= 0) po.bos_id = tok_->bos_id();
    const PerplexityResult r = evaluate_perplexity(*model_, ids, po, ref.get());
    const KldStats& k = *r.kld;
    const std::string over = cat(o_.text_source, ": ", r.tokens, " tokens, ", r.windows, " windows of ", r.ctx);
    add("reference", "reference.kld_mean", k.mean <= kKldMeanMax, "KLD mean " + num("%.5f", k.mean),
        "≤ " + num("%.2f", kKldMeanMax), false, over + cat(", p99 ", num("%.4f", k.p99), ", max ", num("%.3f", k.max)));
    add("reference", "reference.top1_agree", k.top1_agree >= kTop1Min, "top-1 agreement " + num("%.2f %%", 100 * k.top1_agree),
        "≥ " + num("%.0f %%", 100 * kTop1Min), false, over);
    add("reference", "reference.ppl_ratio", k.ppl_ratio <= kPplRatioMax,
        cat("PPL ", num("%.4f", r.ppl), " / ", num("%.4f", k.ppl_ref), " = ", num("%.4f", k.ppl_ratio)),
        "≤ " + num("%.2f", kPplRatioMax), false, over);
    // The reference's greedy continuation of each prompt, scored teacher-forced: one early disagreement does not
    // cascade into a different continuation.
    size_t agree = 0, total = 0, prefix = 0, prefix_total = 0;
    const size_t V = static_cast<size_t>(model_->config().vocab);
    for (const Prompt& p : prompts) {
      auto it = prompts_.find(p.id);
      if (it == prompts_.end()) continue;
      const int len = static_cast<int>(std::min<int64_t>({p.max_tokens, kRefContinuation,
                                                        ref->config().max_positions - static_cast<int64_t>(it->second.size()),
                                                        model_->config().max_positions - static_cast<int64_t>(it->second.size())}));
      if (len < 1) continue;
      const GenerationResult g = generate(*ref, it->second, len, true, nullptr);
      if (g.tokens.empty()) continue;
      std::vector<int32_t> seq = it->second;
      seq.insert(seq.end(), g.tokens.begin(), g.tokens.end() - 1);
      DecodeState st = model_->new_state();
      model_->forward(std::span(seq).first(it->second.size() - 1), st, LogitsMode::None);
      const auto logits = model_->forward(std::span(seq).subspan(it->second.size() - 1), st, LogitsMode::All);
      for (size_t i = 0; i < g.tokens.size(); ++i) agree += argmax(&logits[i * V], V) == static_cast<size_t>(g.tokens[i]);
      total += g.tokens.size();
      const auto& mine = greedy_[p.id];
      size_t n = 0;
      while (n < mine.size() && n < g.tokens.size() && mine[n] == g.tokens[n]) ++n;
      prefix += n, prefix_total += g.tokens.size();
    }
    const double frac = total ? static_cast<double>(agree) / static_cast<double>(total) : 0;
    add("reference", "reference.greedy_agreement", total > 0 && frac >= kGreedyAgreeMin,
        cat("top-1 on the reference's greedy tokens ", num("%.2f %%", 100 * frac), " (", agree, "/", total, ")"),
        "≥ " + num("%.0f %%", 100 * kGreedyAgreeMin), false,
        cat("free-running greedy: ", prefix, " of ", prefix_total, " tokens identical before the first difference"));
  }

  void speed() {
    log("smoke: speed");
    const Model& m = *model_;
    const size_t n = std::min<size_t>({ids_.size(), 128, static_cast<size_t>(m.config().max_positions) - 33});
    DecodeState st = m.new_state();
    auto t0 = clock_type::now();
    auto last = m.forward(std::span(ids_).first(n), st, LogitsMode::Last);
    const double pp = static_cast<double>(n) / std::max(seconds_since(t0), 1e-9);
    t0 = clock_type::now();
    const size_t V = static_cast<size_t>(m.config().vocab);
    for (int i = 0; i < 32; ++i) {
      const int32_t next = static_cast<int32_t>(argmax(last.data(), V));
      last = m.forward(std::span(&next, 1), st, LogitsMode::Last);
    }
    const double tg = 32.0 / std::max(seconds_since(t0), 1e-9);
    rep_.prompt_tok_s = pp;
    rep_.gen_tok_s = tg;
    const std::string threads = cat(num_threads(), " threads");
    add("speed", "speed.prompt", std::isfinite(pp) && pp > 0, num("%.1f tok/s", pp), "> 0", false, cat("pp", n, ", ", threads));
    add("speed", "speed.generation", std::isfinite(tg) && tg > 0, num("%.1f tok/s", tg), "> 0", false, cat("tg32, ", threads));
  }

  std::string dir_;
  const SmokeOptions& o_;
  SmokeReport& rep_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<ChatFormatter> fmt_;
  std::vector<int32_t> ids_;  // <bos> + the built-in text
  std::map<std::string, std::vector<int32_t>> prompts_, greedy_;
};

}  // namespace

SmokeReport run_smoke(const std::string& model_dir, const SmokeOptions& opts) {
  SmokeReport rep;
  Smoke(model_dir, opts, rep).run();
  return rep;
}

}  // namespace zaya
