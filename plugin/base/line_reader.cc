// SPDX-License-Identifier: Apache-2.0
#include "line_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>

#include <sys/stat.h>

namespace blockrank {

namespace {
constexpr size_t kChunk = 1 << 18;
}

LineReader::~LineReader() {
  if (gz_ != nullptr) {
    gzclose(static_cast<gzFile>(gz_));
  }
}

Status LineReader::open(const std::string& path, std::unique_ptr<LineReader>* out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return Status::not_found(path + ": no such file");
    }
    return Status::io_error(path + ": " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    return Status::invalid_argument(path + ": is a directory, expected a file");
  }
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr) {
    return Status::io_error(path + ": cannot open: " + std::strerror(errno));
  }
  gzbuffer(gz, 1 << 17);
  std::unique_ptr<LineReader> reader(new LineReader());
  reader->path_ = path;
  reader->gz_ = gz;
  reader->file_size_ = static_cast<uint64_t>(st.st_size);
  *out = std::move(reader);
  return Status::ok();
}

bool LineReader::fill() {
  if (at_eof_) {
    return false;
  }
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  const size_t old = buf_.size();
  buf_.resize(old + kChunk);
  const int n = gzread(static_cast<gzFile>(gz_), buf_.data() + old, kChunk);
  if (n < 0) {
    int errnum = 0;
    const char* msg = gzerror(static_cast<gzFile>(gz_), &errnum);
    read_error_ = Status::corruption(path_ + ": read failed: " + (msg ? msg : "unknown error"));
    buf_.resize(old);
    at_eof_ = true;
    return false;
  }
  buf_.resize(old + static_cast<size_t>(n));
  if (n == 0) {
    at_eof_ = true;
    int errnum = 0;
    const char* msg = gzerror(static_cast<gzFile>(gz_), &errnum);
    if (errnum != Z_OK && errnum != Z_STREAM_END) {
      read_error_ = Status::corruption(path_ + ": " + (msg ? msg : "truncated gzip stream"));
    }
    return false;
  }
  return true;
}

Status LineReader::next(std::string* line, bool* eof) {
  *eof = false;
  for (;;) {
    const size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      line->assign(buf_, pos_, nl - pos_);
      pos_ = nl + 1;
      break;
    }
    if (!fill()) {
      if (!read_error_.is_ok()) {
        return read_error_;
      }
      if (pos_ >= buf_.size()) {
        *eof = true;
        line->clear();
        return Status::ok();
      }
      line->assign(buf_, pos_, std::string::npos);
      pos_ = buf_.size();
      break;
    }
  }
  if (!line->empty() && line->back() == '\r') {
    line->pop_back();
  }
  ++line_number_;
  return Status::ok();
}

Status LineReader::next_nonblank(std::string* line, bool* eof) {
  while (true) {
    BLOCKRANK_RETURN_IF_ERROR(next(line, eof));
    if (*eof || line->find_first_not_of(" \t\r\n") != std::string::npos) {
      return Status::ok();
    }
  }
}

std::string LineReader::location() const {
  return path_ + ":" + std::to_string(line_number_);
}

uint64_t LineReader::bytes_consumed() const {
  const z_off_t off = gzoffset(static_cast<gzFile>(gz_));
  return off < 0 ? 0 : static_cast<uint64_t>(off);
}

Status read_file(const std::string& path, std::string* out) {
  std::unique_ptr<LineReader> reader;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &reader));
  out->clear();
  std::string line;
  bool eof = false;
  bool first = true;
  for (;;) {
    BLOCKRANK_RETURN_IF_ERROR(reader->next(&line, &eof));
    if (eof) {
      break;
    }
    if (!first) {
      out->push_back('\n');
    }
    out->append(line);
    first = false;
  }
  return Status::ok();
}

Status write_file_atomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Status::io_error(tmp + ": " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      const std::string err = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::io_error(tmp + ": write failed: " + err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::io_error(tmp + ": " + err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::io_error(path + ": rename failed: " + err);
  }
  return Status::ok();
}

}  // namespace blockrank
