// The smoke report as markdown (what a model card cites) and as JSON.
#include <cstdio>

#include "zaya/error.h"
#include "zaya/smoke.h"

namespace zaya {

namespace {

using ojson = nlohmann::ordered_json;

bool deciding(const SmokeCheck& c, bool strict) { return !c.behaviour || strict; }

const char* status_word(SmokeCheck::Status s) {
  return s == SmokeCheck::Pass ? "PASS" : s == SmokeCheck::Fail ? "FAIL" : "SKIP";
}

std::string status_cell(const SmokeCheck& c, bool strict) {
  std::string s = c.status == SmokeCheck::Fail ? "**FAIL**" : status_word(c.status);
  if (c.behaviour) s += strict ? " (behaviour)" : " (behaviour, not deciding)";
  return s;
}

// A table cell: no newlines, pipes escaped.
std::string cell(std::string s) {
  std::string out;
  for (char ch : s) {
    if (ch == '\n' || ch == '\r') out += ' ';
    else if (ch == '|') out += "\\|";
    else out += ch;
  }
  return out;
}

// A fenced block that the text cannot close early.
std::string fenced(const std::string& text) {
  std::string fence = "~~~";
  while (text.find(fence) != std::string::npos) fence += '~';
  return fence + "text\n" + text + (text.empty() || text.back() != '\n' ? "\n" : "") + fence + "\n";
}

const char* kSections[][2] = {{"structure", "Structure"}, {"state", "State contract"}, {"generation", "Generation"},
                              {"reference", "Reference comparison"}, {"speed", "Speed"}};

}  // namespace

bool SmokeReport::ok() const { return failed().empty(); }

std::vector<std::string> SmokeReport::failed() const {
  std::vector<std::string> out;
  for (const auto& c : checks)
    if (c.status == SmokeCheck::Fail && deciding(c, strict)) out.push_back(c.name);
  return out;
}

std::string SmokeReport::markdown() const {
  std::string md = "# zaya smoke report\n\n";
  size_t n_deciding = 0, n_behaviour = 0, behaviour_pass = 0;
  for (const auto& c : checks) {
    if (deciding(c, strict) && c.status != SmokeCheck::Skip) ++n_deciding;
    if (c.behaviour) ++n_behaviour, behaviour_pass += c.status == SmokeCheck::Pass;
  }
  const auto bad = failed();
  std::string result = ok() ? cat("**PASS**: ", n_deciding, " deciding checks, none failed")
                            : cat("**FAIL**: ", bad.size(), " of ", n_deciding, " deciding checks failed (");
  if (!ok()) {
    for (size_t i = 0; i < bad.size(); ++i) result += (i ? ", " : "") + ("`" + bad[i] + "`");
    result += ")";
  }
  md += "| | |\n|---|---|\n";
  md += "| model | `" + cell(model_dir) + "` (" + cell(kind) + ") |\n";
  md += "| reference | ";
  md += ref_dir.empty() ? std::string("none (no `--ref`)") : cat("`", cell(ref_dir), "`");
  md += " |\n";
  md += "| result | " + result + " |\n";
  md += cat("| behaviour checks | ", behaviour_pass, " of ", n_behaviour, " pass; ",
            strict ? "they decide the result (`--strict`)" : "reported, deciding only with `--strict`", " |\n");
  if (!machine.is_null())
    md += cat("| machine | ", cell(machine.value("cpu", "")), ", ", machine.value("cores", 0u), " logical cores, ",
              machine.value("threads", 0u), " threads, SIMD ", machine.value("simd", ""), ", ", machine.value("os", ""),
              "; ", machine.value("arithmetic", ""), " |\n");
  char sp[96];
  std::snprintf(sp, sizeof sp, "prompt %.1f tok/s, generation %.1f tok/s", prompt_tok_s, gen_tok_s);
  md += std::string("| speed | ") + sp + " |\n";
  for (const auto& sec : kSections) {
    bool any = false;
    for (const auto& c : checks) any |= c.section == sec[0];
    if (!any) continue;
    md += std::string("\n## ") + sec[1] + "\n\n| check | result | figure | threshold | detail |\n|---|---|---|---|---|\n";
    for (const auto& c : checks)
      if (c.section == sec[0])
        md += "| `" + c.name + "` | " + status_cell(c, strict) + " | " + cell(c.figure) + " | " + cell(c.threshold) +
              " | " + cell(c.detail) + " |\n";
    if (std::string(sec[0]) == "generation" && !samples.empty()) {
      md += "\n### Samples\n";
      for (const auto& s : samples) {
        md += cat("\n#### ", s.id, ": ", s.mode, "\n\n> ", cell(s.prompt), "\n\n", s.finish, " after ", s.tokens, " of ",
                  s.max_tokens, " tokens; distinct 4-grams ");
        char d[32];
        std::snprintf(d, sizeof d, "%.2f", s.distinct4);
        md += d;
        md += "\n\n";
        if (!s.reasoning.empty()) md += "Reasoning:\n\n" + fenced(s.reasoning) + "\nAnswer:\n\n";
        md += fenced(s.content.empty() && s.reasoning.empty() ? s.text : s.content);
        for (const auto& t : s.tool_calls) md += "\nTool call: `" + cell(t.dump()) + "`\n";
      }
    }
  }
  return md;
}

ojson SmokeReport::json() const {
  ojson j;
  j["model"] = model_dir;
  j["reference"] = ref_dir.empty() ? ojson() : ojson(ref_dir);
  j["kind"] = kind;
  j["ok"] = ok();
  j["strict"] = strict;
  j["failed"] = failed();
  j["machine"] = machine;
  j["speed"] = {{"prompt_tok_s", prompt_tok_s}, {"gen_tok_s", gen_tok_s}};
  j["checks"] = ojson::array();
  for (const auto& c : checks)
    j["checks"].push_back({{"section", c.section}, {"name", c.name}, {"status", status_word(c.status)},
                           {"figure", c.figure}, {"threshold", c.threshold}, {"behaviour", c.behaviour},
                           {"detail", c.detail}});
  j["samples"] = ojson::array();
  for (const auto& s : samples)
    j["samples"].push_back({{"id", s.id}, {"mode", s.mode}, {"prompt", s.prompt}, {"text", s.text},
                            {"reasoning", s.reasoning}, {"content", s.content}, {"tool_calls", s.tool_calls},
                            {"finish", s.finish}, {"tokens", s.tokens}, {"max_tokens", s.max_tokens},
                            {"distinct4", s.distinct4}});
  return j;
}

}  // namespace zaya
