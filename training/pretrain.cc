// SPDX-License-Identifier: Apache-2.0
#include "training/pretrain.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "plugin/base/line_reader.h"

#include <nlohmann/json.hpp>

namespace blockrank::training {

Status read_text_chunks(const std::string& path,
                        const Tokenizer& tokenizer,
                        const TextChunkOptions& options,
                        std::vector<std::vector<int32_t>>* chunks,
                        TextChunkStats* stats) {
  chunks->clear();
  *stats = TextChunkStats();
  if (options.chunk_tokens < 1) {
    return Status::invalid_argument("pretraining chunks need at least 1 token");
  }
  const std::optional<int32_t> eos = tokenizer.eos_id();
  if (!eos) {
    return Status::invalid_argument(path + ": the tokenizer has no EOS token");
  }
  std::unique_ptr<LineReader> reader;
  BLOCKRANK_RETURN_IF_ERROR(LineReader::open(path, &reader));
  const size_t size = static_cast<size_t>(options.chunk_tokens);
  std::vector<int32_t> current, ids;
  std::string line;
  bool eof = false;
  while (options.max_documents <= 0 || stats->documents < options.max_documents) {
    BLOCKRANK_RETURN_IF_ERROR(reader->next_nonblank(&line, &eof));
    if (eof) {
      break;
    }
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) {
      return Status::invalid_argument(reader->location() + ": expected a JSON object");
    }
    std::string text;
    for (const std::string& field : options.text_fields) {
      const auto it = j.find(field);
      if (it == j.end() || it->is_null()) {
        continue;
      }
      if (!it->is_string()) {
        return Status::invalid_argument(reader->location() + ": field '" + field +
                                        "': expected a string");
      }
      const std::string& s = it->get_ref<const std::string&>();
      if (!s.empty()) {
        text += text.empty() ? s : " " + s;
      }
    }
    if (text.empty()) {
      ++stats->empty;
      continue;
    }
    ids.clear();
    const Status st = tokenizer.encode(text, &ids);
    if (!st.is_ok()) {
      return Status(st.code(), reader->location() + ": " + st.message());
    }
    ids.push_back(*eos);
    ++stats->documents;
    stats->tokens += static_cast<int64_t>(ids.size());
    for (int32_t id : ids) {
      current.push_back(id);
      if (current.size() == size) {
        chunks->push_back(std::move(current));
        current.clear();
      }
    }
  }
  return Status::ok();
}

TrainingExample make_lm_example(const std::vector<int32_t>& a,
                                const std::vector<int32_t>& b,
                                const std::vector<int32_t>& c,
                                int32_t bos_id) {
  TrainingExample e;
  e.query_id = "lm";
  e.input_ids.reserve(1 + a.size() + b.size() + c.size());
  e.input_ids.push_back(bos_id);
  for (const std::vector<int32_t>* chunk : {&a, &b, &c}) {
    e.input_ids.insert(e.input_ids.end(), chunk->begin(), chunk->end());
  }
  e.labels = e.input_ids;  // logits at i-1 predict token i (HF shift); the BOS has no label
  e.labels[0] = kIgnoreLabel;
  e.block_lengths = {static_cast<int32_t>(1 + a.size()), static_cast<int32_t>(b.size()),
                     static_cast<int32_t>(c.size())};
  e.positives = {0};
  e.signal_row = static_cast<int32_t>(e.input_ids.size()) - 1;
  e.doc_ids = {""};
  e.block_length = std::max({e.block_lengths[0], e.block_lengths[1], e.block_lengths[2]});
  return e;
}

}  // namespace blockrank::training
