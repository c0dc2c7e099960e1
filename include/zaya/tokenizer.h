#pragma once
// Hugging Face `tokenizer.json` tokenizer of the Gemma 3 kind (BPE + byte fallback), as used by ZAYA1.
//
// Supported components (anything else is rejected at load with a zaya::Error naming the type):
//   model          BPE (merges as "a b" strings or ["a","b"] pairs; byte_fallback, fuse_unk, ignore_merges)
//   normalizer     Replace (string pattern), Prepend, Strip, Sequence
//   pre_tokenizer  Split (string pattern; all behaviours, invert), Metaspace, Sequence
//   post_processor TemplateProcessing, ByteLevel (no-op on ids), Sequence
//   decoder        Replace (string pattern), ByteFallback, Fuse, Strip, Metaspace, Sequence
// Added tokens (special or not) are matched leftmost-longest in the raw text before normalization
// (`normalized: true` ones in the normalized text), honouring lstrip / rstrip / single_word.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zaya {

class Tokenizer {
 public:
  // `path` is a model folder (reads tokenizer.json plus tokenizer_config.json, generation_config.json,
  // special_tokens_map.json and chat_template.jinja where present) or a direct path to a tokenizer.json
  // (the side files are then looked for next to it). Throws zaya::Error on missing/bad/unsupported files.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes UTF-8 text. add_special_tokens applies the post-processor (e.g. prepends <bos> for Gemma).
  // Throws zaya::Error on invalid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;

  // Decodes ids as HF `decode` does (clean_up_tokenization_spaces is not applied). Ids outside the vocabulary
  // (e.g. from a model whose embedding is padded past the tokenizer) are skipped, like HF.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Number of ids: max id of vocab and added tokens + 1 (262145 for Gemma 3; models may pad beyond).
  std::size_t vocab_size() const;
  // Token string of an id (empty for ids outside the vocabulary).
  const std::string& id_to_token(int32_t id) const;
  // Id of a token string (added tokens first, then the model vocab).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // True for added tokens marked special (what skip_special_tokens drops).
  bool is_special(int32_t id) const;

  // Special tokens from tokenizer_config.json / special_tokens_map.json / generation_config.json; -1 / "" if unset.
  int32_t bos_id() const;
  int32_t eos_id() const;  // the primary eos (tokenizer_config eos_token, else the first generation_config id)
  int32_t pad_id() const;
  int32_t unk_id() const;
  const std::string& bos_token() const;
  const std::string& eos_token() const;
  const std::string& pad_token() const;
  const std::string& unk_token() const;
  // Every id that ends generation: the primary eos plus all of generation_config eos_token_id (may be a list).
  const std::vector<int32_t>& eos_ids() const;
  bool is_eos(int32_t id) const;

  // tokenizer_config.json chat_template (or chat_template.jinja); empty when absent.
  const std::string& chat_template() const;
  bool has_chat_template() const;
  // tokenizer_config.json add_bos_token / add_eos_token (false when absent).
  bool add_bos_token() const;
  bool add_eos_token() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamingDetokenizer;
};

// Incremental detokenizer: feed one id at a time, get back only complete UTF-8 text. Byte-fallback tokens that
// together form one character are held until the character is complete. The concatenation of all put() results
// and a final flush() equals Tokenizer::decode of the same ids (for well-formed byte sequences; for an invalid
// run, valid characters already emitted stay and each invalid byte becomes U+FFFD, where HF's full decode turns
// every byte of that run into U+FFFD). The tokenizer must outlive the detokenizer.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  // Returns the text completed by `id` (possibly empty). Never returns a partial UTF-8 sequence.
  std::string put(int32_t id);
  // Ends the stream: returns whatever is still held (dangling bytes become U+FFFD each) and resets.
  std::string flush();
  // Starts a new stream, dropping anything held.
  void reset();

 private:
  std::string emit(std::string text);
  std::string finish_piece(std::string text, std::size_t index);
  std::string drain_bytes(bool final, std::size_t index);
  const Tokenizer::Impl* tok_;
  bool skip_special_;
  std::size_t index_ = 0;        // tokens seen (for decoders that treat the first token specially)
  std::string pending_bytes_;    // byte-fallback bytes not yet forming a complete character
  std::size_t lead_stripped_ = 0;  // stream-level Strip: leading chars removed so far
  bool lead_done_ = false;
  std::string held_tail_;        // stream-level Strip: trailing chars held back in case the stream ends
  bool meta_done_ = false;       // stream-level Metaspace: the leading space was handled
};

}  // namespace zaya
