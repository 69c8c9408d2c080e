// SPDX-License-Identifier: Apache-2.0
// Converts Xapian exceptions into Status values at the adapter boundary. Xapian::Error is not
// polymorphic in 1.4, so the class is read from get_type().
#ifndef BLOCKRANK_INDEXER_XAPIAN_STATUS_H_
#define BLOCKRANK_INDEXER_XAPIAN_STATUS_H_

#include <string>

#include <xapian.h>

#include "blockrank/status.h"

namespace blockrank {

Status status_from_xapian(const std::string& what, const Xapian::Error& e);

}  // namespace blockrank

#endif  // BLOCKRANK_INDEXER_XAPIAN_STATUS_H_
