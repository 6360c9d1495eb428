#include "api/civet.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <cstdio>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/listener_wake.h"
#include "common/net.h"
#include "common/status.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace mxr::api {
namespace {

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CivetServer>> StartCivet(const CivetOptions& o, std::string* address) {
  auto hp = ParseHostPort(o.listen);
  if (!hp.ok()) return absl::InvalidArgumentError(Cat(o.what, ".listen: ", hp.status().message()));
  bool v6 = hp->address.find(':') != std::string::npos;
  std::string ports = v6 ? Cat("[", hp->address, "]:", hp->port) : Cat(hp->address, ":", hp->port);
  std::vector<std::string> opts = {"listening_ports", ports,
                                   "num_threads", std::to_string(o.threads),
                                   "request_timeout_ms", "30000",
                                   "enable_keep_alive", o.keep_alive ? "yes" : "no",
                                   "keep_alive_timeout_ms", "30000",
                                   "tcp_nodelay", "1"};
  std::unique_ptr<CivetServer> s;
  try {
    s = std::make_unique<CivetServer>(opts);
  } catch (const CivetException& e) {
    return absl::UnavailableError(Cat(o.what, ".listen ", o.listen, ": cannot listen (", e.what(), ")"));
  }
  if (s->getContext() == nullptr) return absl::UnavailableError(Cat(o.what, ".listen ", o.listen, ": cannot listen"));
  std::vector<int> bound = s->getListeningPorts();
  int port = bound.empty() ? hp->port : bound.front();
  *address = v6 ? Cat("[", hp->address, "]:", port) : Cat(hp->address, ":", port);
  return s;
}

void StopCivet(std::unique_ptr<CivetServer> server, const std::string& address) {
  if (!server) return;
  CloseWhileKnocking(address, [&server] { server->close(); });
  server.reset();
}

bool ReadBody(mg_connection* conn, size_t max, std::string* out, bool* too_big) {
  *too_big = false;
  const mg_request_info* ri = mg_get_request_info(conn);
  if (ri->content_length > 0 && static_cast<uint64_t>(ri->content_length) > max) {
    *too_big = true;
    return false;
  }
  // Read straight into the string (civetweb's worker stacks are small: no
  // big buffer on the stack).
  size_t chunk = ri->content_length > 0 ? static_cast<size_t>(ri->content_length) + 1 : 65536;
  for (;;) {
    size_t have = out->size();
    out->resize(have + chunk);
    int n = mg_read(conn, out->data() + have, chunk);
    out->resize(have + static_cast<size_t>(std::max(n, 0)));
    if (n <= 0) break;
    if (out->size() > max) {
      *too_big = true;
      return false;
    }
    chunk = 65536;
  }
  return true;
}

void Respond(mg_connection* conn, int status, std::string_view body, std::string_view content_type,
             std::string_view extra_headers) {
  std::string head = Cat("HTTP/1.1 ", status, " ", Reason(status), "\r\nContent-Type: ", content_type,
                         "\r\nContent-Length: ", body.size(), "\r\nCache-Control: no-store\r\n", extra_headers,
                         "\r\n");
  mg_write(conn, head.data(), head.size());
  if (!body.empty()) mg_write(conn, body.data(), body.size());
}

std::string ErrorJson(int status, std::string_view field, std::string_view message) {
  nlohmann::json e = {{"status", status}, {"message", std::string(message)}};
  if (!field.empty()) e["field"] = std::string(field);
  return nlohmann::json{{"error", e}}.dump() + "\n";
}

std::string Header(mg_connection* conn, const char* name) {
  const char* v = mg_get_header(conn, name);
  return v ? std::string(v) : std::string();
}

std::string BearerToken(mg_connection* conn) {
  std::string a = Header(conn, "Authorization");
  if (AsciiIStartsWith(a, "Bearer ")) {
    std::string t = a.substr(7);
    while (!t.empty() && t.front() == ' ') t.erase(0, 1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
    return t;
  }
  return Header(conn, "X-Api-Key");
}

}  // namespace mxr::api
