#pragma once
// zaya bench --image: the vision tower's speed on a VL model (see bench_image.cpp).
#include <string>

#include "cli/commands.h"

namespace zaya::cli {

// `size` is "WIDTHxHEIGHT"; prints a table or --json. Throws zaya::Error on bad input.
int bench_image(const ModelOptions& model, const std::string& size, int reps, bool json);

}  // namespace zaya::cli
