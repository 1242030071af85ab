-- wrk script: one OpenAI chat completion per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
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
