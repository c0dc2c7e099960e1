// zaya verify DIR [--json]: check a bundle (library: zaya/verify.h). Exit 0 when every check passes, 1 otherwise.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "zaya/verify.h"

namespace zaya::cli {

Runner add_verify(CLI::App& app) {
  struct Opts {
    std::string dir;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("verify", "check a bundle: headers, coverage, formats, passthrough floor, sidecar, sizes");
  sub->add_option("DIR", o->dir, "bundle or checkpoint folder")->required();
  sub->add_flag("--json", o->json, "machine-readable report");
  return [o]() {
    const VerifyReport r = verify_bundle(o->dir);
    const std::string text = o->json ? verify_report_json(r) + "\n" : verify_report_table(r);
    std::fputs(text.c_str(), stdout);
    return r.ok() ? 0 : 1;
  };
}

}  // namespace zaya::cli
