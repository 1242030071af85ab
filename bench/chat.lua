-- wrk script: one OpenAI chat completion per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
-- BENCH_HEADERS: more request headers, "Name: value" pairs separated by "|" (bench/peers.sh
-- tells Portkey's gateway where the upstream is this way).
local extra = os.getenv("BENCH_HEADERS")
if extra ~= nil and extra ~= "" then
  for pair in string.gmatch(extra, "[^|]+") do
    local name, value = string.match(pair, "^%s*([^:]+):%s*(.-)%s*$")
    if name ~= nil then wrk.headers[name] = value end
  end
end
if os.getenv("BENCH_STREAM") == "1" then
  wrk.body = '{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Say hello"}]}'
else
  wrk.body = '{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}'
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99), errors, summary.requests))
end
