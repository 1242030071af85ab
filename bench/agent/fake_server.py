#!/usr/bin/env python3
"""A scripted fake OpenAI-compatible server for the agent bench (`run.py --fake`).

It answers `POST /v1/chat/completions` with the next step of a script: a tool call
(`{"tool": name, "args": {...}}`) or a final text (`{"text": ...}`). It is strict the way a
real server and a real model are: a step that calls a tool the request does not offer, or a
request that does not carry the result of the previous call, is answered with HTTP 400 and
logged, so the harness cannot pass a task the agent did not really do.

`GET /v1/models` reports the model with llama-server's `meta.n_params` (1.5B by default), so
the agent's automatic small-model profile is exercised end to end.

Usage: fake_server.py SCRIPT.json [--model NAME] [--n-params N] [--log FILE]
Prints `listening on http://127.0.0.1:PORT/v1` once ready.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, script, model, n_params, log):
        self.script = script
        self.model = model
        self.n_params = n_params
        self.log = log
        self.step = 0
        self.pending_call = None
        self.lock = threading.Lock()

    def record(self, entry):
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


def tokens(text):
    """A rough token count (4 characters a token), so usage is reported like a server would."""
    return max(1, len(text) // 4)


def tool_result_for(messages, call_id):
    for m in messages:
        if m.get("role") == "tool" and m.get("tool_call_id") == call_id:
            return m.get("content")
    return None


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"

    def log_message(self, fmt, *args):  # quiet: the runner prints what matters
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message):
        self.server.state.record({"error": message})
        self.send_json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self):
        st = self.server.state
        if self.path in ("/v1/models", "/models"):
            self.send_json(200, {"object": "list", "data": [{
                "id": st.model, "object": "model", "owned_by": "fake",
                "meta": {"n_params": st.n_params, "n_ctx": 32768}}]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        st = self.server.state
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.error(400, "the body is not JSON")
        if self.path not in ("/v1/chat/completions", "/chat/completions"):
            return self.send_json(404, {"error": {"message": "not found"}})
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error(400, "messages must be a non-empty list")
        offered = [t.get("function", {}).get("name") for t in body.get("tools") or []]
        with st.lock:
            if st.pending_call is not None:
                result = tool_result_for(messages, st.pending_call)
                if result is None:
                    return self.error(400, f"the request lacks the result of call {st.pending_call}")
                st.record({"step": st.step - 1, "tool_result": result})
            step = st.script[st.step] if st.step < len(st.script) else {"text": "Script finished."}
            if "tool" in step and step["tool"] not in offered:
                return self.error(400, f"script step {st.step} calls {step['tool']}, not offered (offered: {offered})")
            st.step += 1
            call_id = f"call_{st.step}"
            st.pending_call = call_id if "tool" in step else None
            st.record({"step": st.step - 1, "offered": offered,
                       "system_prompt": messages[0].get("content") if messages[0].get("role") == "system" else None})
        prompt_tokens = tokens(json.dumps(messages)) + tokens(json.dumps(body.get("tools") or []))
        if "tool" in step:
            args = json.dumps(step["args"])
            delta = {"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": call_id, "type": "function",
                "function": {"name": step["tool"], "arguments": args}}]}
            finish, completion_tokens = "tool_calls", tokens(args)
        else:
            delta = {"role": "assistant", "content": step["text"]}
            finish, completion_tokens = "stop", tokens(step["text"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        base = {"id": f"chatcmpl-{call_id}", "created": 1700000000, "model": st.model}
        if not body.get("stream"):
            message = {k: v for k, v in delta.items()}
            if "tool_calls" in message:
                for c in message["tool_calls"]:
                    c.pop("index", None)
            return self.send_json(200, dict(base, object="chat.completion", usage=usage, choices=[
                {"index": 0, "message": message, "finish_reason": finish}]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        chunks = [dict(base, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": delta, "finish_reason": None}]),
                  dict(base, object="chat.completion.chunk",
                       choices=[{"index": 0, "delta": {}, "finish_reason": finish}])]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(dict(base, object="chat.completion.chunk", choices=[], usage=usage))
        for c in chunks:
            self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("script")
    ap.add_argument("--model", default="fake-small")
    ap.add_argument("--n-params", type=int, default=1_543_714_304)
    ap.add_argument("--log")
    a = ap.parse_args()
    with open(a.script, encoding="utf-8") as f:
        script = json.load(f)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.state = State(script, a.model, a.n_params, a.log)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}/v1", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
