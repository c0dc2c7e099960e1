// The renderer's limits (zaya/limits.h, docs/limits.md): a per-render work budget (steps, bytes built, wall-clock
// time, stack), size caps checked before strings and lists are built, and checked integer arithmetic.
#include <chrono>
#include <cmath>
#include <limits>

#include "chat/jinja_value.h"
#include "zaya/limits.h"

namespace zaya::jinja::detail {
static_assert(kStringCap == limits::kMaxTemplateStringBytes);
namespace {

thread_local RenderBudget* t_budget = nullptr;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void overflow() {
  throw Error("integer overflow: the result does not fit 64 bits (templates compute with 64-bit integers)");
}

}  // namespace

BudgetScope::BudgetScope(RenderBudget& b) : prev_(t_budget) {
  if (b.deadline_ns == 0) b.deadline_ns = now_ns() + int64_t(limits::kMaxTemplateSeconds * 1e9);
  if (b.stack_base == 0) b.stack_base = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  t_budget = &b;
}

BudgetScope::~BudgetScope() { t_budget = prev_; }

void charge_steps(uint64_t n) {
  RenderBudget* b = t_budget;
  if (!b) return;
  const uint64_t before = b->steps;
  b->steps += n;
  if (b->steps > limits::kMaxTemplateSteps)
    throw Error(cat("the template ran more than ", limits::kMaxTemplateSteps,
                    " steps (zaya::limits::kMaxTemplateSteps): runaway loop?"));
  // The clock is read every 4096 steps.
  if ((before >> 12) != (b->steps >> 12) && now_ns() > b->deadline_ns)
    throw Error(cat("the template ran longer than ", limits::kMaxTemplateSeconds,
                    " s (zaya::limits::kMaxTemplateSeconds)"));
}

void check_stack() {
  RenderBudget* b = t_budget;
  if (!b || b->stack_base == 0) return;
  const uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  const uintptr_t used = here < b->stack_base ? b->stack_base - here : here - b->stack_base;
  if (used > limits::kMaxTemplateStackBytes)
    throw Error(cat("maximum recursion depth exceeded while rendering the template (", used,
                    " bytes of stack; zaya::limits::kMaxTemplateStackBytes)"));
}

void check_string_size(uint64_t bytes) {
  if (bytes > limits::kMaxTemplateStringBytes)
    throw Error(cat("a string of ", bytes, " bytes exceeds the template limit of ", limits::kMaxTemplateStringBytes,
                    " bytes (zaya::limits::kMaxTemplateStringBytes)"));
  RenderBudget* b = t_budget;
  if (!b) return;
  b->bytes += bytes;
  if (b->bytes > limits::kMaxTemplateBytesBuilt)
    throw Error(cat("the template built more than ", limits::kMaxTemplateBytesBuilt,
                    " bytes of strings (zaya::limits::kMaxTemplateBytesBuilt)"));
}

void check_list_size(uint64_t items) {
  if (items > limits::kMaxTemplateListItems)
    throw Error(cat("a list of ", items, " items exceeds the template limit of ", limits::kMaxTemplateListItems,
                    " (zaya::limits::kMaxTemplateListItems)"));
  charge_steps(1 + items / 16);
}

void check_width(int64_t width) {
  if (width > limits::kMaxTemplatePadWidth)
    throw Error(cat("width ", width, " exceeds the template limit of ", limits::kMaxTemplatePadWidth,
                    " (zaya::limits::kMaxTemplatePadWidth)"));
}

int value_depth(const Value& v) {
  if (v.is_list()) return v.lst().depth;
  if (v.is_dict() || v.is_ns()) return std::get<DictPtr>(v.p)->depth;
  return 0;
}

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}
int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}
int64_t checked_neg(int64_t a) { return checked_sub(0, a); }

int64_t float_to_int(double d) {
  if (std::isnan(d)) throw Error("cannot convert float NaN to integer");
  if (std::isinf(d)) throw Error("cannot convert float infinity to integer");
  // [-2^63, 2^63): both bounds are exact doubles.
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) overflow();
  return static_cast<int64_t>(d);
}

}  // namespace zaya::jinja::detail
