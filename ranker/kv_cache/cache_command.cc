// SPDX-License-Identifier: Apache-2.0
// `blockrank cache stats|clear --kv-cache DIR`: inspect or empty an instruction-prefix KV cache on
// disk. Runs without LibTorch. The store is opened exclusively (RocksDB's LOCK), so while a server
// holds it these commands fail with "unavailable" instead of printing an empty cache; the
// per-process counters (hits, misses) are the server's to export, only the stored state is shown.
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>

#include "plugin/base/cli_command.h"
#include "ranker/kv_cache/kv_cache.h"

#include <CLI/CLI.hpp>

namespace blockrank {
namespace {

struct CacheArgs {
  std::string kv_cache_dir;
};

Status open_store(const CacheArgs& args,
                  const std::shared_ptr<Logger>& logger,
                  std::unique_ptr<KvCache>* cache) {
  KvCacheOptions options;
  options.disk_path = args.kv_cache_dir;
  options.memory_budget_bytes = 0;
  options.create_if_missing = false;
  options.logger = logger;
  BLOCKRANK_RETURN_IF_ERROR(KvCache::open(options, cache));
  // open() degrades to memory-only on disk trouble; here the disk store is the whole point.
  return (*cache)->disk_status();
}

Status run_stats(const CacheArgs& args, const std::shared_ptr<Logger>& logger) {
  std::unique_ptr<KvCache> cache;
  BLOCKRANK_RETURN_IF_ERROR(open_store(args, logger, &cache));
  const KvCacheStats st = cache->stats();
  std::printf("kv_cache_dir: %s\n", args.kv_cache_dir.c_str());
  std::printf("disk_entries: %" PRIu64 "\n", st.disk_entries);
  std::printf("disk_bytes: %" PRIu64 " (%.1f MiB)\n", st.disk_bytes,
              static_cast<double>(st.disk_bytes) / (1 << 20));
  std::printf("disk_file_bytes: %" PRIu64 " (%.1f MiB)\n", st.disk_file_bytes,
              static_cast<double>(st.disk_file_bytes) / (1 << 20));
  std::printf("corrupt_rows_dropped_at_open: %" PRIu64 "\n", st.corruptions);
  return Status::ok();
}

Status run_clear(const CacheArgs& args, const std::shared_ptr<Logger>& logger) {
  std::unique_ptr<KvCache> cache;
  BLOCKRANK_RETURN_IF_ERROR(open_store(args, logger, &cache));
  const KvCacheStats before = cache->stats();
  BLOCKRANK_RETURN_IF_ERROR(cache->clear());
  const KvCacheStats after = cache->stats();
  std::printf("cleared %" PRIu64 " entries (%" PRIu64 " bytes); files now %" PRIu64 " bytes\n",
              before.disk_entries, before.disk_bytes, after.disk_file_bytes);
  return Status::ok();
}

}  // namespace

void add_cache_command(CLI::App& app, CommandContext& ctx) {
  auto args = std::make_shared<CacheArgs>();
  CLI::App* cmd = app.add_subcommand("cache", "Inspect or clear the instruction-prefix KV cache");
  cmd->require_subcommand(1);
  CLI::App* stats = cmd->add_subcommand("stats", "Print the entries and bytes stored on disk");
  stats->add_option("--kv-cache", args->kv_cache_dir, "KV cache directory (RocksDB store)")
      ->required();
  stats->callback([args, &ctx]() {
    ctx.exit_code = report_status("cache stats", run_stats(*args, ctx.logger));
  });
  CLI::App* clear = cmd->add_subcommand("clear", "Delete every entry and reclaim the disk space");
  clear->add_option("--kv-cache", args->kv_cache_dir, "KV cache directory (RocksDB store)")
      ->required();
  clear->callback([args, &ctx]() {
    ctx.exit_code = report_status("cache clear", run_clear(*args, ctx.logger));
  });
}

}  // namespace blockrank
