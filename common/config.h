// Relay configuration: the TOML schema, its defaults and its validation.
//
//   auto cfg = mxr::LoadConfigFile("/etc/mxrelay/mxrelay.toml");
//   if (!cfg.ok()) { /* message names the key and line at fault */ }
//
// Every key is documented in docs/CONFIG.md with its default; the defaults
// below are the embedded configuration used when no file is given.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net.h"

namespace mxr {

enum class ListenerMode {
  kStartTls,     // plaintext greeting, STARTTLS offered (587, 2525)
  kImplicitTls,  // TLS from the first byte (465)
  kPlain,        // no TLS at all (tests/benchmarks on loopback only)
};

struct ListenerConfig {
  std::string name;  // for logs and metrics, e.g. "submission"
  std::string address = "127.0.0.1";
  uint16_t port = 2525;
  ListenerMode mode = ListenerMode::kStartTls;
  // AUTH is offered only under TLS unless this is set.
  bool auth_without_tls = false;
};

struct TlsConfig {
  std::string cert_file;  // PEM; empty -> self-signed ECDSA P-256 in data_dir/tls
  std::string key_file;
  std::string min_version = "1.2";  // "1.2" or "1.3"
};

struct AuthConfig {
  std::string users_file;  // "user:crypt-hash" per line; empty -> data_dir/users
  int max_failures = 3;    // per session; then 421 4.7.0 and disconnect
  int failure_delay_ms = 1000;  // added before each failed-AUTH reply
};

struct LimitsConfig {
  uint64_t max_message_size = 50ull << 20;
  int max_recipients = 1000;
  int max_connections = 20000;
  int max_connections_per_ip = 200;
  int max_line_length = 1000;  // command lines, including CRLF
  int max_errors = 20;         // protocol errors per session before 421
};

struct TimeoutsConfig {  // seconds
  int greeting = 300;       // between connect / last reply and the next command
  int command = 300;
  int data = 180;           // between two reads while receiving DATA/BDAT
  int tls_handshake = 30;
  int spool_write = 10;     // a commit that waits longer answers 451 4.3.0
};

struct SpoolConfig {
  std::string path;  // empty -> data_dir/spool
  // Memtable size: messages delivered before a flush never reach an SST.
  uint64_t write_buffer_size = 128ull << 20;
  int max_write_buffer_number = 3;
  uint64_t max_total_wal_size = 1ull << 30;
};

struct Config {
  // Name used in the greeting, Received: and Message-ID. Empty -> gethostname().
  std::string hostname;
  // Where generated state lives (spool, self-signed cert, generated users file).
  std::string data_dir = "./mxrelay-data";
  int threads = 0;  // event-loop threads; 0 -> one per core
  std::string log_level = "info";

  std::vector<ListenerConfig> listeners;
  TlsConfig tls;
  AuthConfig auth;
  // Clients from these networks may relay without AUTH. Default: none.
  std::vector<Cidr> trusted_networks;
  LimitsConfig limits;
  TimeoutsConfig timeouts;
  SpoolConfig spool;

  // Resolved paths (data_dir applied).
  std::string SpoolPath() const;
  std::string UsersFile() const;
};

// The embedded default configuration (used when no file is given).
Config DefaultConfig();

// Parse TOML text. `source` names the file in error messages.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source);
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

std::string_view ListenerModeName(ListenerMode m);

}  // namespace mxr
