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
  // PROXY protocol (v1 or v2, detected): every connection must start with
  // a header from a peer in proxy_from; the client address it names is the
  // one every limit, trusted_networks, log and Received: use.
  bool proxy_protocol = false;
  std::vector<Cidr> proxy_from;
};

struct TlsConfig {
  std::string cert_file;  // PEM; empty -> self-signed ECDSA P-256 in data_dir/tls
  std::string key_file;
  std::string min_version = "1.2";  // "1.2" or "1.3"
};

struct AuthConfig {
  std::string users_file;  // "user:crypt-hash" per line; empty -> data_dir/users
  // A user written as an address ("alice@example.com") may also log in with
  // its local part ("alice") when no other user shares it.
  bool local_part_login = false;
  int max_failures = 3;    // per session; then 421 4.7.0 and disconnect
  int failure_delay_ms = 1000;  // added before each failed-AUTH reply
  // Across sessions: this many failures from one IP within ip_block_seconds
  // block AUTH from that IP for ip_block_seconds (0 = no per-IP limit).
  int max_failures_per_ip = 10;
  int ip_block_seconds = 300;
};

struct LimitsConfig {
  uint64_t max_message_size = 50ull << 20;
  int max_recipients = 1000;
  int max_connections = 20000;
  int max_connections_per_ip = 200;
  int max_line_length = 1000;  // command lines, including CRLF
  int max_errors = 20;         // protocol errors per session before 421
  // IPv6 clients are counted per prefix of this length by the per-IP limits
  // (max_connections_per_ip, auth.max_failures_per_ip): one host owns a /64.
  int ipv6_prefix = 64;
  // A message already carrying this many Received: headers is refused at
  // the end of DATA/BDAT with 554 5.4.6 (a mail loop; Postfix's hopcount_limit).
  int max_hops = 50;
};

struct TimeoutsConfig {  // seconds
  int greeting = 300;       // between connect / last reply and the next command
  int command = 300;
  int data = 180;           // between two reads while receiving DATA/BDAT
  int tls_handshake = 30;
  // Implicit-TLS listeners: a client that sends nothing for this long (or
  // sends plaintext) expects plaintext SMTP; it gets a 421 in clear saying
  // which port to use. 0: wait for the TLS handshake timeout instead.
  int implicit_tls_wait = 3;
  int spool_write = 10;     // a commit that waits longer answers 451 4.3.0
  int proxy_header = 10;    // proxy_protocol listeners: the header must arrive within this
};

struct SpoolConfig {
  std::string path;  // empty -> data_dir/spool
  // Memtable size: messages delivered before a flush never reach an SST.
  uint64_t write_buffer_size = 128ull << 20;
  int max_write_buffer_number = 3;
  uint64_t max_total_wal_size = 1ull << 30;
  // New mail is refused (452 4.3.1) while the spool's filesystem has less
  // free space than this, before RocksDB itself runs out (0 = no reserve).
  uint64_t min_free_space = 256ull << 20;
  // Group-commit window: while messages arrive less than this far apart,
  // a commit with fewer than 8 messages waits up to this long for more
  // (fewer fsyncs per message; adds at most this to the time to 250).
  // 0 = write at once.
  int commit_delay_us = 200;
};

// Outbound TLS policy for a destination.
enum class TlsPolicy {
  kNone,           // never STARTTLS
  kOpportunistic,  // STARTTLS when offered, no certificate verification; plain otherwise
  kRequired,       // STARTTLS must succeed (no verification); else deferred
  kRequiredVerify, // STARTTLS must succeed with a valid certificate for the host name
};

// Per-domain route or policy ("*" matches every domain). With `host` set,
// mail for the domain goes there instead of its MX (smarthost / static route).
struct RouteConfig {
  std::string domain;        // "example.com" or "*"
  std::string host;          // "" = use MX records
  uint16_t port = 0;         // 0 = delivery.port
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  bool tls_set = false;      // whether `tls` was given
  std::string auth_user;     // AUTH PLAIN to the route's host (requires TLS)
  std::string auth_password;
  // AUTH is sent only over a verified certificate (tls = "required_verify",
  // the default with auth_user) unless this is set, which allows "required"
  // (encrypted, certificate not checked: an interceptor gets the password).
  bool auth_over_unverified_tls = false;
  int max_connections = 0;   // 0 = delivery.max_connections_per_site
  std::string pool;          // egress pool for mail without one ("" = the default pool)
};

// The default delivery.deny_networks (see DeliveryConfig).
std::vector<Cidr> DefaultDenyNetworks();

// MTA-STS (RFC 8461) for delivery by MX (delivery/mta_sts.h; docs/CONFIG.md).
struct MtaStsConfig {
  bool enabled = true;
  int https_port = 443;       // of https://mta-sts.<domain>/ (tests: a loopback port)
  std::string ca_file;        // CA bundle for the policy fetch; "" = the system's
  int fetch_timeout = 10;     // s per policy fetch
  int txt_recheck = 300;      // s between checks of a domain's _mta-sts TXT record
};

struct DeliveryConfig {
  bool enabled = true;
  uint16_t port = 25;              // remote SMTP port (tests point it at loopback sinks)
  std::string helo_name;           // "" = hostname
  std::string source_address;      // "" = kernel's choice
  std::string resolver;            // "ip:port[,ip:port]"; "" = system resolver
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  int max_connections_per_site = 20;
  int initial_window = 4;          // connections per site to start with
  int max_messages_per_connection = 1000;
  int max_recipients_per_transaction = 100;
  int idle_timeout = 5;            // s an idle outbound connection is kept
  int retry_initial = 300;         // s before the first retry
  int retry_max = 14400;           // s, cap of the doubling backoff
  int max_age = 432000;            // s (5 days) before a message bounces
  std::string tls_ca_file;         // CA bundle for verified outbound TLS; "" = the system's
  MtaStsConfig mta_sts;            // keys mta_sts, mta_sts_https_port, mta_sts_ca_file, ...
  int tls_rpt_interval = 86400;    // s per TLS-RPT report period; 0 = no reports
  std::string tls_rpt_organization;  // "" = hostname
  std::string tls_rpt_contact;       // "" = postmaster@hostname
  int delay_dsn_after = 14400;     // s before a NOTIFY=DELAY recipient gets its delay DSN; 0 = never
  int site_backoff_initial = 60;   // s a dead site is left alone, doubling
  int site_backoff_max = 3600;
  int dns_ttl_min = 60;            // s, floor/ceiling of the MX cache
  int dns_ttl_max = 3600;
  int dns_timeout_ms = 5000;
  std::string event_log;           // JSON lines per attempt; "" = off
  // Per-phase timeouts (s).
  int connect_timeout = 30;
  int banner_timeout = 300;
  int command_timeout = 300;       // EHLO, STARTTLS, AUTH, MAIL, RCPT, RSET
  int data_timeout = 600;          // the body and the final dot's reply; restarts while bytes move
  // SIGTERM: transactions in flight may finish (and are recorded) for this
  // long before delivery stops (0 = stop at once: they are retried after
  // the restart, which may duplicate them).
  int drain_timeout = 30;
  // Bodies read from the spool for transactions under way are held within
  // this budget (a read that does not fit waits; one larger than the budget
  // goes alone). Bodies stream to sockets in chunks, so no transaction holds
  // a copy of its own.
  uint64_t max_body_memory = 256ull << 20;
  // Delivery never connects to these networks, whatever an MX, an MX
  // written as an IP or /etc/hosts says (checked after resolution): the
  // recipients bounce 5.4.4. Default (DefaultDenyNetworks()): loopback,
  // link-local (incl. cloud metadata 169.254.169.254), unspecified,
  // multicast, reserved and benchmarking ranges. Private ranges (10/8,
  // 172.16/12, 192.168/16, fc00::/7) are allowed. Tests delivering to
  // loopback sinks set it to [].
  std::vector<Cidr> deny_networks = DefaultDenyNetworks();
};

// Egress sources and pools ([[source]], [[pool]], [shaping]; docs/CONFIG.md
// "Egress sources, pools and traffic shaping"; delivery/egress.h).
struct SourceConfig {
  std::string name;
  std::string address;       // local IP bound before connect
  std::string ehlo_name;     // "" = delivery.helo_name (or the hostname)
  std::string warmup_start;  // "YYYY-MM-DD" (UTC): day 1 of the warm-up; "" = none
  std::vector<int64_t> warmup;  // day N of the warm-up -> at most warmup[N-1] messages that day
};

struct PoolSourceConfig {
  std::string source;
  int weight = 1;
};

struct PoolConfig {
  std::string name;
  std::vector<PoolSourceConfig> sources;
  std::vector<std::string> users;  // authenticated users whose mail uses this pool
};

struct ShapingConfig {
  bool shipped = true;              // the provider defaults compiled in (deploy/shaping/shaping.toml)
  std::string file;                 // the operator's shaping file, over the shipped one
  std::string classification_file;  // the operator's bounce classification rules, before the shipped ones
  // Header naming the pool, honoured from authenticated or trusted clients,
  // always removed before the message is stored.
  std::string pool_header = "X-MxRelay-Pool";
};

struct MetricsConfig {
  bool enabled = true;
  // HTTP address for /metrics, /healthz, /readyz: "ip:port" ("[::1]:port" for
  // IPv6); port 0 picks a free one (logged at start).
  std::string listen = "127.0.0.1:9465";
  int site_labels = 20;  // busiest non-route sites with their own `site` label
};

// DKIM signing ([dkim], docs/CONFIG.md; dkim/README.md).
enum class DkimCanon { kSimple, kRelaxed };
// What to do with a message no rule signs, or whose key cannot sign.
enum class DkimFallback {
  kSendUnsigned,  // queue it unsigned (counted and logged)
  kDefer,         // refuse it with 451 4.7.x (the client retries later)
};
enum class DkimMatch {
  kFromDomain,      // domain of the From: header field
  kEnvelopeDomain,  // domain of the envelope sender (MAIL FROM)
  kAuthUser,        // the authenticated (AUTH) user name
};

struct DkimKeyConfig {
  std::string domain;     // d=
  std::string selector;   // s=
  std::string algorithm;  // "rsa-sha256" / "ed25519-sha256"; "" = from the key file
  std::string key_file;   // PEM private key, not readable by others
};

struct DkimRuleConfig {
  DkimMatch match = DkimMatch::kFromDomain;
  // A domain ("example.com"), every subdomain ("*.example.com"), any ("*");
  // for auth_user a user name ("*" = any authenticated user).
  std::string value;
  std::vector<DkimKeyConfig> keys;  // one signature each, in this order
};

struct DkimConfig {
  DkimCanon header_canon = DkimCanon::kRelaxed;
  DkimCanon body_canon = DkimCanon::kRelaxed;
  int expire_after = 0;  // s after t= for x=; 0 = no x= tag
  // Fields signed when present (each instance once); "" = the default list.
  std::vector<std::string> headers;
  // Fields listed once more than they occur (a second one cannot be added).
  std::vector<std::string> oversign_headers;
  DkimFallback on_no_rule = DkimFallback::kSendUnsigned;
  DkimFallback on_key_error = DkimFallback::kSendUnsigned;
  int threads = 0;        // signing threads; 0 = one per core
  int domain_labels = 20; // signing domains with their own metric label
  std::vector<DkimRuleConfig> rules;  // tried in order; the first match signs
};

// Tenants, the HTTP injection API and the admin API (issue 18; tenants/,
// api/, docs/CONFIG.md, docs/API.md).
struct TenantsConfig {
  std::string file;  // TOML tenants file; "" = no tenants (reloaded on SIGHUP)
  // A user or key no tenant names: accepted without tenant limits (false:
  // refused with 550 5.7.1 at MAIL / 401).
  bool allow_unassigned = true;
};

struct HttpApiConfig {
  bool enabled = false;
  std::string listen = "127.0.0.1:8025";  // "ip:port"
  bool tls = false;                       // HTTPS with the [tls] certificate
  uint64_t max_body = 10ull << 20;        // request body bytes; more -> 413
  int max_recipients = 10000;             // per request; more -> 413
  int threads = 16;                       // HTTP worker threads
};

struct AdminApiConfig {
  bool enabled = true;
  std::string listen = "127.0.0.1:8026";  // loopback by default
  std::string token_file;                 // "" = data_dir/admin-token (created 0600)
};

struct Config {
  // Name used in the greeting, Received: and Message-ID. Empty -> gethostname().
  std::string hostname;
  // Where generated state lives (spool, self-signed cert, generated users file).
  std::string data_dir = "./mxrelay-data";
  int threads = 0;  // event-loop threads; 0 -> one per core
  // "auto" (io_uring, epoll where io_uring is refused), "io_uring", "epoll".
  std::string event_loop = "auto";
  // Started as root: switch to this user at start (keeping only the right to
  // bind ports below 1024). "" = stay who we are.
  std::string user;
  // false: the process is made non-dumpable at start (no core files, no
  // ptrace or /proc/<pid>/mem by the same user: they would hold passwords
  // and mail). true keeps it dumpable, for debugging.
  bool allow_core_dumps = false;
  std::string log_level = "info";

  std::vector<ListenerConfig> listeners;
  TlsConfig tls;
  AuthConfig auth;
  // Clients from these networks may relay without AUTH. Default: none.
  std::vector<Cidr> trusted_networks;
  LimitsConfig limits;
  TimeoutsConfig timeouts;
  SpoolConfig spool;
  DeliveryConfig delivery;
  std::vector<RouteConfig> routes;
  std::vector<SourceConfig> sources;
  std::vector<PoolConfig> pools;
  ShapingConfig shaping;
  MetricsConfig metrics;
  DkimConfig dkim;
  TenantsConfig tenants;
  HttpApiConfig http_api;
  AdminApiConfig admin_api;

  // Resolved paths (data_dir applied).
  std::string SpoolPath() const;
  std::string UsersFile() const;
  std::string AdminTokenFile() const;
};

// The embedded default configuration (used when no file is given).
Config DefaultConfig();

// Parse TOML text. `source` names the file in error messages.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view source);
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

std::string_view ListenerModeName(ListenerMode m);
std::string_view TlsPolicyName(TlsPolicy p);

}  // namespace mxr
