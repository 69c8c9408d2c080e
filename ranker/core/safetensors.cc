// SPDX-License-Identifier: Apache-2.0
// safetensors reader (mmap) and writer. See safetensors.h for the format and the error contract.
#include "ranker/core/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <nlohmann/json.hpp>
#include <sys/mman.h>
#include <sys/stat.h>

namespace blockrank {
namespace {

// The reference implementation refuses headers above 100 MB; so do we (a corrupt length must not
// make us allocate gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  int64_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {"F32", at::kFloat, 4},  {"BF16", at::kBFloat16, 2}, {"F16", at::kHalf, 2},
    {"F64", at::kDouble, 8}, {"I64", at::kLong, 8},      {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},  {"I8", at::kChar, 1},       {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      return &d;
    }
  }
  return nullptr;
}

const DtypeInfo* find_dtype(at::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) {
      return &d;
    }
  }
  return nullptr;
}

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) {
    munmap(map_, map_size_);
  }
}

Status SafetensorsFile::open(const std::string& path, std::shared_ptr<SafetensorsFile>* out) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return err == ENOENT ? Status::not_found(path + ": no such file")
                         : Status::io_error(path + ": " + std::strerror(err));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::io_error(path + ": " + std::strerror(err));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Status::corruption(path + ": truncated safetensors file (" + std::to_string(size) +
                              " bytes, need at least the 8-byte header length)");
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    return Status::io_error(path + ": mmap failed: " + std::strerror(errno));
  }
  file->map_ = map;
  file->map_size_ = size;
  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | bytes[i];  // little-endian
  }
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Status::corruption(path + ": header length " + std::to_string(header_len) +
                              " exceeds the file size " + std::to_string(size) +
                              " (truncated file?)");
  }
  file->data_ = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8),
                                   reinterpret_cast<const char*>(bytes + 8 + header_len));
  } catch (const nlohmann::json::exception& e) {
    return Status::corruption(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) {
    return Status::corruption(path + ": header is not a JSON object");
  }
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_object()) {
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (m.value().is_string()) {
            file->metadata_[m.key()] = m.value().get<std::string>();
          }
        }
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v["dtype"].is_string() || !v.contains("shape") ||
        !v["shape"].is_array() || !v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      return Status::corruption(
          where + ": entry needs string 'dtype', array 'shape', 2-element 'data_offsets'");
    }
    SafetensorsEntry e;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    if (info == nullptr) {
      return Status::unimplemented(where + ": unsupported dtype '" + e.dtype + "'");
    }
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) {
        return Status::corruption(where + ": 'shape' must hold non-negative integers");
      }
      e.shape.push_back(d.get<int64_t>());
      numel *= d.get<uint64_t>();
    }
    if (!v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned()) {
      return Status::corruption(where + ": 'data_offsets' must be non-negative integers");
    }
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size) {
      return Status::corruption(where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                                std::to_string(e.end) + ") outside the data section of " +
                                std::to_string(data_size) + " bytes (truncated file?)");
    }
    if (e.end - e.begin != numel * static_cast<uint64_t>(info->size)) {
      return Status::corruption(where + ": " + std::to_string(e.end - e.begin) +
                                " bytes do not match shape (" + std::to_string(numel) + " x " +
                                e.dtype + ")");
    }
    file->entries_.emplace(name, std::move(e));
  }
  *out = std::move(file);
  return Status::ok();
}

StatusOr<at::Tensor> SafetensorsFile::view(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return Status::not_found(path_ + ": no tensor '" + name + "'");
  }
  const SafetensorsEntry& e = it->second;
  const DtypeInfo* info = find_dtype(e.dtype);
  void* ptr = const_cast<uint8_t*>(data_ + e.begin);
  try {
    auto options = at::TensorOptions().dtype(info->type).device(at::kCPU);
    if (reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(info->size) != 0) {
      // Misaligned data (legal in the format, rare in practice): ATen kernels need aligned
      // elements.
      at::Tensor t = at::empty(e.shape, options);
      std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
      return t;
    }
    // The deleter holds a reference to the file so the mapping outlives every view.
    auto self = std::const_pointer_cast<SafetensorsFile>(shared_from_this());
    return at::from_blob(
        ptr, e.shape, [self](void*) {}, options);
  } catch (const c10::Error& err) {
    return Status::internal(path_ + ": tensor '" + name + "': " + err.what_without_backtrace());
  }
}

Status write_safetensors(const std::string& path,
                         const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  try {
    std::vector<std::pair<std::string, at::Tensor>> sorted = tensors;
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) {
      header["__metadata__"] = metadata;
    }
    std::vector<at::Tensor> cpu;
    uint64_t offset = 0;
    for (const auto& [name, t] : sorted) {
      const DtypeInfo* info = find_dtype(t.scalar_type());
      if (info == nullptr) {
        return Status::unimplemented(path + ": tensor '" + name + "': dtype not writable");
      }
      at::Tensor c = t.to(at::kCPU).contiguous();
      const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * static_cast<uint64_t>(info->size);
      header[name] = {{"dtype", info->name},
                      {"shape", c.sizes().vec()},
                      {"data_offsets", {offset, offset + nbytes}}};
      offset += nbytes;
      cpu.push_back(std::move(c));
    }
    std::string text = header.dump();
    while ((text.size() + 8) % 8 != 0) {
      text.push_back(' ');  // The reference pads the header with spaces to 8-byte alignment.
    }
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) {
      return Status::io_error(path + ": cannot open for writing");
    }
    uint64_t len = text.size();
    char len_bytes[8];
    for (int i = 0; i < 8; ++i) {
      len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
    }
    f.write(len_bytes, 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& c : cpu) {
      f.write(static_cast<const char*>(c.data_ptr()),
              static_cast<std::streamsize>(c.numel() * c.element_size()));
    }
    f.close();
    if (!f) {
      return Status::io_error(path + ": write failed");
    }
    return Status::ok();
  } catch (const c10::Error& err) {
    return Status::internal(path + ": " + err.what_without_backtrace());
  }
}

}  // namespace blockrank
