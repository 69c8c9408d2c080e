-- wrk script: POST /v1/search with a rotating set of queries (BM25 only unless RERANK=1).
local queries = {
  "measurement of dielectric constant of liquids", "microwave radiation waveguide",
  "digital computers in control of machinery", "transistor amplifier noise",
  "vegetarian diet environment", "nuclear power plants safety", "school uniforms",
  "freedom of speech internet", "ban on smoking in public", "animal testing medicine",
  "solar energy subsidies", "compulsory voting democracy", "space exploration funding",
  "bread yeast baking", "moon eclipse shadow", "plants sugar light",
}
local rerank = os.getenv("RERANK") == "1" and "true" or "false"
local k = os.getenv("K") or "10"
local cands = os.getenv("CANDIDATES") or "20"
local i = 0
request = function()
  i = i + 1
  local q = queries[(i % #queries) + 1]
  local body = string.format('{"query": "%s", "k": %s, "candidates": %s, "rerank": %s}', q, k, cands, rerank)
  return wrk.format("POST", "/v1/search", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d non2xx=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
