#include <gtest/gtest.h>
#include "mgd/solver/assignment.h"
TEST(Placeholder, Builds) {}
