#include "main/admin_cli.h"

#include <sys/socket.h>
#include <unistd.h>

#include <fstream>

#include "common/net.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "tenants/tenants.h"

namespace mxr {
namespace {

using json = nlohmann::json;

// A blocking HTTP/1.1 exchange (Connection: close); status 0 on failure.
int Http(const std::string& host, uint16_t port, const std::string& request, std::string* body, std::string* err) {
  sockaddr_storage ss;
  auto len = MakeSockaddr(host, port, &ss);
  if (!len.ok()) {
    *err = std::string(len.status().message());
    return 0;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr*>(&ss), *len) != 0) {
    *err = Cat("cannot connect to the admin API at ", host, ":", port, ": ", strerror(errno),
               " (is the relay running with this config and admin_api.enabled?)");
    if (fd >= 0) close(fd);
    return 0;
  }
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  size_t sp = resp.find(' ');
  size_t hdr_end = resp.find("\r\n\r\n");
  if (sp == std::string::npos || hdr_end == std::string::npos) {
    *err = "no HTTP answer from the admin API";
    return 0;
  }
  *body = resp.substr(hdr_end + 4);
  return std::atoi(resp.c_str() + sp + 1);
}

void PrintHuman(const std::string& path, const json& j) {
  if (j.contains("groups")) {
    fmt::print("{:<40} {:>10} {:>11} {:>12} {:>10}\n", Cat("by ", j["by"].get<std::string>()), "messages", "recipients",
               "bytes", "oldest_s");
    for (const auto& g : j["groups"]) {
      fmt::print("{:<40} {:>10} {:>11} {:>12} {:>10}\n", g["key"].get<std::string>(), g["messages"].get<uint64_t>(),
                 g["recipients"].get<uint64_t>(), g["bytes"].get<uint64_t>(), g["oldest_age_s"].get<int64_t>());
    }
    fmt::print("{:<40} {:>10} {:>11}\n", "total", j["total"]["messages"].get<uint64_t>(),
               j["total"]["recipients"].get<uint64_t>());
  } else if (j.contains("suspensions")) {
    if (j["suspensions"].empty()) fmt::print("no suspensions\n");
    for (const auto& s : j["suspensions"]) {
      fmt::print("{} {} until {} (since {})\n", s["kind"].get<std::string>(), s["value"].get<std::string>(),
                 s["until"].is_null() ? std::string("resumed") : s["until"].get<std::string>(),
                 s["created"].get<std::string>());
    }
  } else if (j.contains("action")) {
    fmt::print("{}: {} message(s) ({}) in {} ms\n", j["action"].get<std::string>(), j["messages"].get<uint64_t>(),
               j["query"].get<std::string>(), j["duration_ms"].get<int64_t>());
  } else {
    fmt::print("{}\n", j.dump(2, ' ', false, json::error_handler_t::replace));
  }
}

}  // namespace

int AdminCall(const Config& cfg, const std::string& method, const std::string& path, const std::string& body,
              bool as_json) {
  auto hp = ParseHostPort(cfg.admin_api.listen);
  if (!hp.ok()) {
    fmt::print(stderr, "mxrelay: admin_api.listen: {}\n", hp.status().message());
    return 2;
  }
  std::string host = hp->address == "0.0.0.0" ? "127.0.0.1" : hp->address == "::" ? "::1" : hp->address;
  std::ifstream tf(cfg.AdminTokenFile());
  std::string token;
  if (!tf || !std::getline(tf, token) || token.empty()) {
    fmt::print(stderr, "mxrelay: cannot read the admin token from {} (run as the relay's user or root)\n",
               cfg.AdminTokenFile());
    return 2;
  }
  std::string req = Cat(method, " ", path, " HTTP/1.1\r\nHost: ", host, "\r\nAuthorization: Bearer ", token,
                        "\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                        "\r\n\r\n", body);
  std::string resp, err;
  int status = Http(host, hp->port, req, &resp, &err);
  if (status == 0) {
    fmt::print(stderr, "mxrelay: {}\n", err);
    return 1;
  }
  json j = json::parse(resp, nullptr, false);
  if (status / 100 != 2) {
    std::string msg = !j.is_discarded() && j.contains("error") ? j["error"].value("message", resp) : resp;
    std::string field = !j.is_discarded() && j.contains("error") ? j["error"].value("field", "") : "";
    fmt::print(stderr, "mxrelay: {} ({}{})\n", msg, status, field.empty() ? "" : ", " + field);
    return 1;
  }
  if (as_json || j.is_discarded()) {
    fmt::print("{}", resp);
  } else {
    PrintHuman(path, j);
  }
  return 0;
}

int TenantApiKey(const std::string& tenant) {
  tenants::NewKey k = tenants::MintApiKey();
  fmt::print("API key (give it to the client; it is not stored anywhere):\n  {}\n", k.key);
  fmt::print("Add to api_keys of tenant \"{}\" in the tenants file, then reload (SIGHUP):\n  \"{}\"\n",
             tenant.empty() ? "<name>" : tenant, k.stored);
  return 0;
}

}  // namespace mxr
