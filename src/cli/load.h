#pragma once
#include <memory>

#include "cli/commands.h"
#include "zaya/model.h"
#include "zaya/runtime.h"

namespace zaya::cli {

inline LoadOptions model_load_options(const ModelOptions& o) {
  LoadOptions lo;
  lo.verbose = !o.quiet;
  lo.exact = o.exact;
  lo.int8 = o.int8;
  lo.mask = parse_attention_mask(o.mask);
  lo.memory = o.memory;
  if (!o.skip_route.empty()) {
    lo.override_skip_route = true;
    lo.skip_route = o.skip_route == "zero" ? SkipRoute::Zero : SkipRoute::ScaledInput;
  }
  return lo;
}

inline std::unique_ptr<Model> load_model(const ModelOptions& o) {
  if (o.threads > 0) set_num_threads(static_cast<size_t>(o.threads));
  return Model::load(o.dir, model_load_options(o));
}

}  // namespace zaya::cli
