// SPDX-License-Identifier: Apache-2.0
#include "blockrank/status.h"

#include <gtest/gtest.h>

namespace blockrank {
namespace {

Status fails() {
  return Status::invalid_argument("bad flag");
}
Status propagates() {
  BLOCKRANK_RETURN_IF_ERROR(fails());
  return Status::internal("not reached");
}
StatusOr<int> answer(bool ok) {
  if (!ok) {
    return Status::not_found("no answer");
  }
  return 42;
}
Status use_answer(bool ok, int* out) {
  BLOCKRANK_ASSIGN_OR_RETURN(*out, answer(ok));
  return Status::ok();
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::ok().is_ok());
  EXPECT_EQ(Status::ok().to_string(), "ok");
  const Status s = Status::io_error("disk full");
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_EQ(s.to_string(), "io_error: disk full");
  EXPECT_EQ(s.with_context("index").message(), "index: disk full");
}

TEST(StatusTest, MacrosPropagate) {
  EXPECT_EQ(propagates().code(), StatusCode::kInvalidArgument);
  int v = 0;
  EXPECT_TRUE(use_answer(true, &v).is_ok());
  EXPECT_EQ(v, 42);
  EXPECT_EQ(use_answer(false, &v).code(), StatusCode::kNotFound);
}

TEST(StatusTest, StatusOrFromOkStatusIsInternal) {
  StatusOr<int> bad{Status::ok()};
  EXPECT_EQ(bad.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace blockrank
