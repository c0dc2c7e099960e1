#include <gtest/gtest.h>
#include "io/safetensors.h"
TEST(Smoke, DTypeNames) { EXPECT_STREQ(zaya::dtype_name(zaya::DType::BF16), "BF16"); }
