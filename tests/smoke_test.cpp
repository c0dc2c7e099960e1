#include <gtest/gtest.h>
#include "zaya/safetensors.h"
TEST(Smoke, DTypeNames) { EXPECT_STREQ(zaya::dtype_name(zaya::DType::BF16), "BF16"); }
