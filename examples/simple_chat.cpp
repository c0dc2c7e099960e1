// A program embedding zaya through its public API only (include/zaya/): load a model folder, render one chat
// message with the model's template, and stream the answer. Built as `zaya_example_simple_chat`; run with
//   zaya_example_simple_chat MODEL_DIR "your question" [max_tokens]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "zaya/chat.h"
#include "zaya/error.h"
#include "zaya/model.h"
#include "zaya/session.h"
#include "zaya/tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR \"question\" [max_tokens]\n", argv[0]);
    return 2;
  }
  try {
    zaya::LoadOptions load;
    load.verbose = false;
    const auto model = zaya::Model::load(argv[1], load);
    const zaya::Tokenizer tok = zaya::Tokenizer::load(argv[1]);
    const zaya::ChatFormatter chat(tok);
    const std::string prompt = chat.render(nlohmann::ordered_json::array({{{"role", "user"}, {"content", argv[2]}}}));

    zaya::GenerateOptions opts;
    opts.sampling = zaya::sampling_defaults(argv[1], opts.sampling);
    opts.sampling.temperature = 0;  // greedy: the same answer every run
    opts.max_tokens = argc > 3 ? std::atoi(argv[3]) : 64;
    zaya::Session session(*model, &tok);
    const auto result = session.complete(tok.encode(prompt), opts, [](const std::string& text, int32_t) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::printf("\n[%zu prompt tokens, %zu generated, finish: %s]\n", result.prompt_tokens, result.tokens.size(),
                zaya::finish_reason_name(result.finish));
    return 0;
  } catch (const zaya::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
