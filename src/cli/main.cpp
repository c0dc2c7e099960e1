// zaya: one binary, subcommands (logits, generate, info, …). Errors go to stderr with a non-zero exit code.
#include <cstdio>
#include <exception>
#include <map>

#include "cli/commands.h"
#include "zaya/error.h"

int main(int argc, char** argv) {
  CLI::App app{"zaya.cpp: inference runtime for Zyphra ZAYA1 models"};
  app.require_subcommand(1);
  std::map<std::string, zaya::cli::Runner> runners = {
      {"logits", zaya::cli::add_logits(app)},
      {"generate", zaya::cli::add_generate(app)},
      {"info", zaya::cli::add_info(app)},
      {"run", zaya::cli::add_run(app)},
      {"chat", zaya::cli::add_chat(app)},
      {"tokenize", zaya::cli::add_tokenize(app)},
      {"template", zaya::cli::add_template(app)},
      {"serve", zaya::cli::add_serve(app)},
      {"bench", zaya::cli::add_bench(app)},
      {"convert", zaya::cli::add_convert(app)},
      {"verify", zaya::cli::add_verify(app)},
      {"synth", zaya::cli::add_synth(app)},
      {"perplexity", zaya::cli::add_perplexity(app)},
      {"smoke", zaya::cli::add_smoke(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub->get_name())();
  } catch (const zaya::Error& e) {
    std::fprintf(stderr, "zaya: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "zaya: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
