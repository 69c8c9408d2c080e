// SPDX-License-Identifier: Apache-2.0
// Reading and writing the safetensors format (https://github.com/huggingface/safetensors): an
// 8-byte little-endian header length, a JSON header mapping tensor names to {dtype, shape,
// data_offsets}, then the raw little-endian tensor bytes. Files are memory-mapped; a tensor view
// points into the mapping, so weights are copied at most once (into the dtype/device the model
// computes in) and never read through a buffer. Every malformed header (bad length, bad JSON,
// overlapping or out-of-range offsets, size that does not match the shape) is reported as
// kCorruption naming the file and the tensor.
//
// Thread-safety: a SafetensorsFile is immutable after open(); views may be read from several
// threads.
#ifndef BLOCKRANK_RANKER_CORE_SAFETENSORS_H_
#define BLOCKRANK_RANKER_CORE_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "blockrank/status.h"

namespace blockrank {

/// One tensor's entry in a safetensors header.
struct SafetensorsEntry {
  std::string dtype;           ///< "F32", "BF16", "F16", "I64", ...
  std::vector<int64_t> shape;  ///< Empty for a scalar.
  uint64_t begin = 0;          ///< Byte offset into the data section.
  uint64_t end = 0;
};

/// A read-only memory-mapped safetensors file.
class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  /// Maps `path` and validates its header. kNotFound/kIOError when it cannot be opened, kCorruption
  /// when the header or an offset is malformed, kUnimplemented for an unsupported dtype.
  static Status open(const std::string& path, std::shared_ptr<SafetensorsFile>* out);

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  /// A CPU tensor viewing the mapped bytes (zero copy; it keeps the mapping alive). The view is
  /// read-only by contract. kNotFound if the tensor is absent.
  StatusOr<at::Tensor> view(const std::string& name) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // Start of the data section.
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

/// Writes `tensors` (any device, contiguous or not; F32/BF16/F16/I64/I32 and bool) to `path` in
/// tensor-name order, with 8-byte aligned header padding as the reference writer does.
Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace blockrank

#endif  // BLOCKRANK_RANKER_CORE_SAFETENSORS_H_
