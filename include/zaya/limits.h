#pragma once
// Every limit zaya puts on what it reads (model folders, chat templates, HTTP requests), in one place. Each is
// checked before the allocation or the work it bounds, and exceeding one is a clean error that names the file,
// key or field and the limit: zaya::Error (the CLI exits 1), or HTTP 400/413 with an OpenAI error object.
// docs/limits.md explains each value and where it is checked.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace zaya::limits {

// ---- JSON ---------------------------------------------------------------------------------------------------------
// Nesting depth (arrays + objects) of every JSON document zaya parses: config.json, tokenizer.json and its side
// files, safetensors headers, indexes, request bodies, and JSON carried inside a string (tool-call arguments) or
// produced by the model (tool-call values). Recursive consumers (copies, dumps, the template engine) stay far from
// the end of the stack.
inline constexpr int kMaxJsonDepth = 64;
// Nesting depth of JSON text (brackets outside strings), counted up to limit + 1 and no further: a program checks a
// document with `json_nesting_depth(text) > kMaxJsonDepth` before nlohmann::json::parse.
int json_nesting_depth(std::string_view text, int limit = kMaxJsonDepth);

// ---- model files --------------------------------------------------------------------------------------------------
// Token ids (tokenizer.json vocab and added tokens, special ids, config ids) lie in [0, kMaxVocab): the id -> token
// table is sized by the largest id, so this bounds it (~140 MB at worst). The largest real vocabularies are ~260 k.
inline constexpr int64_t kMaxVocab = int64_t{1} << 22;
// config.json geometry (each checked before anything is sized from it; products of three of them fit int64).
inline constexpr int64_t kMaxHiddenSize = int64_t{1} << 16;       // hidden_size
inline constexpr int64_t kMaxLayers = 1024;                       // num_hidden_layers
inline constexpr int64_t kMaxHeads = 1024;                        // attention / KV heads
inline constexpr int64_t kMaxHeadDim = 1024;                      // head_dim / kv_channels
inline constexpr int64_t kMaxExperts = 512;                       // num_experts
inline constexpr int64_t kMaxFfnSize = int64_t{1} << 18;          // expert FFN width, router hidden size
inline constexpr int64_t kMaxPositions = int64_t{1} << 24;        // max_position_embeddings
// safetensors: the format's own header cap; every tensor's bytes must lie in the data section, tensors may not
// overlap, and together they must cover the data section exactly (a header length cut short shifts every tensor).
inline constexpr uint64_t kMaxSafetensorsHeader = uint64_t{100} << 20;

// ---- chat templates (per render) ----------------------------------------------------------------------------------
// Nested evaluation steps (expressions, statements, calls, macro recursion): Python Jinja stops near 1000 frames.
inline constexpr int kMaxTemplateRecursion = 2000;
// Stack the renderer may use below the frame that started the render (guards recursion in builds with large
// frames, such as AddressSanitizer's, before kMaxTemplateRecursion is reached).
inline constexpr size_t kMaxTemplateStackBytes = size_t{2} << 20;
// Any one string value, and the rendered output.
inline constexpr size_t kMaxTemplateStringBytes = size_t{64} << 20;
// Any one list (`[x] * n`, list concatenation, filters).
inline constexpr size_t kMaxTemplateListItems = size_t{1} << 20;
// Width of a padding (`center`, `ljust`, `rjust`, `zfill`, `%*d`, `{:>N}`, `indent`).
inline constexpr int64_t kMaxTemplatePadWidth = int64_t{1} << 20;
// range() length: Jinja's sandbox MAX_RANGE.
inline constexpr int64_t kMaxTemplateRange = 100000;
// Total work of one render: evaluation steps and loop iterations together ...
inline constexpr uint64_t kMaxTemplateSteps = 20'000'000;
// ... bytes of all strings built ...
inline constexpr uint64_t kMaxTemplateBytesBuilt = uint64_t{1} << 30;
// ... and wall-clock time, the backstop for everything else.
inline constexpr double kMaxTemplateSeconds = 5.0;
// Nesting depth of values a template builds (lists in lists, namespaces holding namespaces).
inline constexpr int kMaxTemplateValueDepth = 256;

// ---- HTTP server --------------------------------------------------------------------------------------------------
// Seconds a client has to deliver a whole request (line, headers and body), counted from the connection's start or
// its previous response; a connection that takes longer is closed, so slow clients cannot hold a worker.
inline constexpr int kMaxRequestReadSeconds = 15;
// Bytes of a request's line and headers (cpp-httplib also caps each line at 8 KiB).
inline constexpr size_t kMaxHeaderBytes = size_t{64} << 10;
// Worker threads, one per open connection, made on demand (`zaya serve --max-connections`, the default).
inline constexpr size_t kMaxConnections = 1024;
// Open connections per client address; loopback clients are exempt (a local reverse proxy is one address).
inline constexpr size_t kMaxConnectionsPerClient = 64;

}  // namespace zaya::limits
