// SPDX-License-Identifier: Apache-2.0
// File-system helpers that do not go through std::filesystem's out-of-line functions.
//
// Why: PyTorch 2.11's libtorch.so and libtorch_cpu.so export their own copy of
// std::filesystem::remove_all(const path&, error_code&), and they come before libstdc++ in the
// lookup order of anything linked against them; on the H200 that copy jumped to address 0 (SIGSEGV
// in kv_prefix_gpu_test's temporary-directory cleanup; docs/BENCHMARKS.md, KV cache section).
// POSIX nftw has no such duplicate.
#ifndef BLOCKRANK_BASE_FILE_UTIL_H_
#define BLOCKRANK_BASE_FILE_UTIL_H_

#include <string>

#include "blockrank/status.h"

namespace blockrank {

/// Removes `path` and, when it is a directory, everything below it (symbolic links are removed,
/// never followed). A missing path is not an error. Errors: kIoError naming the entry that could
/// not be removed and why.
Status remove_tree(const std::string& path);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_FILE_UTIL_H_
