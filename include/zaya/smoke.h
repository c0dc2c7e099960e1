#pragma once
// `zaya smoke`: the runtime smoke test and coherence report a model card's "smoke tests" section cites. Sections,
// each a list of named checks with the figure that decided them and the threshold (docs/smoke.md):
//   structure  what `zaya verify` checks (formats, coverage, shapes, sidecar), and that the model loads;
//   state      prefill-then-decode equals the full forward pass, a batch of two equals each alone, a snapshot of
//              the decode state resumes identically;
//   generation greedy and seeded generations through the model's chat template for a prompt set (a data file);
//   reference  (with a reference model) KL divergence / top-1 agreement / PPL ratio on a text, and agreement with
//              the reference's greedy continuations of the prompt set;
//   speed      prompt and generation tokens per second on this machine.
// Checks that measure what a model has learned (expected answers, stopping on the end token, parsable reasoning
// and tool calls, no runaway repetition) are "behaviour" checks: always reported, deciding the result only under
// `strict` (what one runs on the real 8B; a 1 M-parameter test model cannot know them). Every other check always
// decides. Nothing throws on a broken bundle: a bundle that does not load fails the structure section by name.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "zaya/model.h"

namespace zaya {

struct SmokeCheck {
  enum Status { Pass, Fail, Skip };
  std::string section;    // structure, state, generation, reference, speed
  std::string name;       // e.g. "state.prefill_decode", "generation.capital.greedy.expected_answer"
  Status status = Pass;
  std::string figure;     // what decided it, e.g. "max |Δlogit| 3.1e-06"
  std::string threshold;  // e.g. "≤ 1e-03"
  bool behaviour = false; // decides the result only under strict
  std::string detail;
};

// One generation of the prompt set.
struct SmokeSample {
  std::string id, mode;  // prompt id; "greedy" or "seeded (seed S, temperature T)"
  std::string prompt;    // the user text
  std::string text;      // everything generated (special tokens skipped)
  std::string reasoning, content;
  nlohmann::ordered_json tool_calls = nlohmann::ordered_json::array();
  std::string finish;    // stop / length
  size_t tokens = 0, max_tokens = 0;
  double distinct4 = 1;  // distinct 4-grams / 4-grams of the generated ids
};

struct SmokeOptions {
  std::string ref_dir;       // reference model (e.g. the float source of a bundle); empty: no reference section
  std::string prompts_json;  // prompt set (JSON text, the shape of src/eval/smoke_data.json); empty: built-in
  std::string prompts_source = "prompt file";  // its name in error messages
  std::string text;          // text for the reference comparison; empty: the built-in one
  std::string text_source = "built-in text";
  bool strict = false;
  LoadOptions load;          // for the model and the reference (verbose is ignored)
  uint64_t seed = 1234;      // the seeded generations
  // Progress lines (to stderr in the CLI); may be empty.
  std::function<void(const std::string&)> log;
};

struct SmokeReport {
  std::string model_dir, ref_dir, kind;  // kind: what verify calls the folder
  bool strict = false;
  nlohmann::ordered_json machine;        // cpu, cores, threads, simd, os
  std::vector<SmokeCheck> checks;
  std::vector<SmokeSample> samples;
  double prompt_tok_s = 0, gen_tok_s = 0;
  // True when every deciding check passed (skips do not fail; behaviour checks decide only under strict).
  bool ok() const;
  std::vector<std::string> failed() const;  // names of the deciding checks that failed
  std::string markdown() const;
  nlohmann::ordered_json json() const;
};

// Runs every section on the model folder. Throws zaya::Error only for bad input (no config.json, a prompt file or
// text that cannot be used); every problem of the model itself becomes a failed check.
SmokeReport run_smoke(const std::string& model_dir, const SmokeOptions& opts);

// The built-in data file (prompt set and text), as JSON text.
const std::string& smoke_builtin_data();

}  // namespace zaya
