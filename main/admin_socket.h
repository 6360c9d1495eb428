// The admin socket: a Unix stream socket in data_dir (admin.sock, 0600, so
// only the relay's user and root may connect) for operator commands that
// need the running relay. Today one command, the live trace:
//
//   client -> "TRACE ip=203.0.113.7 user=app@example.com\n"   (either or both)
//   relay  -> "OK tracing ip=... user=...\n", then one line per trace event
//             (relay/trace.h) until the client closes or the relay stops;
//             or "ERR <why>\n" and close.
//
// `mxrelay trace` is the client (RunTraceClient). Each client gets a thread
// (at most kMaxClients at once); nothing here touches an event loop.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "relay/trace.h"

namespace mxr {

class AdminSocket {
 public:
  static constexpr int kMaxClients = 8;
  // Binds `path` (a stale socket file there is replaced) and serves.
  static absl::StatusOr<std::unique_ptr<AdminSocket>> Start(const std::string& path, relay::TraceHub* hub);
  // Stops serving: every client is closed, threads joined, the file removed.
  ~AdminSocket();
  // "SHAPING\n" -> the text `fn` returns, then close (`mxrelay shaping
  // status`, main/shaping_cli.h). Without it: "ERR ...".
  void SetShapingStatus(std::function<std::string()> fn) {
    std::lock_guard<std::mutex> l(mu_);
    shaping_status_ = std::move(fn);
  }

 private:
  AdminSocket(std::string path, int fd, int stop_fd, relay::TraceHub* hub);
  void AcceptLoop();
  void Serve(int fd);

  const std::string path_;
  const int listen_fd_;
  const int stop_fd_;  // eventfd: readable once stopping
  relay::TraceHub* hub_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> clients_{0};
  std::mutex mu_;
  std::vector<std::thread> threads_;  // client threads (joined at the end)
  std::thread acceptor_;
  std::function<std::string()> shaping_status_;  // guarded by mu_
};

// `mxrelay trace`: connects to the relay's admin socket, asks for the trace
// and copies it to stdout for `seconds` (0: until the relay or the user
// ends it). Returns the process exit code.
int RunTraceClient(const std::string& path, const std::string& ip, const std::string& user, int seconds);

}  // namespace mxr
