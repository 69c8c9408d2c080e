// SPDX-License-Identifier: Apache-2.0
// HfTokenizer: the Tokenizer implementation for Hugging Face tokenizer.json files with a BPE
// model. It runs the same pipeline as the reference (transformers.js, ported to npm as
// @lenml/tokenizers): split out added tokens (longest match, with lstrip/rstrip), normalize each
// remaining section, pre-tokenize it into words, run BPE per word; and for decoding, map ids to
// token strings and run the decoder chain.
//
// Supported components (others give kUnimplemented naming the component):
//   normalizer:    NFC, NFD, NFKC, NFKD, Prepend, Replace, Sequence
//   pre_tokenizer: Split (Isolated, Removed, invert), ByteLevel, Metaspace, Sequence
//   model:         BPE (byte_fallback, ignore_merges, fuse_unk, unk_token)
//   decoder:       ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence
// post_processor is ignored: encode() never adds special tokens.
//
// Where transformers.js and the Rust `tokenizers` crate disagree, the JavaScript behaviour is
// followed for what the reference vocabularies exercise, and the difference is noted at the code.
//
// Thread-safety: immutable after load; encode()/decode() may run concurrently.
#ifndef BLOCKRANK_RANKER_TOKENIZER_HF_TOKENIZER_H_
#define BLOCKRANK_RANKER_TOKENIZER_HF_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>

#include "blockrank/status.h"
#include "ranker/tokenizer/tokenizer.h"

namespace blockrank::internal {

/// Builds a tokenizer from tokenizer.json `content`. `source` names the file in messages;
/// `config_content` is the optional tokenizer_config.json beside it (empty if none), read only
/// for the bos/eos/unk/pad token names.
Status build_hf_tokenizer(std::string_view content,
                          std::string_view config_content,
                          const std::string& source,
                          std::unique_ptr<Tokenizer>* out);

}  // namespace blockrank::internal

#endif  // BLOCKRANK_RANKER_TOKENIZER_HF_TOKENIZER_H_
