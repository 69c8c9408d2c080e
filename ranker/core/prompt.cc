// SPDX-License-Identifier: Apache-2.0
// BlockRank prompt rendering, per-piece tokenization and §1.4 truncation (see prompt.h). The
// strings are a data format the released checkpoint depends on: they follow upstream's
// `src/blockrank/utils.py` and `dataset.py` (BLOCKRANK.md §1.1-§1.2) character for character.
#include "ranker/core/prompt.h"

#include <algorithm>
#include <utility>

#include "plugin/base/strings.h"

namespace blockrank {
namespace {

// The instruction sentence of §1.1, verbatim.
constexpr std::string_view kInstruction =
    "You will be given a query and a list of documents. Each document will be formatted as ID: "
    "<id> | CONTENT: <content> | END ID: <id>. You need to read carefully and understand all of "
    "them and your goal is to find all document(s) from the list that can help answer the query.";

// Upstream joins the segments with a separator, renders the chat template, splits on the separator
// and prepends "\n" to every piece except the first and the last (§1.2). We render the pieces
// directly; the leading "\n" of the document and query pieces below is that prepended newline.
constexpr std::string_view kPieceNewline = "\n";

std::string document_content(const PromptDocument& doc) {
  // dataset.py `_sample_and_format`: (title + " " + text).strip().
  std::string joined = doc.title;
  joined += ' ';
  joined += doc.text;
  return strip_whitespace(joined);
}

std::string id_line(size_t k, const std::string& content) {
  const std::string id = std::to_string(k);
  return "ID: " + id + " | CONTENT: " + content + " | END ID: " + id;
}

PromptPieces render_mistral(std::string_view query, const std::vector<PromptDocument>& docs) {
  // Mistral-7B-Instruct-v0.3 renders `<s>[INST] {user}[/INST] {assistant}`; with
  // continue_final_message the text ends right after the assistant's open "[" (no EOS).
  PromptPieces p;
  p.instruction = "<s>[INST] ";
  p.instruction += kInstruction;
  p.instruction += "\nQuery: ";
  p.instruction += query;
  p.instruction += "\n\nDocuments:";
  p.documents.reserve(docs.size());
  for (size_t k = 0; k < docs.size(); ++k) {
    p.documents.push_back(std::string(kPieceNewline) + id_line(k, document_content(docs[k])));
  }
  // The final user segment starts with its own "\n", so the query block begins with two newlines.
  p.query_prompt = std::string(kPieceNewline);
  p.query_prompt +=
      "\n====== Now let's start! ======\n"
      "Which document is most relevant to answer the query? Print out the ID of the document.\n"
      "Query: ";
  p.query_prompt += query;
  p.query_prompt += "\nThe following document(s) can help answer the query:";
  p.query_prompt += "[/INST] Final Answer: ";  // end of user turn, then the assistant prefix
  p.completion = "[";
  return p;
}

PromptPieces render_chatml(std::string_view query, const std::vector<PromptDocument>& docs) {
  // Upstream's Qwen variant (§1.8, unfinished there) rendered with ChatML: system message, a user
  // message of "<Instruct>: ...\n<Query>: q\n" + one "<Document>: ..." segment per document + a
  // final empty segment, then the assistant's <think> preamble and "<Answer>: " + "[". The
  // instruct text is not given upstream; we reuse the Mistral instruction sentence. No BOS: Qwen
  // tokenizers have none.
  PromptPieces p;
  p.instruction =
      "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
      "and the Instruct provided.<|im_end|>\n<|im_start|>user\n<Instruct>: ";
  p.instruction += kInstruction;
  p.instruction += "\n<Query>: ";
  p.instruction += query;
  p.instruction += "\n";
  p.documents.reserve(docs.size());
  for (size_t k = 0; k < docs.size(); ++k) {
    p.documents.push_back(std::string(kPieceNewline) +
                          "<Document>: " + id_line(k, document_content(docs[k])));
  }
  p.query_prompt = std::string(kPieceNewline);  // + the empty final user segment
  p.query_prompt +=
      "<|im_end|>\n<|im_start|>assistant\n<think>I need to give the IDs of the most relevant "
      "documents in the list for the query: ";
  p.query_prompt += query;
  p.query_prompt += " formatted as list [...].</think>\n<Answer>: ";
  p.completion = "[";
  return p;
}

// Byte length of the Unicode whitespace character starting at s[i], or 0.
size_t whitespace_at(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) {
    return 1;
  }
  auto byte = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0; };
  if (c == 0xC2 && (byte(1) == 0x85 || byte(1) == 0xA0)) {
    return 2;  // U+0085, U+00A0
  }
  if (c == 0xE1 && byte(1) == 0x9A && byte(2) == 0x80) {
    return 3;  // U+1680
  }
  if (c == 0xE2 && byte(1) == 0x80 &&
      ((byte(2) >= 0x80 && byte(2) <= 0x8A) || byte(2) == 0xA8 || byte(2) == 0xA9 ||
       byte(2) == 0xAF)) {
    return 3;  // U+2000..U+200A, U+2028, U+2029, U+202F
  }
  if (c == 0xE2 && byte(1) == 0x81 && byte(2) == 0x9F) {
    return 3;  // U+205F
  }
  if (c == 0xE3 && byte(1) == 0x80 && byte(2) == 0x80) {
    return 3;  // U+3000
  }
  return 0;
}

// Length in bytes of the whitespace run ending at s[end) (scans back over UTF-8 lead bytes).
size_t trailing_whitespace(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && end - start < 3 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
      --start;
    }
    if (whitespace_at(s, start) != end - start) {
      break;
    }
    end = start;
  }
  return s.size() - end;
}

int64_t round_up_16(int64_t n) {
  return (n + 15) / 16 * 16;
}

Status encode_piece(const Tokenizer& tokenizer,
                    const std::string& piece,
                    const char* what,
                    std::vector<int32_t>* ids) {
  ids->clear();
  Status s = tokenizer.encode(piece, ids);
  if (!s.is_ok()) {
    return Status(s.code(), std::string(what) + ": " + s.message());
  }
  return Status::ok();
}

}  // namespace

const char* prompt_template_name(PromptTemplate tmpl) {
  switch (tmpl) {
    case PromptTemplate::kMistral:
      return "mistral";
    case PromptTemplate::kChatML:
      return "chatml";
  }
  return "?";
}

StatusOr<PromptTemplate> parse_prompt_template(std::string_view name) {
  if (name == "mistral") {
    return PromptTemplate::kMistral;
  }
  // "qwen" is upstream's name for the variant (§1.8); checkpoints may carry it.
  if (name == "chatml" || name == "qwen") {
    return PromptTemplate::kChatML;
  }
  return Status::invalid_argument("prompt template '" + std::string(name) +
                                  "': expected \"mistral\" or \"chatml\" (alias \"qwen\")");
}

std::string strip_whitespace(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    const size_t n = whitespace_at(s, begin);
    if (n == 0) {
      break;
    }
    begin += n;
  }
  s.remove_prefix(begin);
  s.remove_suffix(trailing_whitespace(s));
  return std::string(s);
}

PromptPieces render_prompt_pieces(PromptTemplate tmpl,
                                  std::string_view query,
                                  const std::vector<PromptDocument>& documents) {
  return tmpl == PromptTemplate::kChatML ? render_chatml(query, documents)
                                         : render_mistral(query, documents);
}

int64_t truncated_block_length(int64_t longest_block, int64_t max_block_length) {
  return round_up_16(std::min(longest_block, max_block_length));
}

Status fit_query_block(const Tokenizer& tokenizer,
                       PromptTemplate tmpl,
                       std::string_view query,
                       const std::vector<int32_t>& completion,
                       int64_t h,
                       int64_t max_block_length,
                       const std::string& context,
                       std::vector<int32_t>* query_block,
                       bool* truncated) {
  *truncated = false;
  if (static_cast<int64_t>(query_block->size()) <= h) {
    return Status::ok();
  }
  const std::string what = context + "query";
  std::vector<int32_t> query_ids;
  BLOCKRANK_RETURN_IF_ERROR(encode_piece(tokenizer, std::string(query), what.c_str(), &query_ids));
  auto block_for = [&](size_t keep, std::vector<int32_t>* ids) -> Status {
    std::string text;
    BLOCKRANK_RETURN_IF_ERROR(tokenizer.decode(
        std::vector<int32_t>(query_ids.begin(),
                             query_ids.begin() + static_cast<std::ptrdiff_t>(keep)),
        &text));
    // A cut inside a multi-byte character decodes to invalid UTF-8, which encode() rejects.
    const PromptPieces cut = render_prompt_pieces(tmpl, strip_whitespace(sanitize_utf8(text)), {});
    BLOCKRANK_RETURN_IF_ERROR(encode_piece(tokenizer, cut.query_prompt, what.c_str(), ids));
    ids->insert(ids->end(), completion.begin(), completion.end());
    return Status::ok();
  };
  std::vector<int32_t> best;
  BLOCKRANK_RETURN_IF_ERROR(block_for(0, &best));
  if (static_cast<int64_t>(best.size()) > h) {
    return Status::invalid_argument(
        context + "max_block_length " + std::to_string(max_block_length) + " (H = " +
        std::to_string(h) + ") is too small for the query block's fixed text and the completion (" +
        std::to_string(best.size()) + " tokens without the query)");
  }
  size_t lo = 0, hi = query_ids.size();  // invariant: keeping lo tokens fits
  while (lo < hi) {
    const size_t mid = lo + (hi - lo + 1) / 2;
    std::vector<int32_t> ids;
    BLOCKRANK_RETURN_IF_ERROR(block_for(mid, &ids));
    if (static_cast<int64_t>(ids.size()) <= h) {
      lo = mid;
      best = std::move(ids);
    } else {
      hi = mid - 1;
    }
  }
  *query_block = std::move(best);
  *truncated = true;
  return Status::ok();
}

Status build_prompt(const Tokenizer& tokenizer,
                    std::string_view query,
                    const std::vector<PromptDocument>& documents,
                    const PromptOptions& options,
                    Prompt* out) {
  if (documents.empty()) {
    return Status::invalid_argument("the prompt needs at least one document");
  }
  if (options.max_block_length < 1) {
    return Status::invalid_argument("max_block_length must be >= 1");
  }
  const PromptPieces pieces = render_prompt_pieces(options.tmpl, query, documents);
  std::vector<std::vector<int32_t>> blocks(documents.size() + 2);
  BLOCKRANK_RETURN_IF_ERROR(encode_piece(tokenizer, pieces.instruction, "query", &blocks.front()));
  for (size_t k = 0; k < documents.size(); ++k) {
    BLOCKRANK_RETURN_IF_ERROR(encode_piece(
        tokenizer, pieces.documents[k], ("document " + std::to_string(k)).c_str(), &blocks[k + 1]));
  }
  std::vector<int32_t> completion;
  BLOCKRANK_RETURN_IF_ERROR(encode_piece(tokenizer, pieces.completion, "completion", &completion));
  std::vector<int32_t>& query_block = blocks.back();
  BLOCKRANK_RETURN_IF_ERROR(encode_piece(tokenizer, pieces.query_prompt, "query", &query_block));
  // The collator merges the completion into the last prompt block (§1.3).
  query_block.insert(query_block.end(), completion.begin(), completion.end());

  Prompt p;
  int64_t longest = 0;
  for (const auto& b : blocks) {
    p.untruncated_lengths.push_back(static_cast<int32_t>(b.size()));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(b.size()));
  }
  const int64_t h = truncated_block_length(longest, options.max_block_length);
  p.block_length = h;

  BLOCKRANK_RETURN_IF_ERROR(fit_query_block(tokenizer, options.tmpl, query, completion, h,
                                            options.max_block_length, "", &query_block,
                                            &p.query_truncated));

  for (auto& b : blocks) {
    if (static_cast<int64_t>(b.size()) > h) {
      b.resize(static_cast<size_t>(h));  // the first H tokens, as the collator keeps
    }
    p.input.block_lengths.push_back(static_cast<int32_t>(b.size()));
    p.input.input_ids.insert(p.input.input_ids.end(), b.begin(), b.end());
  }
  *out = std::move(p);
  return Status::ok();
}

}  // namespace blockrank
