#!/usr/bin/env python3
"""Mixed load for bench/soak.sh: worker threads with keep-alive connections send chat
completions (every third one streamed) until the time is up, then print one JSON summary:
status counts, streams that ended with an error event, transport errors."""
import http.client
import json
import sys
import threading
import time
from collections import Counter

host, port, key, seconds, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
deadline = time.monotonic() + seconds
lock = threading.Lock()
statuses = Counter()
stream_errors = 0
transport_errors = 0
latencies = []


def body(stream):
    return json.dumps({
        "model": "soak",
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello to the soak test"}],
    })


def worker(n):
    global stream_errors, transport_errors
    conn = None
    i = n
    while time.monotonic() < deadline:
        i += 1
        stream = i % 3 == 0
        if conn is None:
            # Generous: the gateway itself bounds every request (timeouts, retries, fallbacks).
            conn = http.client.HTTPConnection(host, port, timeout=120)
        t = time.monotonic()
        try:
            conn.request("POST", "/v1/chat/completions", body(stream), {
                "Content-Type": "application/json",
                "Authorization": "Bearer " + key,
            })
            resp = conn.getresponse()
            data = resp.read()
        except Exception:
            with lock:
                transport_errors += 1
            conn.close()
            conn = None
            continue
        bad_stream = stream and resp.status == 200 and (
            b'data: {"error"' in data or not data.endswith(b"data: [DONE]\n\n"))
        with lock:
            statuses[resp.status] += 1
            latencies.append(time.monotonic() - t)
            if bad_stream:
                stream_errors += 1


threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
latencies.sort()
pct = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0
print(json.dumps({
    "answered": sum(statuses.values()),
    "statuses": {str(k): v for k, v in sorted(statuses.items())},
    "five_xx": sum(v for k, v in statuses.items() if k >= 500),
    "stream_errors": stream_errors,
    "transport_errors": transport_errors,
    "p50_ms": pct(0.5),
    "p99_ms": pct(0.99),
    "max_ms": pct(1.0),
}))
