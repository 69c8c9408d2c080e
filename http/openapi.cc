// SPDX-License-Identifier: Apache-2.0
// The OpenAPI 3.1 document served at /openapi.json and the search page served at /. Both are
// static; the schemas mirror http/api.cc's parsers (field names, types, limits).
#include "http/api.h"

namespace blockrank {

const std::string& openapi_json() {
  static const std::string kSpec = R"JSON({
  "openapi": "3.1.0",
  "info": {"title": "blockrank", "version": "0.1.0",
           "description": "BM25 retrieval (Xapian) with BlockRank in-context reranking."},
  "paths": {
    "/v1/search": {"post": {
      "summary": "BM25 search, optionally reranked by the loaded model",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"}}}},
      "responses": {"200": {"description": "Results", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}}},
                    "400": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Busy"}}}},
    "/v1/rerank": {"post": {
      "summary": "Rerank documents for a query (Cohere/Jina request shape)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RerankRequest"}}}},
      "responses": {"200": {"description": "Documents by descending relevance", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RerankResponse"}}}},
                    "400": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Busy"}}}},
    "/rerank": {"post": {"summary": "Alias of /v1/rerank", "responses": {"200": {"description": "As /v1/rerank"}}}},
    "/v1/documents": {"post": {
      "summary": "Add or replace documents (committed atomically, visible to later searches)",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DocumentsRequest"}}}},
      "responses": {"200": {"description": "Counts", "content": {"application/json": {"schema": {"type": "object", "properties": {"added": {"type": "integer"}, "replaced": {"type": "integer"}}}}}},
                    "400": {"$ref": "#/components/responses/Error"}}}},
    "/v1/documents/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"summary": "Fetch a stored document", "responses": {"200": {"description": "The document", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Document"}}}}, "404": {"$ref": "#/components/responses/Error"}}},
      "delete": {"summary": "Delete a document", "responses": {"200": {"description": "Deleted"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "The process serves requests"}}}},
    "/ready": {"get": {"summary": "Readiness (index open, model loaded)", "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4)", "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    "/": {"get": {"summary": "Search page", "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}}
  },
  "components": {
    "schemas": {
      "SearchRequest": {"type": "object", "required": ["query"], "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 16384},
        "k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
        "candidates": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "BM25 candidates given to the reranker"},
        "rerank": {"type": "boolean", "default": true},
        "fusion": {"type": "string", "examples": ["rerank", "interpolate:0.9", "interpolate"], "description": "How reranked candidates are ordered: rerank (the model's scores) or interpolate:ALPHA (ALPHA x min-max BM25 + (1 - ALPHA) x min-max model score over the candidates, ALPHA a number in [0, 1]; bare interpolate: 0.5); default: the server's --fusion"}}},
      "SearchResponse": {"type": "object", "properties": {
        "reranked": {"type": "boolean"},
        "fusion": {"type": "string", "description": "The fusion that ordered the results (when reranked)"},
        "results": {"type": "array", "items": {"type": "object", "properties": {
          "rank": {"type": "integer"}, "bm25_rank": {"type": "integer"}, "doc_id": {"type": "string"},
          "score": {"type": "number", "description": "The fused score when reranked, else BM25's"}, "bm25_score": {"type": "number"}, "rerank_score": {"type": "number", "description": "The reranker's own score (when reranked)"}, "title": {"type": "string"}, "snippet": {"type": "string"}}}},
        "timings": {"type": "object", "properties": {"retrieve_ms": {"type": "number"}, "rerank_ms": {"type": "number"}, "total_ms": {"type": "number"}}}}},
      "RerankRequest": {"type": "object", "required": ["query", "documents"], "properties": {
        "model": {"type": "string"},
        "query": {"type": "string", "minLength": 1},
        "documents": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"oneOf": [
          {"type": "string"}, {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}, "title": {"type": "string"}}}]}},
        "top_n": {"type": "integer", "minimum": 1},
        "return_documents": {"type": "boolean", "default": false},
        "max_tokens_per_doc": {"type": "integer", "minimum": 1}}},
      "RerankResponse": {"type": "object", "properties": {
        "id": {"type": "string"}, "model": {"type": "string"},
        "results": {"type": "array", "items": {"type": "object", "properties": {
          "index": {"type": "integer"}, "relevance_score": {"type": "number", "description": "BlockRank attention mass on the document (scores of one request sum to 1)"},
          "document": {"type": "object", "properties": {"text": {"type": "string"}, "title": {"type": "string"}}}}}},
        "usage": {"type": "object", "properties": {"total_tokens": {"type": "integer"}}}}},
      "DocumentsRequest": {"type": "object", "required": ["documents"], "properties": {
        "documents": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Document"}}}},
      "Document": {"type": "object", "required": ["id", "text"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "text": {"type": "string"}}},
      "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}}}}}
    },
    "responses": {
      "Error": {"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Busy": {"description": "Queue full or model unavailable; see Retry-After", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  }
})JSON";
  return kSpec;
}

const std::string& search_page_html() {
  static const std::string kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>blockrank search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
form{display:flex;gap:.5rem}input[type=text]{flex:1;padding:.5rem;font-size:1rem}
button{padding:.5rem 1rem}table{border-collapse:collapse;width:100%;margin-top:1rem}
td,th{border-bottom:1px solid #ddd;padding:.4rem;vertical-align:top;text-align:left}
.rank{font-variant-numeric:tabular-nums;width:4rem}.up{color:#080}.down{color:#b00}.muted{color:#777}
</style></head><body>
<h1>blockrank</h1>
<form id="f"><input id="q" type="text" placeholder="Search…" autofocus>
<label><input id="rr" type="checkbox" checked> rerank</label><button type="submit">Search</button></form>
<p id="status" class="muted"></p>
<table id="results"><thead><tr><th class="rank">rank</th><th class="rank">BM25 rank</th>
<th>document</th><th>score</th></tr></thead><tbody></tbody></table>
<script>
const f=document.getElementById('f'),tb=document.querySelector('#results tbody'),st=document.getElementById('status');
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
async function run(){
 const body={query:document.getElementById('q').value,k:10,rerank:document.getElementById('rr').checked};
 st.textContent='searching…';tb.innerHTML='';
 try{const r=await fetch('/v1/search',{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(body)});
  const j=await r.json();if(!r.ok){st.textContent='error: '+(j.error?j.error.message:r.status);return;}
  st.textContent=(j.reranked?'reranked':'BM25 only')+' · '+j.results.length+' results · '+j.timings.total_ms.toFixed(1)+' ms';
  for(const h of j.results){const d=h.bm25_rank-h.rank;const cls=d>0?'up':(d<0?'down':'muted');
   tb.insertAdjacentHTML('beforeend','<tr class="hit"><td class="rank">'+h.rank+'</td><td class="rank '+cls+'">'+h.bm25_rank+
   '</td><td><b>'+esc(h.title||h.doc_id)+'</b> <span class="muted">'+esc(h.doc_id)+'</span><br>'+esc(h.snippet)+'</td><td>'+h.score.toPrecision(4)+'</td></tr>');}
 }catch(err){st.textContent='error: '+err;}}
f.addEventListener('submit',e=>{e.preventDefault();run();});
// /?q=words searches at once (bookmarkable, and how the headless-browser test drives the page).
const q0=new URLSearchParams(location.search).get('q');if(q0){document.getElementById('q').value=q0;run();}
</script></body></html>
)HTML";
  return kPage;
}

}  // namespace blockrank
