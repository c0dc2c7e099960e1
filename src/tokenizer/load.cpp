// Loading tokenizer.json (+ side files). The 33 MB Gemma 3 file is parsed with a SAX handler that streams
// model.vocab and model.merges straight into flat vectors (a full DOM of them costs ~4x the parse time) and
// builds an ordinary nlohmann DOM for everything else.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "tokenizer/internal.h"
#include "util/json_limits.h"
#include "zaya/error.h"
#include "zaya/limits.h"

namespace zaya {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using tok::AddedToken;
using tok::DecStep;
using tok::NormStep;
using tok::PreStep;

std::string slurp(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(cat("tokenizer: cannot open ", path));
  std::string data;
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (size > 0) {
    data.resize(std::size_t(size));
    const std::size_t got = std::fread(data.data(), 1, data.size(), f);
    data.resize(got);
  }
  std::fclose(f);
  return data;
}

json parse_file(const std::string& path) {
  const std::string data = slurp(path);
  check_json_depth(data, cat("tokenizer: ", path));
  try {
    return json::parse(data);
  } catch (const json::exception& e) {
    throw Error(cat("tokenizer: invalid JSON in ", path, ": ", e.what()));
  }
}

class TokenizerSax final : public nlohmann::json_sax<json> {
 public:
  explicit TokenizerSax(std::string path) : path_(std::move(path)) {}

  json root;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool vocab_seen = false, merges_seen = false;

  bool null() override { return mode_ == Mode::Dom ? add(json()) : bad("null"); }
  bool boolean(bool v) override { return mode_ == Mode::Dom ? add(json(v)) : bad("boolean"); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == Mode::Vocab) {
      vocab.emplace_back(std::move(key_), v);
      return true;
    }
    return mode_ == Mode::Dom ? add(json(v)) : bad("number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == Mode::Vocab) {
      vocab.emplace_back(std::move(key_), int64_t(v));
      return true;
    }
    return mode_ == Mode::Dom ? add(json(v)) : bad("number");
  }
  bool number_float(number_float_t v, const string_t&) override {
    return mode_ == Mode::Dom ? add(json(v)) : bad("number");
  }
  bool string(string_t& v) override {
    if (mode_ == Mode::Merges) {
      if (merge_depth_ == 1) {
        pair_.push_back(std::move(v));
        return true;
      }
      // Legacy "a b" form: the first space separates the two parts.
      const std::size_t sp = v.find(' ');
      if (sp == std::string::npos) throw Error(cat("tokenizer: ", path_, ": malformed merge '", v, "'"));
      merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
      return true;
    }
    return mode_ == Mode::Dom ? add(json(std::move(v))) : bad("string");
  }
  bool binary(binary_t&) override { return bad("binary"); }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::Dom) return bad("object");
    if (in_model() && key_ == "vocab") {
      mode_ = Mode::Vocab;
      vocab_seen = true;
      vocab.reserve(1 << 18);
      return true;
    }
    return open(json::object());
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Dom;
      return true;
    }
    stack_.pop_back();
    frame_keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::Merges) {
      if (merge_depth_ != 0) return bad("nested array");
      merge_depth_ = 1;
      pair_.clear();
      return true;
    }
    if (mode_ == Mode::Vocab) return bad("array");
    if (in_model() && key_ == "merges") {
      mode_ = Mode::Merges;
      merges_seen = true;
      merges.reserve(1 << 19);
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::Merges) {
      if (merge_depth_ == 1) {
        if (pair_.size() != 2) throw Error(cat("tokenizer: ", path_, ": a merge must be a pair of strings"));
        merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
        merge_depth_ = 0;
      } else {
        mode_ = Mode::Dom;
      }
      return true;
    }
    stack_.pop_back();
    frame_keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    throw Error(cat("tokenizer: invalid JSON in ", path_, ": ", ex.what()));
  }

 private:
  enum class Mode { Dom, Vocab, Merges };

  bool in_model() const { return stack_.size() == 2 && frame_keys_[1] == "model" && stack_[1]->is_object(); }

  bool bad(const char* what) {
    throw Error(cat("tokenizer: ", path_, ": unexpected ", what, " in model.",
                    mode_ == Mode::Vocab ? "vocab (expected token -> id)" : "merges"));
  }
  json* place(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool add(json v) {
    place(std::move(v));
    return true;
  }
  bool open(json v) {
    // The DOM part is walked recursively (Sequence normalizers, decoders, ...): bound its depth while parsing.
    if (stack_.size() >= static_cast<std::size_t>(limits::kMaxJsonDepth))
      throw Error(cat("tokenizer: ", path_, ": JSON nested deeper than ", limits::kMaxJsonDepth,
                      " levels (zaya::limits::kMaxJsonDepth)"));
    const bool in_array = !stack_.empty() && stack_.back()->is_array();
    std::string k = in_array || stack_.empty() ? std::string() : key_;
    stack_.push_back(place(std::move(v)));
    frame_keys_.push_back(std::move(k));
    return true;
  }

  std::string path_;
  std::vector<json*> stack_;
  std::vector<std::string> frame_keys_;
  std::string key_;
  Mode mode_ = Mode::Dom;
  int merge_depth_ = 0;
  std::vector<std::string> pair_;
};

const json* member(const json& j, const char* name) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

// An integer JSON value that is a token id zaya can hold: [0, kMaxVocab), whatever its JSON integer kind.
bool token_id_ok(const json& x) {
  if (x.is_number_unsigned()) return x.get<uint64_t>() < uint64_t(limits::kMaxVocab);
  return x.is_number_integer() && x.get<int64_t>() >= 0 && x.get<int64_t>() < limits::kMaxVocab;
}

bool get_bool(const json& j, const char* name, bool dflt) {
  const json* m = member(j, name);
  return m && m->is_boolean() ? m->get<bool>() : dflt;
}

std::string get_string(const json& j, const char* name, const std::string& dflt = {}) {
  const json* m = member(j, name);
  return m && m->is_string() ? m->get<std::string>() : dflt;
}

std::string type_of(const json& j) { return get_string(j, "type"); }

// Pattern of Replace / Split: {"String": s} is supported; {"Regex": r} is not.
std::string string_pattern(const json& j, const std::string& where, const std::string& src) {
  const json* p = member(j, "pattern");
  if (p && p->is_object()) {
    if (const json* s = member(*p, "String"); s && s->is_string()) return s->get<std::string>();
    if (member(*p, "Regex"))
      throw Error(cat("tokenizer: ", src, ": ", where, " with a Regex pattern is not supported"));
  }
  throw Error(cat("tokenizer: ", src, ": ", where, " has no string pattern"));
}

void parse_normalizer(const json& j, const std::string& src, std::vector<NormStep>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(j);
  if (t == "Sequence") {
    if (const json* seq = member(j, "normalizers"); seq && seq->is_array())
      for (const json& n : *seq) parse_normalizer(n, src, out);
  } else if (t == "Replace") {
    out.push_back({NormStep::Kind::Replace, string_pattern(j, "normalizer Replace", src), get_string(j, "content")});
  } else if (t == "Prepend") {
    out.push_back({NormStep::Kind::Prepend, get_string(j, "prepend"), {}});
  } else if (t == "Strip") {
    NormStep s{NormStep::Kind::Strip, {}, {}};
    s.left = get_bool(j, "strip_left", false);
    s.right = get_bool(j, "strip_right", false);
    out.push_back(s);
  } else {
    throw Error(cat("tokenizer: ", src, ": unsupported normalizer type '", t, "'"));
  }
}

PreStep::Prepend prepend_scheme(const json& j) {
  const std::string s = get_string(j, "prepend_scheme");
  if (s == "first") return PreStep::Prepend::First;
  if (s == "never") return PreStep::Prepend::Never;
  if (s.empty() && !get_bool(j, "add_prefix_space", true)) return PreStep::Prepend::Never;  // legacy form
  return PreStep::Prepend::Always;
}

void parse_pre_tokenizer(const json& j, const std::string& src, std::vector<PreStep>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(j);
  if (t == "Sequence") {
    if (const json* seq = member(j, "pretokenizers"); seq && seq->is_array())
      for (const json& p : *seq) parse_pre_tokenizer(p, src, out);
  } else if (t == "Split") {
    PreStep s;
    s.kind = PreStep::Kind::Split;
    s.pattern = string_pattern(j, "pre_tokenizer Split", src);
    if (s.pattern.empty()) throw Error(cat("tokenizer: ", src, ": pre_tokenizer Split has an empty pattern"));
    const std::string b = get_string(j, "behavior");
    using B = PreStep::Behavior;
    if (b == "Removed") s.behavior = B::Removed;
    else if (b == "Isolated") s.behavior = B::Isolated;
    else if (b == "MergedWithPrevious") s.behavior = B::MergedWithPrevious;
    else if (b == "MergedWithNext") s.behavior = B::MergedWithNext;
    else if (b == "Contiguous") s.behavior = B::Contiguous;
    else throw Error(cat("tokenizer: ", src, ": unsupported Split behavior '", b, "'"));
    s.invert = get_bool(j, "invert", false);
    out.push_back(std::move(s));
  } else if (t == "Metaspace") {
    PreStep s;
    s.kind = PreStep::Kind::Metaspace;
    s.replacement = get_string(j, "replacement", "\xE2\x96\x81");
    s.prepend = prepend_scheme(j);
    s.split = get_bool(j, "split", true);
    out.push_back(std::move(s));
  } else {
    throw Error(cat("tokenizer: ", src, ": unsupported pre_tokenizer type '", t, "'"));
  }
}

void parse_decoder(const json& j, const std::string& src, std::vector<DecStep>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(j);
  DecStep d{};
  if (t == "Sequence") {
    if (const json* seq = member(j, "decoders"); seq && seq->is_array())
      for (const json& x : *seq) parse_decoder(x, src, out);
    return;
  } else if (t == "Replace") {
    d.kind = DecStep::Kind::Replace;
    d.a = string_pattern(j, "decoder Replace", src);
    d.b = get_string(j, "content");
  } else if (t == "ByteFallback") {
    d.kind = DecStep::Kind::ByteFallback;
  } else if (t == "Fuse") {
    d.kind = DecStep::Kind::Fuse;
  } else if (t == "Strip") {
    d.kind = DecStep::Kind::Strip;
    d.a = get_string(j, "content", " ");
    const json* s = member(j, "start");
    const json* e = member(j, "stop");
    d.start = s && s->is_number_unsigned() ? s->get<std::size_t>() : 0;
    d.stop = e && e->is_number_unsigned() ? e->get<std::size_t>() : 0;
  } else if (t == "Metaspace") {
    d.kind = DecStep::Kind::Metaspace;
    d.a = get_string(j, "replacement", "\xE2\x96\x81");
    d.prepend = prepend_scheme(j) != PreStep::Prepend::Never;
  } else {
    throw Error(cat("tokenizer: ", src, ": unsupported decoder type '", t, "'"));
  }
  out.push_back(std::move(d));
}

void parse_post(const json& j, const std::string& src, Tokenizer::Impl& im) {
  if (j.is_null()) return;
  const std::string t = type_of(j);
  if (t == "Sequence") {
    if (const json* seq = member(j, "processors"); seq && seq->is_array())
      for (const json& p : *seq) parse_post(p, src, im);
  } else if (t == "ByteLevel") {
    // Only adjusts offsets; ids are unchanged.
  } else if (t == "TemplateProcessing") {
    if (im.has_post) throw Error(cat("tokenizer: ", src, ": more than one TemplateProcessing is not supported"));
    const json* single = member(j, "single");
    const json* specials = member(j, "special_tokens");
    if (!single || !single->is_array())
      throw Error(cat("tokenizer: ", src, ": TemplateProcessing without a 'single' template"));
    for (const json& item : *single) {
      tok::TemplateItem ti;
      if (const json* seq = member(item, "Sequence")) {
        if (get_string(*seq, "id") != "A")
          throw Error(cat("tokenizer: ", src, ": TemplateProcessing single template uses sequence B"));
        ti.is_sequence = true;
      } else if (const json* sp = member(item, "SpecialToken")) {
        const std::string id = get_string(*sp, "id");
        const json* def = specials ? member(*specials, id.c_str()) : nullptr;
        const json* ids = def ? member(*def, "ids") : nullptr;
        if (!ids || !ids->is_array())
          throw Error(cat("tokenizer: ", src, ": TemplateProcessing special token '", id, "' has no ids"));
        for (const json& x : *ids) {
          if (!x.is_number_integer() || !token_id_ok(x) || x.get<int64_t>() >= int64_t(im.id_to_token.size()))
            throw Error(cat("tokenizer: ", src, ": TemplateProcessing special token '", id, "' id ", x.dump(),
                            " is not in the vocabulary [0, ", im.id_to_token.size(), ")"));
          ti.ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
        }
      } else {
        throw Error(cat("tokenizer: ", src, ": malformed TemplateProcessing item ", item.dump()));
      }
      im.post.push_back(std::move(ti));
    }
    im.has_post = true;
  } else {
    throw Error(cat("tokenizer: ", src, ": unsupported post_processor type '", t, "'"));
  }
}

// Special-token field of tokenizer_config.json / special_tokens_map.json: a string or {"content": ...}.
std::string special_field(const json& j, const char* name) {
  const json* m = member(j, name);
  if (!m) return {};
  if (m->is_string()) return m->get<std::string>();
  if (m->is_object()) return get_string(*m, "content");
  return {};
}

// An integer id of generation_config.json (or a list of them), each checked against the vocabulary.
std::vector<int32_t> id_list(const json& j, const char* name, const std::string& file, std::size_t vocab) {
  std::vector<int32_t> out;
  const json* m = member(j, name);
  if (!m) return out;
  auto add = [&](const json& x) {
    if (!x.is_number_integer()) throw Error(cat("tokenizer: ", file, ": ", name, " must be an integer or a list of integers"));
    if (!token_id_ok(x) || x.get<int64_t>() >= int64_t(vocab))
      throw Error(cat("tokenizer: ", file, ": ", name, " ", x.dump(), " is not in the vocabulary [0, ", vocab, ")"));
    out.push_back(static_cast<int32_t>(x.get<int64_t>()));
  };
  if (m->is_array())
    for (const json& x : *m) add(x);
  else
    add(*m);
  return out;
}

void build_model(Tokenizer::Impl& im, TokenizerSax& sax) {
  const std::string& src = im.source;
  const json& root = sax.root;
  if (!root.is_object()) throw Error(cat("tokenizer: ", src, ": top level is not a JSON object"));
  const json* model = member(root, "model");
  if (!model) throw Error(cat("tokenizer: ", src, ": no 'model'"));
  const std::string type = type_of(*model);
  if (type != "BPE" && !(type.empty() && sax.merges_seen))
    throw Error(cat("tokenizer: ", src, ": unsupported model type '", type, "' (only BPE is supported)"));
  if (!sax.vocab_seen)
    throw Error(cat("tokenizer: ", src, member(*model, "vocab") ? ": model.vocab must be an object (token -> id)"
                                                                : ": model.vocab is missing"));
  // A merges list the SAX handler did not take (an object, a string, ...) would silently mean "no merges".
  if (const json* m = member(*model, "merges"))
    throw Error(cat("tokenizer: ", src, ": model.merges must be a list of merges, got ", m->type_name()));
  if (!get_string(*model, "continuing_subword_prefix").empty() || !get_string(*model, "end_of_word_suffix").empty())
    throw Error(cat("tokenizer: ", src, ": BPE continuing_subword_prefix / end_of_word_suffix are not supported"));
  if (const json* d = member(*model, "dropout"); d && d->is_number() && d->get<double>() > 0.0)
    throw Error(cat("tokenizer: ", src, ": BPE dropout is not supported"));
  im.byte_fallback = get_bool(*model, "byte_fallback", false);
  im.fuse_unk = get_bool(*model, "fuse_unk", false);
  im.ignore_merges = get_bool(*model, "ignore_merges", false);

  // Added tokens.
  if (const json* at = member(root, "added_tokens"); at && at->is_array()) {
    for (const json& a : *at) {
      AddedToken t;
      t.content = get_string(a, "content");
      const json* id = member(a, "id");
      if (t.content.empty() || !id || !id->is_number_integer())
        throw Error(cat("tokenizer: ", src, ": malformed added token ", a.dump()));
      if (!token_id_ok(*id))
        throw Error(cat("tokenizer: ", src, ": added token '", t.content, "' has id ", id->dump(),
                        " outside [0, ", limits::kMaxVocab, ") (zaya::limits::kMaxVocab)"));
      t.id = static_cast<int32_t>(id->get<int64_t>());
      t.special = get_bool(a, "special", false);
      t.lstrip = get_bool(a, "lstrip", false);
      t.rstrip = get_bool(a, "rstrip", false);
      t.single_word = get_bool(a, "single_word", false);
      t.normalized = get_bool(a, "normalized", !t.special);
      im.added.push_back(std::move(t));
    }
  }

  // Vocabulary: strings move into id_to_token; the maps hold views of them.
  int64_t max_id = -1;
  for (const auto& [s, id] : sax.vocab) {
    if (id < 0 || id >= limits::kMaxVocab)
      throw Error(cat("tokenizer: ", src, ": model.vocab id ", id, " for '", s, "' is outside [0, ", limits::kMaxVocab,
                      ") (zaya::limits::kMaxVocab)"));
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& t : im.added) max_id = std::max<int64_t>(max_id, t.id);
  im.id_to_token.resize(std::size_t(max_id + 1));
  im.special.assign(std::size_t(max_id + 1), 0);
  im.model_vocab.reserve(sax.vocab.size());
  for (auto& [s, id] : sax.vocab) {
    std::string& slot = im.id_to_token[std::size_t(id)];
    if (!slot.empty() && slot != s) {
      // Two strings for one id: keep the first as the id's text; the other still maps to the id.
      im.extra_strings.push_back(std::move(s));
      im.model_vocab.set(im.extra_strings.back(), int32_t(id));
      continue;
    }
    slot = std::move(s);
    im.model_vocab.set(slot, int32_t(id));
  }
  sax.vocab.clear();
  sax.vocab.shrink_to_fit();
  for (std::size_t i = 0; i < im.added.size(); ++i) {
    const AddedToken& t = im.added[i];
    std::string& slot = im.id_to_token[std::size_t(t.id)];
    std::string_view view;
    if (slot.empty()) {
      slot = t.content;
      view = slot;
    } else if (slot == t.content) {
      view = slot;
    } else {
      // The added token's text wins for id -> token, as in HF (its view stays in extra_strings).
      im.extra_strings.push_back(t.content);
      view = im.extra_strings.back();
      im.extra_strings.push_back(slot);
      // Re-point the model vocab key at the copy before the slot's text changes.
      if (const int32_t v = im.model_vocab.find(slot); v >= 0) im.model_vocab.set(im.extra_strings.back(), v);
      slot = t.content;
    }
    im.added_vocab[view] = t.id;
    if (t.special) im.special[std::size_t(t.id)] = 1;
  }

  // unk / byte tokens / ASCII cache, looked up by string in the model vocab.
  const std::string unk = get_string(*model, "unk_token");
  if (!unk.empty()) {
    im.unk = im.model_vocab.find(unk);
    if (im.unk < 0) throw Error(cat("tokenizer: ", src, ": unk_token '", unk, "' not in vocab"));
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    im.byte_ids[b] = im.model_vocab.find(std::string_view(name));
  }
  for (int c = 0; c < 128; ++c) {
    const char ch = char(c);
    im.ascii_ids[c] = im.model_vocab.find(std::string_view(&ch, 1));
  }

  // Merges: rank = position in the list; the merged token must be in the vocab. Lookups go in batches whose
  // slots are prefetched first: the loop is bound by cache misses on the vocab table.
  std::vector<std::pair<uint64_t, std::pair<int32_t, int32_t>>> entries;
  entries.reserve(sax.merges.size());
  constexpr std::size_t kBatch = 16;
  std::string joined[kBatch];
  uint64_t hashes[kBatch][3];
  const std::string_view space = "\xE2\x96\x81";  // U+2581, what the Gemma normalizer turns spaces into
  for (std::size_t base = 0; base < sax.merges.size(); base += kBatch) {
    const std::size_t end = std::min(sax.merges.size(), base + kBatch);
    for (std::size_t r = base; r < end; ++r) {
      const auto& [a, b] = sax.merges[r];
      uint64_t* h = hashes[r - base];
      joined[r - base].assign(a).append(b);
      h[0] = tok::StringIdMap::hash(a);
      h[1] = tok::StringIdMap::hash(b);
      h[2] = tok::StringIdMap::hash(joined[r - base]);
      for (int k = 0; k < 3; ++k) im.model_vocab.prefetch(h[k]);
    }
    for (std::size_t r = base; r < end; ++r) {
      const auto& [a, b] = sax.merges[r];
      const uint64_t* h = hashes[r - base];
      const int32_t ia = im.model_vocab.find(a, h[0]), ib = im.model_vocab.find(b, h[1]);
      const int32_t ij = im.model_vocab.find(joined[r - base], h[2]);
      if (ia < 0 || ib < 0 || ij < 0)
        throw Error(cat("tokenizer: ", src, ": merge '", a, "' + '", b, "' uses a token missing from the vocab"));
      entries.push_back({(uint64_t(uint32_t(ia)) << 32) | uint32_t(ib), {int32_t(r), ij}});
      // A merge that joins a character to a following "▁" limits where BPE may split words (see bpe()).
      if (b.compare(0, space.size(), space) == 0 && !a.empty() &&
          !(a.size() >= space.size() && a.compare(a.size() - space.size(), space.size(), space) == 0)) {
        std::size_t p = a.size() - 1, len = 0;
        while (p > 0 && (static_cast<unsigned char>(a[p]) & 0xC0) == 0x80) --p;
        const char32_t last = tok::utf8_decode(a, p, &len);
        if (std::find(im.cross_last.begin(), im.cross_last.end(), last) == im.cross_last.end())
          im.cross_last.push_back(last);
      }
    }
  }
  // The cut needs "▁" itself in the vocab (else the right side would start with byte tokens the check misses).
  im.word_split = im.cross_last.size() <= 64 && im.model_vocab.find(space) >= 0;
  sax.merges.clear();
  sax.merges.shrink_to_fit();
  im.merges.build(entries);

  // Components.
  if (const json* n = member(root, "normalizer")) parse_normalizer(*n, src, im.normalizer);
  if (const json* p = member(root, "pre_tokenizer")) parse_pre_tokenizer(*p, src, im.pre_tokenizer);
  if (const json* d = member(root, "decoder")) {
    parse_decoder(*d, src, im.decoder);
    im.has_decoder = true;
  }
  if (const json* p = member(root, "post_processor")) parse_post(*p, src, im);
  im.fuse_pos = im.decoder.size();
  for (std::size_t i = 0; i < im.decoder.size(); ++i)
    if (im.decoder[i].kind == DecStep::Kind::Fuse) {
      im.fuse_pos = i;
      break;
    }
  im.byte_fallback_pos = im.fuse_pos;
  for (std::size_t i = 0; i < im.fuse_pos; ++i)
    if (im.decoder[i].kind == DecStep::Kind::ByteFallback) {
      im.byte_fallback_pos = i;
      break;
    }

  // Added-token tries: raw text for normalized=false, normalized text (content normalized too) otherwise.
  for (std::size_t i = 0; i < im.added.size(); ++i) {
    const AddedToken& t = im.added[i];
    if (t.normalized) im.norm_trie.insert(im.normalize(t.content), int32_t(i));
    else im.raw_trie.insert(t.content, int32_t(i));
  }
}

// Resolves a special-token string to its id; an unknown string is a configuration error.
int32_t resolve(const Tokenizer::Impl& im, const std::string& token, const std::string& file, const char* field) {
  auto it = im.added_vocab.find(token);
  if (it != im.added_vocab.end()) return it->second;
  if (const int32_t id = im.model_vocab.find(token); id >= 0) return id;
  throw Error(cat("tokenizer: ", file, ": ", field, " '", token, "' is not in the vocabulary"));
}

void load_side_files(Tokenizer::Impl& im, const fs::path& dir) {
  json cfg, stm, gen;
  const fs::path cfg_path = dir / "tokenizer_config.json", stm_path = dir / "special_tokens_map.json",
                 gen_path = dir / "generation_config.json", tmpl_path = dir / "chat_template.jinja";
  if (fs::is_regular_file(cfg_path)) cfg = parse_file(cfg_path.string());
  if (fs::is_regular_file(stm_path)) stm = parse_file(stm_path.string());
  if (fs::is_regular_file(gen_path)) gen = parse_file(gen_path.string());

  struct Field {
    const char* name;
    std::string* tok;
    int32_t* id;
  };
  const Field fields[] = {{"bos_token", &im.bos_tok, &im.bos},
                          {"eos_token", &im.eos_tok, &im.eos},
                          {"pad_token", &im.pad_tok, &im.pad},
                          {"unk_token", &im.unk_tok, &im.unk_special}};
  for (const Field& f : fields) {
    std::string s = special_field(cfg, f.name);
    std::string from = cfg_path.string();
    if (s.empty()) {
      s = special_field(stm, f.name);
      from = stm_path.string();
    }
    if (!s.empty()) {
      *f.tok = s;
      *f.id = resolve(im, s, from, f.name);
    }
  }
  auto from_gen = [&](const char* key, std::string* tok, int32_t* id) {
    const std::vector<int32_t> ids = id_list(gen, key, gen_path.string(), im.id_to_token.size());
    if (*id < 0 && !ids.empty()) {
      *id = ids[0];
      if (const std::string* t = im.token_of(ids[0])) *tok = *t;
    }
    return ids;
  };
  from_gen("bos_token_id", &im.bos_tok, &im.bos);
  from_gen("pad_token_id", &im.pad_tok, &im.pad);
  const std::vector<int32_t> eos_ids = from_gen("eos_token_id", &im.eos_tok, &im.eos);
  if (im.unk_special < 0 && im.unk >= 0) {
    im.unk_special = im.unk;
    im.unk_tok = im.id_to_token[std::size_t(im.unk)];
  }
  if (im.eos >= 0) im.eos_list.push_back(im.eos);
  for (int32_t e : eos_ids)
    if (std::find(im.eos_list.begin(), im.eos_list.end(), e) == im.eos_list.end()) im.eos_list.push_back(e);

  im.add_bos = get_bool(cfg, "add_bos_token", false);
  im.add_eos = get_bool(cfg, "add_eos_token", false);
  if (const json* ct = member(cfg, "chat_template")) {
    if (ct->is_string()) {
      im.chat_template = ct->get<std::string>();
    } else if (ct->is_array()) {
      // Named templates: prefer "default", else the first.
      for (const json& t : *ct)
        if (get_string(t, "name") == "default" || im.chat_template.empty())
          im.chat_template = get_string(t, "template");
    }
  }
  if (im.chat_template.empty() && fs::is_regular_file(tmpl_path)) im.chat_template = slurp(tmpl_path.string());
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  fs::path p(path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) p /= "tokenizer.json";
  if (!fs::is_regular_file(p, ec)) throw Error(cat("tokenizer: no tokenizer.json at ", p.string()));
  auto im = std::make_unique<Impl>();
  im->source = p.string();
  {
    TokenizerSax sax(im->source);
    const std::string data = slurp(im->source);
    json::sax_parse(data, &sax);
    build_model(*im, sax);
  }
  load_side_files(*im, p.parent_path().empty() ? fs::path(".") : p.parent_path());
  return Tokenizer(std::move(im));
}

}  // namespace zaya
