# SPDX-License-Identifier: Apache-2.0
# Finds the third-party libraries. Debian 12 ships CMake configs for most of them; on the GPU machine the
# Debian packages are only unpacked (no configs that resolve), so Xapian and RocksDB fall back to
# find_path/find_library and get imported targets of our own.
find_package(Threads REQUIRED)
find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 QUIET CONFIG)
if(NOT TARGET CLI11::CLI11)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  set_target_properties(CLI11::CLI11 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CLI11_INCLUDE_DIR}")
endif()

# Xapian: Debian's config defines variables only, no target.
find_path(XAPIAN_INCLUDE_DIR xapian.h REQUIRED)
find_library(XAPIAN_LIBRARY NAMES xapian REQUIRED)
add_library(blockrank::xapian_lib INTERFACE IMPORTED)
set_target_properties(blockrank::xapian_lib PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${XAPIAN_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${XAPIAN_LIBRARY}")

# PCRE2 (8-bit) and utf8proc for the tokenizer.
find_path(PCRE2_INCLUDE_DIR pcre2.h REQUIRED)
find_library(PCRE2_LIBRARY NAMES pcre2-8 REQUIRED)
add_library(blockrank::pcre2 INTERFACE IMPORTED)
set_target_properties(blockrank::pcre2 PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${PCRE2_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${PCRE2_LIBRARY}")
find_path(UTF8PROC_INCLUDE_DIR utf8proc.h REQUIRED)
find_library(UTF8PROC_LIBRARY NAMES utf8proc REQUIRED)
add_library(blockrank::utf8proc INTERFACE IMPORTED)
set_target_properties(blockrank::utf8proc PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${UTF8PROC_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${UTF8PROC_LIBRARY}")

# LibTorch: Debian's 1.13 (CPU) here, the CUDA build of the GPU machine's PyTorch there.
find_package(Torch QUIET)
if(Torch_FOUND)
  set(BLOCKRANK_HAVE_TORCH ON)
  message(STATUS "blockrank: LibTorch ${Torch_VERSION} found")
else()
  set(BLOCKRANK_HAVE_TORCH OFF)
  message(WARNING "blockrank: LibTorch not found; the ranker, training and rerank commands are not built")
endif()

if(BLOCKRANK_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()
