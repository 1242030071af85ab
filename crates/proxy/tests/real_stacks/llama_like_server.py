"""A stand-in for llama-server on the HTTP stacks of Python's local model servers, replaying
the recorded llama-server answers in FIXTURES_DIR.

    python3 llama_like_server.py http.server|uvicorn-h11 FIXTURES_DIR

Binds an ephemeral loopback port and prints "listening PORT" once it can be connected to.
Answers as crates/proxy/tests/real_stacks/llama_like_server.cpp does (the same routes, the
same choice of recording, GET /_seen for the request lines received). Both stacks route on the
raw request target, so an absolute-form target is a 404 here.

POST /tokenize answers as vLLM's does (vLLM serves on uvicorn): `messages` (with `tools`) are
rendered with a ChatML template and counted, or a `prompt` (with a BOS), answering `count`,
`max_model_len` and `tokens`; a body with neither is vLLM's 400. The toy vocabulary is the C++
server's: a token a whitespace-separated word and one a special token.
"""

import json
import os
import socket
import sys
import threading

MODE, FIXTURES = sys.argv[1], sys.argv[2]


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


PLAIN = fixture("plain.json")
OVERFLOW = fixture("overflow_error.json")
MODELS = fixture("models.json")
WITH_USAGE = fixture("stream_usage.sse")
WITHOUT_USAGE = fixture("stream_no_usage.sse")
JSON_TYPE = "application/json; charset=utf-8"

SEEN = []
SEEN_LOCK = threading.Lock()


def see(line):
    with SEEN_LOCK:
        SEEN.append(line)


def events(body):
    parts = body.split(b"\n\n")
    return [p + b"\n\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


SPECIAL = ("<|im_start|>", "<|im_end|>")


def toy_tokens(text):
    for sp in SPECIAL:
        text = text.replace(sp, " " + sp + " ")
    return [hash(w) % 32000 for w in text.split()]


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def vllm_tokenize(request):
    if "messages" in request:
        prompt = ""
        if request.get("tools"):
            prompt += "<|im_start|>system\n<tools> " + json.dumps(request["tools"]) + " </tools><|im_end|>\n"
        for m in request["messages"]:
            prompt += "<|im_start|>" + m.get("role", "") + "\n" + text_of(m.get("content")) + "<|im_end|>\n"
        if request.get("add_generation_prompt", True):
            prompt += "<|im_start|>assistant\n"
        tokens = toy_tokens(prompt)
    elif "prompt" in request:
        tokens = [1] + toy_tokens(request["prompt"])
    else:
        error = {"object": "error", "message": "Either prompt or messages must be provided",
                 "type": "BadRequestError", "param": None, "code": 400}
        return 400, JSON_TYPE, [json.dumps(error).encode()]
    out = {"count": len(tokens), "max_model_len": 32768, "tokens": tokens, "token_strs": None}
    return 200, JSON_TYPE, [json.dumps(out).encode()]


def answer(method, path, body):
    """(status, content type, list of body pieces) for a request the replay routes take."""
    if method == "POST" and path == "/tokenize":
        return vllm_tokenize(json.loads(body))
    if method == "POST" and path == "/v1/chat/completions":
        request = json.loads(body)
        said = json.dumps(request.get("messages", []))
        if "OVERFLOW" in said:
            return 400, JSON_TYPE, [OVERFLOW]
        if request.get("stream") is not True:
            return 200, JSON_TYPE, [PLAIN]
        usage = (request.get("stream_options") or {}).get("include_usage") is True
        return 200, "text/event-stream", events(WITH_USAGE if usage else WITHOUT_USAGE)
    if method == "GET" and path == "/v1/models":
        return 200, JSON_TYPE, [MODELS]
    return None


def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def serve_http_server():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_one(self, method):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path == "/_seen":
                with SEEN_LOCK:
                    text = "".join(line + "\n" for line in SEEN).encode()
                return self.send_whole(200, "text/plain", text)
            routed = answer(method, self.path, body)
            if routed is None:
                return self.send_whole(404, "text/plain", b"Not Found")
            see(self.requestline)
            status, ctype, pieces = routed
            if ctype != "text/event-stream":
                return self.send_whole(status, ctype, pieces[0])
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for p in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def send_whole(self, status, ctype, body):
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.handle_one("POST")

        def do_GET(self):
            self.handle_one("GET")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket = listening_socket()
    server.server_address = server.socket.getsockname()
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["raw_path"].decode("latin-1")
    query = scope.get("query_string") or b""
    target = path + ("?" + query.decode("latin-1") if query else "")

    async def whole(status, ctype, data):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode())]})
        await send({"type": "http.response.body", "body": data})

    if scope["path"] == "/_seen":
        with SEEN_LOCK:
            text = "".join(line + "\n" for line in SEEN).encode()
        return await whole(200, "text/plain", text)
    routed = answer(scope["method"], scope["path"], body)
    if routed is None:
        return await whole(404, "text/plain", b"Not Found")
    see("%s %s HTTP/%s" % (scope["method"], target, scope["http_version"]))
    status, ctype, pieces = routed
    if ctype != "text/event-stream":
        return await whole(status, ctype, pieces[0])
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype.encode())]})
    for p in pieces:
        await send({"type": "http.response.body", "body": p, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def serve_uvicorn_h11():
    import uvicorn

    sock = listening_socket()
    config = uvicorn.Config(asgi_app, http="h11", lifespan="off", log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]

    # The port is announced once uvicorn has started serving on the socket.
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets=sockets)
        print("listening %d" % port, flush=True)

    server.startup = startup
    server.run(sockets=[sock])


if MODE == "http.server":
    serve_http_server()
elif MODE == "uvicorn-h11":
    serve_uvicorn_h11()
else:
    sys.exit("unknown mode %r: http.server or uvicorn-h11" % MODE)
