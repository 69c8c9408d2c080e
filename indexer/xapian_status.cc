// SPDX-License-Identifier: Apache-2.0
#include "indexer/xapian_status.h"

namespace blockrank {

Status status_from_xapian(const std::string& what, const Xapian::Error& e) {
  const std::string type = e.get_type();
  const std::string msg = what + ": " + e.get_description();
  if (type == "DatabaseLockError") {
    return Status::unavailable(what + ": the index is locked by another writer (" +
                               e.get_description() + ")");
  }
  if (type == "DatabaseNotFoundError" || type == "DatabaseOpeningError") {
    return Status::not_found(what + ": no index there (" + e.get_description() + ")");
  }
  if (type == "DatabaseCorruptError") {
    return Status::corruption(msg);
  }
  if (type == "DatabaseModifiedError") {
    return Status::unavailable(msg + " (retry after reopen)");
  }
  if (type == "NetworkError" || type == "NetworkTimeoutError") {
    return Status::unavailable(msg);
  }
  if (type == "InvalidArgumentError" || type == "QueryParserError") {
    return Status::invalid_argument(msg);
  }
  if (type == "UnimplementedError") {
    return Status::unimplemented(msg);
  }
  return Status::io_error(msg);
}

}  // namespace blockrank
