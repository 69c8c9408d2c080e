// SPDX-License-Identifier: Apache-2.0
// Finds and loads libblockrank_torch_cli.so, the module that holds everything needing LibTorch, so
// that the `blockrank` binary itself starts without loading LibTorch's ~290 shared libraries.
#ifndef BLOCKRANK_BASE_MODULE_LOADER_H_
#define BLOCKRANK_BASE_MODULE_LOADER_H_

#include <string>

#include "blockrank/status.h"

namespace blockrank {

/// Loads the module once per process (later calls return the same handle) and looks up `symbol`.
/// kUnimplemented when the module is absent (a build without LibTorch) or lacks the symbol.
Status find_torch_module_symbol(const char* symbol, void** address);

}  // namespace blockrank

#endif  // BLOCKRANK_BASE_MODULE_LOADER_H_
