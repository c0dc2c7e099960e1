#pragma once
// The ZAYA1 causal language model: load a checkpoint folder, run tokens through it against a DecodeState.
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zaya/config.h"
#include "zaya/decode_state.h"

namespace zaya {

struct ModelWeights;
class TensorStore;

// How tokens attend to each other in a ZAYA1-VL prefill that holds images (VL spec §7). Text models, text-only prompts
// and decode steps are always causal.
enum class AttentionMask {
  Causal,        // the HF default (eager/sdpa) path: plain causal
  ZyphraPrefix,  // Zyphra's flash-attention path: positions 1…last-image+2 attend bidirectionally to that prefix
  ImagePairs,    // the upstream transformers port: image tokens also see every image token; the rest causal
};
const char* attention_mask_name(AttentionMask m);
// "causal", "zyphra-fa2-prefix", "image-pairs"; throws zaya::Error otherwise.
AttentionMask parse_attention_mask(const std::string& name);

// Where the weights live while the model runs.
enum class WeightMemory {
  Auto,    // read into memory when the files fit in half the available memory (MemAvailable, or a container's cgroup
           // limit if lower), else mapped (the default)
  Mapped,  // mmap of the files, shared with the page cache: the fastest start, but streaming page-cache pages is
           // ~25 % slower than anonymous memory on the dev VM, and generation streams every weight once per token
  Copied,  // always read into anonymous memory (an error when it cannot be allocated)
};

struct LoadOptions {
  // Skip-route semantics; unset = the layout's default (legacy → p·x, native → 0).
  bool override_skip_route = false;
  SkipRoute skip_route = SkipRoute::ScaledInput;
  bool verbose = true;  // log layout, skip route and its reachability to stderr
  // Affine 4/8-bit products with fp32 activations, exactly the reference's arithmetic (slower prefill); default: int16
  // activations (see src/kernels/affine_q16.h).
  bool exact = false;
  // Opt-in: affine 4/8-bit products with int8 activations (src/kernels/affine_q8.h): ~1.5x the int16 prefill speed
  // on AVX-512 VNNI, at a measured accuracy cost (docs/bundles.md). Ignored when `exact` is set.
  bool int8 = false;
  AttentionMask mask = AttentionMask::ZyphraPrefix;  // ZAYA1-VL only
  WeightMemory memory = WeightMemory::Auto;
};

// Optional capture of internals for golden tests and debugging. Names follow the golden cases (without the
// "full." prefix): residual_in.{n}, mixer_out.{n}, cca.{n}.q/k/v, router.{n}.logits/choice/prob/eda_state,
// final_residual, final_hidden. Each entry is [tokens of the call, width], row-major.
struct ForwardTrace {
  std::map<std::string, std::vector<float>> tensors;
  void put(const std::string& name, const float* data, size_t n) { tensors[name].assign(data, data + n); }
};

enum class LogitsMode { None, Last, All };

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& dir, const LoadOptions& opts = {});
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  SkipRoute skip_route() const { return skip_route_; }
  void set_skip_route(SkipRoute s) { skip_route_ = s; }
  const ModelWeights& weights() const { return *weights_; }
  DecodeState new_state() const { return DecodeState(cfg_); }

  // Processes `ids` (one prefill chunk or one decode token) as the continuation of `state`, updating it.
  // Returns logits: [ids.size(), V] for All, [1, V] (the last token) for Last, empty for None.
  // Throws zaya::Error for ids outside [0, V) or when the context would exceed max_position_embeddings; the state
  // is left unchanged in that case.
  std::vector<float> forward(std::span<const int32_t> ids, DecodeState& state, LogitsMode mode = LogitsMode::All,
                             ForwardTrace* trace = nullptr) const;

  // Several sequences in one pass (e.g. the decode steps of concurrent server slots): every per-token operation
  // runs as one matrix-matrix product over all their tokens; attention runs per sequence on its own state. The
  // kernels are batch-invariant, so each sequence's logits are bitwise what forward() gives it alone.
  //
  // Input is token ids, optionally with precomputed embedding rows (e.g. image features) that replace the embedding
  // lookup of the tokens whose flag is set (all tokens when `flags` is empty). The flags are also what a model with
  // image-only adapters keys on.
  struct BatchItem {
    BatchItem() = default;
    BatchItem(std::span<const int32_t> ids_, DecodeState* state_, LogitsMode mode_ = LogitsMode::Last,
              std::vector<float> logits_ = {})
        : ids(ids_), state(state_), mode(mode_), logits(std::move(logits_)) {}
    std::span<const int32_t> ids;
    DecodeState* state = nullptr;
    LogitsMode mode = LogitsMode::Last;
    std::vector<float> logits;         // output
    std::span<const float> embeddings;  // empty, or [ids.size(), hidden]
    std::span<const uint8_t> flags;     // empty, or [ids.size()]: 1 = take the row of `embeddings`
  };
  void forward_batch(std::span<BatchItem> items, ForwardTrace* trace = nullptr) const;

  // Per MoE layer (legacy index): can the skip route be selected at all given the balancing biases? (spec §6.5)
  std::vector<std::pair<int64_t, bool>> skip_route_reachability() const;

  // Weight bytes one decoded token reads (every dense matrix and vector, one expert per MoE layer, one embedding
  // row, the whole lm_head): what a decode step must stream from memory.
  size_t weight_bytes_per_token() const;
  bool exact() const { return exact_; }
  bool int8() const { return int8_ && !exact_; }
  bool weights_copied() const;  // the weights were read into anonymous memory (WeightMemory), not mapped
  AttentionMask attention_mask() const { return mask_; }
  void set_attention_mask(AttentionMask m) { mask_ = m; }

 private:
  Model() = default;
  ModelConfig cfg_;
  SkipRoute skip_route_ = SkipRoute::ScaledInput;
  bool exact_ = false;
  bool int8_ = false;
  AttentionMask mask_ = AttentionMask::ZyphraPrefix;
  std::unique_ptr<TensorStore> store_;
  std::unique_ptr<ModelWeights> weights_;
};

}  // namespace zaya
