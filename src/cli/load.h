#pragma once
#include <memory>

#include "cli/commands.h"
#include "zaya/model.h"
#include "zaya/runtime.h"

namespace zaya::cli {

inline std::unique_ptr<Model> load_model(const ModelOptions& o) {
  if (o.threads > 0) set_num_threads(static_cast<size_t>(o.threads));
  LoadOptions lo;
  lo.verbose = !o.quiet;
  lo.exact = o.exact;
  if (!o.skip_route.empty()) {
    lo.override_skip_route = true;
    lo.skip_route = o.skip_route == "zero" ? SkipRoute::Zero : SkipRoute::ScaledInput;
  }
  return Model::load(o.dir, lo);
}

}  // namespace zaya::cli
