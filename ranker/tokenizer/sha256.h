// SPDX-License-Identifier: Apache-2.0
// SHA-256 (FIPS 180-4) of a byte string, as lower-case hex: the tokenizer's content digest, used
// in cache fingerprints. Small and dependency-free so the tokenizer needs no crypto library.
//
// Thread-safety: pure function.
#ifndef BLOCKRANK_RANKER_TOKENIZER_SHA256_H_
#define BLOCKRANK_RANKER_TOKENIZER_SHA256_H_

#include <string>
#include <string_view>

namespace blockrank::internal {

std::string sha256_hex(std::string_view data);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_TOKENIZER_SHA256_H_
