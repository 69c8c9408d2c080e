// SPDX-License-Identifier: Apache-2.0
#include "cli_command.h"

#include <cstdio>

namespace blockrank {

int report_status(const std::string& command, const Status& status) {
  if (status.is_ok()) {
    return 0;
  }
  std::fprintf(stderr, "blockrank %s: error: %s\n", command.c_str(), status.message().c_str());
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
      return 2;
    case StatusCode::kCancelled:
      return 130;
    default:
      return 1;
  }
}

}  // namespace blockrank
