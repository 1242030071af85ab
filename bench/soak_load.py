#!/usr/bin/env python3
"""Mixed load for bench/soak.sh, faults included, until the time is up; then one JSON summary.

Worker threads on keep-alive connections send chat completions to the flaky group `soak`
(every third one streamed), and mixed in:
  - every 7th request: a stream whose client hangs up after the first chunk (raw socket);
  - every 5th: group `soak-junk`, whose upstream answers every 3rd call with a 200 that is not
    JSON (the gateway may answer it 200 or 502, never anything else);
  - every 11th: group `soak-absurd`, whose upstream reports u64::MAX tokens (streamed or not).
A fault thread adds, twice a second, a request declaring a 2 MB body (413 before the body is
read) or one with 20 KB of `metadata` (400), and every 8 s a wrong key (401; kept under the
gateway's 10 failures a minute per address, after which the address would get 429s).

`routed` counts the requests that reach a model (one spend row each, answered or hung up);
refused ones (wrong key, oversized) leave no row."""
import http.client
import json
import socket
import sys
import threading
import time
from collections import Counter

host, port, key, seconds, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
deadline = time.monotonic() + seconds
lock = threading.Lock()
statuses = Counter()          # answers from the `soak` and `soak-absurd` groups
junk_statuses = Counter()     # answers from `soak-junk`
refused = Counter()           # "<kind> <status>" for wrong keys and oversized requests
stream_errors = 0
transport_errors = 0
hangups = 0
routed = 0
latencies = []


def body(model, stream, **extra):
    return json.dumps({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello to the soak test"}],
        **extra,
    })


def status_of(head):
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def raw(request, until):
    """Send raw bytes on a fresh connection, read until `until` is seen (or the end), close."""
    s = socket.create_connection((host, port), timeout=30)
    try:
        s.sendall(request)
        buf = b""
        while until not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        s.close()


def hang_up_mid_stream():
    global hangups, routed, transport_errors
    payload = body("soak", True).encode()
    # `Connection: close`: an answer that is not a stream (an error) ends with the connection.
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
           f"Content-Type: application/json\r\nConnection: close\r\n"
           f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    try:
        got = raw(req, b"data:")
    except OSError:
        with lock:
            transport_errors += 1
        return
    with lock:
        routed += 1
        if status_of(got) == 200:
            hangups += 1
        else:
            statuses[status_of(got)] += 1


def fault_thread():
    global transport_errors
    n = 0
    next_bad_key = time.monotonic()
    while time.monotonic() < deadline:
        n += 1
        try:
            if time.monotonic() >= next_bad_key:
                next_bad_key += 8
                c = http.client.HTTPConnection(host, port, timeout=30)
                c.request("POST", "/v1/chat/completions", body("soak", False),
                          {"Content-Type": "application/json", "Authorization": "Bearer sk-soak-wrong-key-0001"})
                kind, status = "wrong_key", c.getresponse().status
                c.close()
            elif n % 2:
                # Declared past max_request_size_mb: answered without reading the body.
                req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                       "Content-Type: application/json\r\nConnection: close\r\n"
                       "Content-Length: 2000000\r\n\r\n{\"model\":").encode()
                kind, status = "oversized_body", status_of(raw(req, b"\r\n"))
            else:
                c = http.client.HTTPConnection(host, port, timeout=30)
                c.request("POST", "/v1/chat/completions", body("soak", False, metadata={"blob": "x" * 20000}),
                          {"Content-Type": "application/json", "Authorization": "Bearer " + key})
                kind, status = "oversized_metadata", c.getresponse().status
                c.close()
        except OSError:
            with lock:
                transport_errors += 1
            continue
        with lock:
            refused[f"{kind} {status}"] += 1
        time.sleep(0.5)


def worker(n):
    global stream_errors, transport_errors, routed
    conn = None
    i = n
    while time.monotonic() < deadline:
        i += 1
        if i % 7 == 0:
            hang_up_mid_stream()
            continue
        if i % 5 == 0:
            model, stream = "soak-junk", False
        elif i % 11 == 0:
            model, stream = "soak-absurd", i % 2 == 0
        else:
            model, stream = "soak", i % 3 == 0
        if conn is None:
            # Generous: the gateway itself bounds every request (timeouts, retries, fallbacks).
            conn = http.client.HTTPConnection(host, port, timeout=120)
        t = time.monotonic()
        try:
            conn.request("POST", "/v1/chat/completions", body(model, stream), {
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
            routed += 1
            if model == "soak-junk":
                junk_statuses[resp.status] += 1
            else:
                statuses[resp.status] += 1
                latencies.append(time.monotonic() - t)
                if bad_stream:
                    stream_errors += 1
        if resp.will_close:
            conn.close()
            conn = None


threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
threads.append(threading.Thread(target=fault_thread))
for t in threads:
    t.start()
for t in threads:
    t.join()
latencies.sort()
pct = lambda p: round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0
print(json.dumps({
    "answered": sum(statuses.values()) + sum(junk_statuses.values()),
    "routed": routed,
    "hangups": hangups,
    "statuses": {str(k): v for k, v in sorted(statuses.items())},
    "junk_statuses": {str(k): v for k, v in sorted(junk_statuses.items())},
    "refused": dict(sorted(refused.items())),
    "five_xx": sum(v for k, v in statuses.items() if k >= 500),
    "stream_errors": stream_errors,
    "transport_errors": transport_errors,
    "p50_ms": pct(0.5),
    "p99_ms": pct(0.99),
    "max_ms": pct(1.0),
}))
