// A stand-in for llama-server on llama-server's own HTTP stack (cpp-httplib, Debian's
// libcpp-httplib-dev), replaying the recorded llama-server answers in FIXTURES_DIR.
//
//   llama_like_server FIXTURES_DIR
//
// Binds an ephemeral loopback port and prints "listening PORT" once it can be connected to.
// POST /v1/chat/completions answers plain.json, or stream_usage.sse when the request asks for
// stream_options.include_usage, stream_no_usage.sse for other streams, and
// overflow_error.json (400) when a message says OVERFLOW. GET /v1/models answers models.json.
// POST /tokenize and /apply-template behave as llama-server's do, with a toy vocabulary:
// /tokenize counts only `content` (a body without it gets {"tokens": []}, as there), one token
// a whitespace-separated word and one a special token, plus a BOS under `add_special`;
// /apply-template renders ChatML, and refuses `tools` as a server started without --jinja does.
// GET /_seen lists the request lines the replay routes received, one a line.
// cpp-httplib routes on the raw request target, so an absolute-form target is a 404 here as
// it is in llama-server.

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

static std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "cannot read " << path << std::endl;
    std::exit(2);
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The SSE events of a recorded stream, each with its blank-line terminator.
static std::vector<std::string> events(const std::string &body) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t end = body.find("\n\n", start);
    if (end == std::string::npos) break;
    out.push_back(body.substr(start, end + 2 - start));
    start = end + 2;
  }
  if (start < body.size()) out.push_back(body.substr(start));
  return out;
}

// The gateway sends compact JSON, so a field and its value are adjacent once spaces are gone.
static bool has(const std::string &body, const std::string &needle) {
  std::string compact;
  for (char c : body)
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') compact.push_back(c);
  return compact.find(needle) != std::string::npos;
}

using json = nlohmann::json;

static const char *SPECIAL[] = {"<|im_start|>", "<|im_end|>"};

// The toy vocabulary's token ids: each special token, then each whitespace-separated word.
static json tokenize(std::string text, bool add_special) {
  for (const char *sp : SPECIAL) {
    const std::string s(sp);
    for (size_t at = text.find(s); at != std::string::npos; at = text.find(s, at + s.size() + 2)) {
      text.replace(at, s.size(), " " + s + " ");
    }
  }
  json ids = json::array();
  if (add_special) ids.push_back(1);
  std::istringstream words(text);
  std::string w;
  while (words >> w) ids.push_back(static_cast<int>(std::hash<std::string>{}(w) % 32000));
  return ids;
}

static std::string text_of(const json &content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array())
    for (const auto &part : content)
      if (part.contains("text") && part["text"].is_string()) out += part["text"].get<std::string>();
  return out;
}

static void error(httplib::Response &res, int status, const std::string &type, const std::string &message) {
  res.status = status;
  json e = {{"error", {{"code", status}, {"message", message}, {"type", type}}}};
  res.set_content(e.dump(), "application/json; charset=utf-8");
}

// The request body as JSON, or llama-server's 500 for a body that is not.
static bool parse(const httplib::Request &req, httplib::Response &res, json &body) {
  try {
    body = json::parse(req.body);
    return true;
  } catch (const std::exception &e) {
    error(res, 500, "server_error", e.what());
    return false;
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    std::cerr << "usage: llama_like_server FIXTURES_DIR" << std::endl;
    return 2;
  }
  const std::string dir = argv[1];
  const std::string plain = read_file(dir + "/plain.json");
  const std::string overflow = read_file(dir + "/overflow_error.json");
  const std::string models = read_file(dir + "/models.json");
  const std::string with_usage = read_file(dir + "/stream_usage.sse");
  const std::string without_usage = read_file(dir + "/stream_no_usage.sse");

  std::mutex lock;
  std::vector<std::string> seen;
  auto see = [&](const httplib::Request &req) {
    std::lock_guard<std::mutex> g(lock);
    seen.push_back(req.method + " " + req.target + " " + req.version);
  };

  httplib::Server svr;
  svr.Post("/v1/chat/completions", [&](const httplib::Request &req, httplib::Response &res) {
    see(req);
    if (has(req.body, "OVERFLOW")) {
      res.status = 400;
      res.set_content(overflow, "application/json; charset=utf-8");
      return;
    }
    if (!has(req.body, "\"stream\":true")) {
      res.set_content(plain, "application/json; charset=utf-8");
      return;
    }
    auto frames = std::make_shared<std::vector<std::string>>(
        events(has(req.body, "\"include_usage\":true") ? with_usage : without_usage));
    res.set_chunked_content_provider("text/event-stream", [frames](size_t, httplib::DataSink &sink) {
      for (const auto &f : *frames) {
        if (!sink.write(f.data(), f.size())) return false;
      }
      sink.done();
      return true;
    });
  });
  svr.Post("/tokenize", [&](const httplib::Request &req, httplib::Response &res) {
    see(req);
    json body;
    if (!parse(req, res, body)) return;
    json tokens = json::array();
    if (body.count("content") != 0) {
      tokens = tokenize(text_of(body.at("content")), body.value("add_special", false));
    }
    res.set_content(json{{"tokens", tokens}}.dump(), "application/json; charset=utf-8");
  });
  svr.Post("/apply-template", [&](const httplib::Request &req, httplib::Response &res) {
    see(req);
    json body;
    if (!parse(req, res, body)) return;
    if (body.contains("tools") && !body["tools"].is_null()) {
      return error(res, 500, "server_error", "tools param requires --jinja flag");
    }
    if (!body.contains("messages") || !body["messages"].is_array()) {
      return error(res, 500, "server_error", "'messages' is required");
    }
    std::string prompt;
    for (const auto &m : body["messages"]) {
      prompt += "<|im_start|>" + m.value("role", std::string()) + "\n" + text_of(m.value("content", json())) + "<|im_end|>\n";
    }
    prompt += "<|im_start|>assistant\n";
    res.set_content(json{{"prompt", prompt}}.dump(), "application/json; charset=utf-8");
  });
  svr.Get("/v1/models", [&](const httplib::Request &req, httplib::Response &res) {
    see(req);
    res.set_content(models, "application/json; charset=utf-8");
  });
  svr.Get("/_seen", [&](const httplib::Request &, httplib::Response &res) {
    std::lock_guard<std::mutex> g(lock);
    std::string out;
    for (const auto &l : seen) out += l + "\n";
    res.set_content(out, "text/plain");
  });

  int port = svr.bind_to_any_port("127.0.0.1");
  if (port <= 0) {
    std::cerr << "cannot bind a loopback port" << std::endl;
    return 1;
  }
  std::printf("listening %d\n", port);
  std::fflush(stdout);
  return svr.listen_after_bind() ? 0 : 1;
}
