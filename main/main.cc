// mxrelay: the relay daemon and its operator CLI.
//
//   mxrelay [run] [-c mxrelay.toml]     run the relay (embedded defaults without -c)
//   mxrelay queue list|summary [-c ..]  inspect the spool (safe while running)
//   mxrelay queue show ID [-c ..]       one message, with its history
//   mxrelay trace --ip A | --user U     live SMTP trace of matching sessions (redacted)
//   mxrelay hash-password               read a password on stdin, print a yescrypt hash
//   mxrelay check-config -c FILE        validate a config file and exit
//   mxrelay dkim keygen|check|sign      DKIM keys (main/dkim_cli.h)
//   mxrelay queue summary --by X | inspect | suspend | resume | bounce | delete | retry | hold | release
//                                       actions through the admin API (main/admin_cli.h)
//   mxrelay tenant apikey               mint an API key for the tenants file
#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "nlohmann/json.hpp"
#include "api/admin_api.h"
#include "api/http_api.h"
#include "common/config.h"
#include "common/event_loop.h"
#include "common/log.h"
#include "common/strings.h"
#include "delivery/egress.h"
#include "delivery/engine.h"
#include "dkim/policy.h"
#include "dkim/signing_spool.h"
#include "main/admin_cli.h"
#include "main/admin_socket.h"
#include "main/shaping_cli.h"
#include "main/dkim_cli.h"
#include "main/privileges.h"
#include "main/queue_cli.h"
#include "metrics/exporter.h"
#include "queue/rocks_spool.h"
#include "relay/auth.h"
#include "relay/server.h"
#include "relay/tls.h"
#include "relay/users.h"
#include "tenants/tenants.h"
#include "spdlog/spdlog.h"

namespace mxr {
namespace {

constexpr char kVersion[] = "0.1.0";

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  if (path.empty()) return ParseConfig("", "<embedded defaults>");
  return LoadConfigFile(path);
}

std::string Hostname(const Config& cfg) {
  if (!cfg.hostname.empty()) return cfg.hostname;
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// When no users file is configured and the default one does not exist yet,
// create it with one user and a random password (never a well-known one),
// and keep the password in data_dir/initial-credentials (mode 0600) so the
// run command can print a ready-to-paste swaks line.
absl::Status EnsureUsers(const Config& cfg, const std::string& hostname) {
  std::string path = cfg.UsersFile();
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return absl::OkStatus();
  if (!cfg.auth.users_file.empty()) {
    return absl::NotFoundError(Cat("auth.users_file: ", path, " does not exist"));
  }
  std::string user = "relay";
  std::string password = relay::RandomPassword(20);
  auto hash = relay::HashPassword(password);
  if (!hash.ok()) return hash.status();
  mode_t old = umask(077);
  {
    std::ofstream u(path);
    u << "# mxrelay users: one 'name:crypt-hash' per line (mkpasswd, openssl passwd -6,\n"
      << "# or `mxrelay hash-password`). Reload with SIGHUP.\n"
      << user << ":" << *hash << "\n";
    std::ofstream c(cfg.data_dir + "/initial-credentials");
    c << user << " " << password << "\n";
    if (!u || !c) {
      umask(old);
      return absl::InternalError(Cat("cannot write ", path));
    }
  }
  umask(old);
  spdlog::warn("event=users_file_created path={} user={} note=\"random password written to {}/initial-credentials\"",
               path, user, cfg.data_dir);
  return absl::OkStatus();
}

void PrintWelcome(const Config& cfg) {
  std::ifstream c(cfg.data_dir + "/initial-credentials");
  std::string user, password;
  if (!(c >> user >> password)) return;
  const ListenerConfig* sub = nullptr;
  for (const auto& l : cfg.listeners) {
    if (l.mode == ListenerMode::kStartTls) {
      sub = &l;
      break;
    }
  }
  if (sub == nullptr) return;
  fmt::print(stderr,
             "\n  mxrelay is accepting mail. Try it (from another terminal):\n\n"
             "    swaks --server {}:{} --tls --auth PLAIN --auth-user {} --auth-password '{}' \\\n"
             "          --from you@example.test --to someone@example.test\n\n"
             "  Then see the queue:  build/main/mxrelay queue list\n"
             "  (credentials from {}/initial-credentials; delete that file once you have\n"
             "   your own users in {})\n\n",
             sub->address, sub->port, user, password, cfg.data_dir, cfg.UsersFile());
}

relay::UserDb::Options UserOptions(const Config& cfg) {
  relay::UserDb::Options o;
  o.local_part_login = cfg.auth.local_part_login;
  return o;
}

void WarnAmbiguous(const relay::UserDb& db) {
  if (db.ambiguous_local_parts() == 0) return;
  spdlog::warn("event=users_local_part_ambiguous count={} note=\"auth.local_part_login: these local parts belong "
               "to several users; those users must log in with their full address\"",
               db.ambiguous_local_parts());
}

std::string AdminSocketPath(const Config& cfg) { return cfg.data_dir + "/admin.sock"; }

// Routes that send their AUTH password over TLS without checking the
// certificate: allowed only with the explicit key, and said at every start
// and reload.
void WarnAboutRoutes(const Config& cfg) {
  for (const auto& r : cfg.routes) {
    if (!r.auth_user.empty() && r.tls != TlsPolicy::kRequiredVerify && r.auth_over_unverified_tls) {
      spdlog::warn("event=route_auth_over_unverified_tls domain={} host={} tls={} note=\"the AUTH password "
                   "goes to whoever can intercept the connection (the certificate is not checked); use "
                   "tls = required_verify\"",
                   r.domain, r.host, TlsPolicyName(r.tls));
    }
  }
}

// SIGHUP, DKIM: the rules and keys are read again; messages signed from
// now on use them (a new selector signs at once). A key that cannot be read
// any more is kept as unusable: its rule's on_key_error applies.
void ReloadDkim(const Config& next, dkim::SigningService* signer) {
  std::vector<std::string> warnings;
  auto p = dkim::Policy::Build(next.dkim, dkim::Policy::Mode::kLenient, &warnings);
  if (!p.ok()) {
    spdlog::error("event=dkim_reload_failed error=\"{}\" action=\"kept the previous rules and keys\"", p.status().message());
    return;
  }
  for (const auto& w : warnings) {
    spdlog::error("event=dkim_key_unusable error=\"{}\" action=\"{}\"", w,
                  next.dkim.on_key_error == DkimFallback::kDefer ? "messages of its rule are deferred (451 4.7.5)"
                                                                 : "messages of its rule go without this signature");
  }
  signer->SetPolicy(*p);
  spdlog::info("event=dkim_reloaded rules={} keys={} unusable={}", (*p)->rules().size(), (*p)->keys().size(),
               warnings.size());
}

// Start and SIGHUP: the tenants file (tenants/tenants.h). A file that does
// not load keeps the previous tenants (at start: the relay does not start).
absl::Status ReloadTenants(const Config& next, tenants::Gate* gate) {
  gate->set_allow_unassigned(next.tenants.allow_unassigned);
  if (next.tenants.file.empty()) {
    gate->SetDirectory(nullptr);
    return absl::OkStatus();
  }
  auto d = tenants::Directory::Load(next.tenants.file);
  if (!d.ok()) {
    spdlog::error("event=tenants_reload_failed error=\"{}\" action=\"kept the previous tenants\"", d.status().message());
    return d.status();
  }
  gate->SetDirectory(*d);
  spdlog::info("event=tenants_loaded path={} tenants={} api_keys={}", next.tenants.file, (*d)->tenants().size(),
               (*d)->key_count());
  return absl::OkStatus();
}

// SIGHUP: users, certificate and routes from the (re-read) configuration;
// anything else that changed needs a restart. Open sessions are untouched.
void Reload(const std::string& config_path, const Config& cfg, const std::string& hostname,
            relay::Authenticator* auth, relay::IngressServer* server, delivery::DeliveryEngine* engine,
            dkim::SigningService* signer, tenants::Gate* gate) {
  Config next = cfg;
  if (!config_path.empty()) {
    auto c = LoadConfigFile(config_path);
    if (!c.ok()) {
      spdlog::error("event=config_reload_failed error=\"{}\" action=\"kept the running configuration\"",
                    c.status().message());
      return;
    }
    next = std::move(*c);
  }
  auto u = relay::UserDb::Load(next.UsersFile(), UserOptions(next));
  if (u.ok()) {
    auth->SetUsers(*u);
    spdlog::info("event=users_reloaded path={} users={}", next.UsersFile(), (*u)->size());
    WarnAmbiguous(**u);
  } else {
    spdlog::error("event=users_reload_failed error=\"{}\" action=\"kept the previous users\"",
                  u.status().message());
  }
  bool need_tls = false;
  for (const auto& l : cfg.listeners) need_tls |= l.mode != ListenerMode::kPlain;
  if (need_tls) {
    auto t = relay::TlsContext::Create(next.tls, cfg.data_dir, hostname,
                                       relay::TlsContext::ListeningAddresses(cfg.listeners));
    if (t.ok()) {
      server->SetTls(*t);
      spdlog::info("event=tls_reloaded cert={}", (*t)->cert_path());
    } else {
      spdlog::error("event=tls_reload_failed error=\"{}\" action=\"kept the previous certificate\"",
                    t.status().message());
    }
  }
  if (engine) {
    WarnAboutRoutes(next);
    engine->SetRoutes(next.routes);
    engine->ReopenEventLog();
  }
  ReloadDkim(next, signer);
  (void)ReloadTenants(next, gate);  // logged; the previous tenants stay
}

// An existing directory readable by others (created by a version that used
// 0755, or by hand) is narrowed to its owner: it holds mail and credentials.
// By descriptor, never through a symlink.
void TightenDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;  // not there yet (created 0700 later), or not ours to change
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0 && st.st_uid == geteuid()) {
    if (fchmod(fd, st.st_mode & 0700) == 0) {
      spdlog::warn("event=permissions_tightened path={} from={:o} to={:o} note=\"other users could read "
                   "the relay's data\"",
                   path, st.st_mode & 0777, st.st_mode & 0700);
    }
  }
  ::close(fd);
}

int Run(const std::string& config_path) {
  // Everything the relay creates (data_dir, the spool and its files, the
  // generated users file and certificate key, the event log) is for its
  // owner only: 0700 directories, 0600 files.
  umask(077);
  auto cfg_or = LoadConfig(config_path);
  if (!cfg_or.ok()) {
    fmt::print(stderr, "mxrelay: config error: {}\n", cfg_or.status().message());
    return 2;
  }
  Config cfg = std::move(*cfg_or);
  if (config_path.empty()) {
    // The embedded defaults are for trying the relay on one machine: accept
    // and queue, but never reach out to the recipients' real MX hosts (or the
    // system resolver) until an operator writes a configuration.
    cfg.delivery.enabled = false;
  }
  if (auto st = SetupLogging(cfg.log_level); !st.ok()) {
    fmt::print(stderr, "mxrelay: config error: {}\n", st.message());
    return 2;
  }
  // The event-loop backend (config `event_loop`; MXRELAY_EVENT_LOOP overrides
  // it, e.g. for a test run on epoll without editing the config).
  {
    std::string want = cfg.event_loop;
    if (const char* env = getenv("MXRELAY_EVENT_LOOP"); env != nullptr && *env != '\0') want = env;
    auto b = ParseLoopBackend(want);
    if (!b.ok()) {
      fmt::print(stderr, "mxrelay: config error: event_loop / MXRELAY_EVENT_LOOP: {}\n", b.status().message());
      return 2;
    }
    SetLoopBackend(*b);
  }
  // Block the signals we handle before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string hostname = Hostname(cfg);
  std::error_code ec;
  std::filesystem::create_directories(cfg.data_dir, ec);
  if (ec) {
    spdlog::critical("event=startup_failed error=\"cannot create data_dir {}: {}\"", cfg.data_dir, ec.message());
    return 1;
  }
  if (!cfg.user.empty()) {
    std::vector<std::string> dirs = {cfg.data_dir};
    if (!cfg.spool.path.empty()) dirs.push_back(cfg.spool.path);
    if (auto st = DropPrivileges(cfg.user, dirs); !st.ok()) {
      spdlog::critical("event=startup_failed error=\"{}\"", st.message());
      return 1;
    }
  } else if (geteuid() == 0) {
    spdlog::warn("event=running_as_root note=\"set user = \\\"mxrelay\\\" (or run under the systemd unit in "
                 "deploy/systemd) to drop privileges\"");
  }
  TightenDir(cfg.data_dir);
  TightenDir(cfg.SpoolPath());
  // Core files and ptrace would expose passwords in flight and mail: not
  // dumpable unless asked (after the uid change, which resets the flag).
  if (prctl(PR_SET_DUMPABLE, cfg.allow_core_dumps ? 1 : 0) != 0) {
    spdlog::critical("event=startup_failed error=\"prctl(PR_SET_DUMPABLE): {}\"", strerror(errno));
    return 1;
  }
  if (cfg.allow_core_dumps) {
    spdlog::warn("event=core_dumps_allowed note=\"allow_core_dumps = true: core files and ptrace by the same "
                 "user can read passwords and mail; for debugging only\"");
  }
  spdlog::info("event=starting version={} config={} hostname={} data_dir={}",
               kVersion, config_path.empty() ? "<embedded defaults>" : config_path, hostname, cfg.data_dir);
  WarnAboutRoutes(cfg);
  if (auto st = EnsureUsers(cfg, hostname); !st.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", st.message());
    return 1;
  }
  auto users = relay::UserDb::Load(cfg.UsersFile(), UserOptions(cfg));
  if (!users.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", users.status().message());
    return 1;
  }
  spdlog::info("event=users_loaded path={} users={}", cfg.UsersFile(), (*users)->size());
  WarnAmbiguous(**users);

  std::shared_ptr<relay::TlsContext> tls;
  bool need_tls = cfg.http_api.enabled && cfg.http_api.tls;
  for (const auto& l : cfg.listeners) need_tls |= l.mode != ListenerMode::kPlain;
  if (need_tls) {
    auto t = relay::TlsContext::Create(cfg.tls, cfg.data_dir, hostname,
                                       relay::TlsContext::ListeningAddresses(cfg.listeners));
    if (!t.ok()) {
      spdlog::critical("event=startup_failed error=\"{}\"", t.status().message());
      return 1;
    }
    tls = *t;
  }

  queue::RocksSpoolOptions so;
  so.path = cfg.SpoolPath();
  so.write_buffer_size = cfg.spool.write_buffer_size;
  so.max_write_buffer_number = cfg.spool.max_write_buffer_number;
  so.max_total_wal_size = cfg.spool.max_total_wal_size;
  so.min_free_bytes = cfg.spool.min_free_space;
  so.commit_delay_us = cfg.spool.commit_delay_us;
  so.write_deadline_ms = cfg.timeouts.spool_write * 1000;
  const Clock& clock = RealClock::Get();
  auto spool_or = queue::RocksSpool::Open(so, clock);
  if (!spool_or.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", spool_or.status().message());
    return 1;
  }
  std::unique_ptr<queue::RocksSpool> spool = std::move(*spool_or);
  // The message count comes later (event=spool_counted): a big spool must
  // not delay the start.
  spdlog::info("event=spool_opened path={}", so.path);

  // DKIM signing in front of the spool (dkim/signing_spool.h): messages
  // from clients and DSNs go through their SigningSpool; with no rule
  // configured a commit goes straight to the spool.
  auto dkim_policy = dkim::Policy::Build(cfg.dkim, dkim::Policy::Mode::kStrict);
  if (!dkim_policy.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", dkim_policy.status().message());
    return 1;
  }
  dkim::DkimStats dkim_stats(cfg.dkim.domain_labels);
  auto signer = std::make_unique<dkim::SigningService>(*dkim_policy, cfg.dkim.threads, &dkim_stats, clock);
  dkim::SigningSpool ingress_spool(spool.get(), signer.get(), dkim::SigningSpool::Origin::kReceived);
  dkim::SigningSpool dsn_spool(spool.get(), signer.get(), dkim::SigningSpool::Origin::kGenerated);
  if (!(*dkim_policy)->empty()) {
    spdlog::info("event=dkim_ready rules={} keys={} threads={}", (*dkim_policy)->rules().size(),
                 (*dkim_policy)->keys().size(), signer->threads());
  }

  queue::QueueIdGenerator ids(clock);
  // Tenants (sender domains, rates, quotas, pools) and the admin holds
  // (suspensions that survive a restart: data_dir/holds).
  tenants::Gate tenant_gate(&clock, cfg.tenants.allow_unassigned);
  if (auto st = ReloadTenants(cfg, &tenant_gate); !st.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", st.message());
    return 1;
  }
  delivery::Holds holds(cfg.data_dir + "/holds");
  if (auto st = holds.Load(clock.NowMicros()); !st.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", st.message());
    return 1;
  }
  if (!holds.empty()) spdlog::info("event=holds_loaded suspensions={}", holds.List(clock.NowMicros()).size());
  std::unique_ptr<delivery::DeliveryEngine> engine;
  if (cfg.delivery.enabled) {
    delivery::DeliveryEngine::Deps dd;
    dd.config = &cfg;
    dd.hostname = hostname;
    dd.spool = &dsn_spool;  // its DSNs are signed like any message (never deferred)
    dd.clock = &clock;
    dd.ids = &ids;
    dd.holds = &holds;
    engine = std::make_unique<delivery::DeliveryEngine>(dd);
    delivery::DeliveryEngine* e = engine.get();
    spool->SetCommitListener([e](queue::NewMessage& m) { e->Enqueue(m); });
    if (auto st = engine->Start(); !st.ok()) {
      spdlog::critical("event=startup_failed error=\"delivery: {}\"", st.message());
      return 1;
    }
  } else {
    spdlog::warn("event=delivery_disabled note=\"{}\"",
                 config_path.empty()
                     ? "embedded defaults: mail is accepted and queued, not delivered; run with "
                       "-c FILE ([delivery], [[route]]: docs/CONFIG.md) to deliver"
                     : "delivery.enabled = false: mail is only queued");
  }
  auto auth = std::make_unique<relay::Authenticator>(*users, 1, clock);
  relay::TraceHub trace_hub;  // outlives the server: sessions look subscribers up in it
  relay::IngressDeps deps;
  deps.config = &cfg;
  deps.hostname = hostname;
  deps.spool = &ingress_spool;
  deps.ids = &ids;
  deps.clock = &clock;
  deps.auth = auth.get();
  deps.tls = tls;
  deps.trace = &trace_hub;
  deps.tenants = &tenant_gate;
  auto server = std::make_unique<relay::IngressServer>(deps);
  if (auto st = server->Start(); !st.ok()) {
    spdlog::critical("event=startup_failed error=\"{}\"", st.message());
    server.reset();
    return 1;
  }
  spdlog::info("event=event_loop backend={}", LoopBackendName(RunningLoopBackend()));
  // The HTTP injection API and the admin API (api/).
  std::unique_ptr<api::HttpApi> http_api;
  if (cfg.http_api.enabled) {
    api::HttpApiDeps hd;
    hd.config = &cfg;
    hd.hostname = hostname;
    hd.spool = &ingress_spool;  // DKIM, then the same group commit as SMTP
    hd.ids = &ids;
    hd.clock = &clock;
    hd.gate = &tenant_gate;
    hd.tls = tls ? tls->get() : nullptr;
    auto h = api::HttpApi::Start(hd);
    if (!h.ok()) {
      spdlog::critical("event=startup_failed error=\"{}\"", h.status().message());
      server->Shutdown(0);
      if (engine) engine->Stop();
      return 1;
    }
    http_api = std::move(*h);
    spdlog::info("event=http_api_listening address={} tls={}", http_api->address(), cfg.http_api.tls);
  }
  std::unique_ptr<api::AdminApi> admin_api;
  if (cfg.admin_api.enabled) {
    auto token = api::LoadOrCreateToken(cfg.AdminTokenFile());
    absl::StatusOr<std::unique_ptr<api::AdminApi>> ad = absl::UnknownError("");
    if (!token.ok()) {
      ad = token.status();
    } else {
      api::AdminDeps ad_deps;
      ad_deps.config = &cfg;
      ad_deps.spool = spool.get();
      ad_deps.engine = engine.get();
      ad_deps.holds = &holds;
      ad_deps.clock = &clock;
      ad_deps.token = *token;
      ad = api::AdminApi::Start(ad_deps);
    }
    if (!ad.ok()) {
      spdlog::critical("event=startup_failed error=\"{}\"", ad.status().message());
      server->Shutdown(0);
      if (engine) engine->Stop();
      return 1;
    }
    admin_api = std::move(*ad);
    spdlog::info("event=admin_api_listening address={} token_file={}", admin_api->address(), cfg.AdminTokenFile());
  }
  std::atomic<bool> draining{false};
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  if (cfg.metrics.enabled) {
    metrics::Sources src;
    src.config = &cfg;
    src.ingress = &server->stats();
    src.spool = spool.get();
    src.delivery = engine ? &engine->stats() : nullptr;
    src.dkim = &dkim_stats;
    src.tenants = &tenant_gate.stats();
    src.http_api = http_api ? &http_api->stats() : nullptr;
    src.admin = admin_api ? &admin_api->stats() : nullptr;
    src.version = kVersion;
    queue::RocksSpool* sp = spool.get();
    src.not_ready = [sp, &draining]() -> std::string {
      if (draining.load()) return "draining (shutting down)";
      if (!sp->Healthy()) return Cat("spool unhealthy: ", sp->Health().reason);
      return "";
    };
    auto m = metrics::MetricsServer::Start(cfg.metrics, std::move(src));
    if (!m.ok()) {
      spdlog::critical("event=startup_failed error=\"{}\"", m.status().message());
      server->Shutdown(0);
      if (engine) engine->Stop();
      return 1;
    }
    metrics_server = std::move(*m);
    spdlog::info("event=metrics_listening address={} paths=/metrics,/healthz,/readyz", metrics_server->address());
  }
  // The admin socket (`mxrelay trace`); the relay runs without it if it
  // cannot be made (the reason is logged).
  std::unique_ptr<AdminSocket> admin;
  if (auto a = AdminSocket::Start(AdminSocketPath(cfg), &trace_hub); a.ok()) {
    admin = std::move(*a);
    if (engine) {
      const delivery::DeliveryStats* ds = &engine->stats();
      admin->SetShapingStatus([ds] { return FormatShapingStatus(*ds); });
    }
    spdlog::info("event=admin_socket_listening path={}", AdminSocketPath(cfg));
  } else {
    spdlog::warn("event=admin_socket_failed error=\"{}\" effect=\"mxrelay trace is not available\"",
                 a.status().message());
  }
  spdlog::info("event=ready pid={}", getpid());
  PrintWelcome(cfg);

  for (;;) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig == SIGHUP) {
      Reload(config_path, cfg, hostname, auth.get(), server.get(), engine.get(), signer.get(), &tenant_gate);
      continue;
    }
    spdlog::info("event=shutdown_begin signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  draining = true;  // /readyz says 503 while sessions finish
  admin.reset();    // trace clients see the end
  // Delivery drains at the same time as ingress (transactions in flight
  // finish, nothing new starts): both within the 30 s the unit's 45 s stop
  // timeout allows.
  if (engine) engine->BeginStop();
  server->Shutdown(30'000);
  http_api.reset();   // requests in flight get their answers (commits) first: before the spool
  admin_api.reset();  // before the engine: actions hand messages to it
  metrics_server.reset();  // reads the spool and the engine: stop it first
  if (engine) engine->Stop();  // before the spool: it reads and writes it
  signer.reset();  // signs and commits what it still holds: before the spool
  spool.reset();   // drains pending commits (their callbacks post to the stopped loops)
  engine.reset();
  // The password checker's thread posts its answers to the ingress loops:
  // join it before the loops go (TSan: its Post wrote to an eventfd the
  // server's destructor had closed, a use after free at shutdown).
  auth.reset();
  server.reset();
  spdlog::info("event=shutdown_complete");
  return 0;
}

int HashPasswordCmd() {
  std::string pw;
  if (!std::getline(std::cin, pw) || pw.empty()) {
    fmt::print(stderr, "mxrelay: give the password on standard input\n");
    return 2;
  }
  auto h = relay::HashPassword(pw);
  if (!h.ok()) {
    fmt::print(stderr, "mxrelay: {}\n", h.status().message());
    return 1;
  }
  fmt::print("{}\n", *h);
  return 0;
}

}  // namespace
}  // namespace mxr

int main(int argc, char** argv) {
  CLI::App app{"mxrelay: a high-throughput durable SMTP relay"};
  std::string config;
  app.add_option("-c,--config", config, "TOML configuration file (default: embedded defaults)");
  app.require_subcommand(0, 1);
  auto* run = app.add_subcommand("run", "Run the relay (the default)");
  auto* q = app.add_subcommand("queue", "Inspect the spool");
  q->require_subcommand(1);
  size_t limit = 1000;
  bool json = false;
  auto* ql = q->add_subcommand("list", "List queued messages, oldest first");
  ql->add_option("--limit", limit, "At most this many messages")->default_val(1000);
  ql->add_flag("--json", json, "One JSON object per line");
  auto* qs = q->add_subcommand("summary", "Count, bytes and age of the queue");
  std::string show_id;
  bool show_json = false;
  auto* qw = q->add_subcommand("show", "One message: recipients, last replies, next attempt, history");
  qw->add_option("id", show_id, "Queue id (from \"queued as ...\" or the log)")->required();
  qw->add_flag("--json", show_json, "One JSON object");
  // Actions through the running relay's admin API (main/admin_cli.h).
  std::string by, act_id, q_domain, q_site, q_tenant, q_campaign, q_pool, q_sender, q_duration, tenant_name;
  bool q_all = false, act_json = false;
  qs->add_option("--by", by, "Group by domain, site, tenant, campaign or pool (asks the running relay)");
  qs->add_flag("--json", act_json, "The admin API's JSON");
  auto* qi = q->add_subcommand("inspect", "One message through the running relay: envelope, headers, attempts, hold");
  qi->add_option("id", act_id, "Queue id")->required();
  auto* qsusp = q->add_subcommand("suspend", "Suspend delivery by domain, site, tenant or campaign (kept across restarts)");
  auto* qres = q->add_subcommand("resume", "Resume delivery suspended by domain, site, tenant or campaign");
  auto* qb = q->add_subcommand("bounce", "Bounce matching messages (a DSN goes to each sender)");
  auto* qd = q->add_subcommand("delete", "Delete matching messages (no DSN)");
  auto* qr = q->add_subcommand("retry", "Retry matching messages now");
  auto* qh = q->add_subcommand("hold", "Hold one message (no delivery until released)");
  auto* qrel = q->add_subcommand("release", "Release a held message (retried at once)");
  auto* qsl = q->add_subcommand("suspensions", "List suspensions and holds");
  for (CLI::App* sub : {qh, qrel}) sub->add_option("id", act_id, "Queue id")->required();
  for (CLI::App* sub : {qsusp, qres, qb, qd, qr}) {
    sub->add_option("--domain", q_domain, "Recipient domain");
    sub->add_option("--site", q_site, "Destination site (as in logs: site=...)");
    sub->add_option("--tenant", q_tenant, "Tenant");
    sub->add_option("--campaign", q_campaign, "Campaign id");
  }
  for (CLI::App* sub : {qb, qd, qr}) {
    sub->add_option("--id", act_id, "Queue id");
    sub->add_option("--pool", q_pool, "Egress pool");
    sub->add_option("--sender", q_sender, "Envelope sender");
    sub->add_flag("--all", q_all, "Every message in the queue");
  }
  qsusp->add_option("--duration", q_duration, "For this long (90s, 15m, 2h, 1d); default until resumed");
  for (CLI::App* sub : {qi, qsusp, qres, qb, qd, qr, qh, qrel, qsl}) {
    sub->add_option("-c,--config", config, "TOML configuration file");
    if (sub != qi) sub->add_flag("--json", act_json, "The admin API's JSON");
  }
  qi->add_flag("--json", act_json, "JSON (the default is also JSON, indented)");
  auto* ten = app.add_subcommand("tenant", "Tenants");
  ten->require_subcommand(1);
  auto* tak = ten->add_subcommand("apikey", "Mint an API key: prints the key and its hash for the tenants file");
  tak->add_option("--tenant", tenant_name, "The tenant it is for (only printed)");
  auto* hp = app.add_subcommand("hash-password", "Read a password on stdin, print a yescrypt hash");
  std::string trace_ip, trace_user;
  int trace_seconds = 0;
  auto* tr = app.add_subcommand("trace", "Show the SMTP conversations of matching sessions as they happen "
                                         "(AUTH payloads and message contents redacted)");
  tr->add_option("--ip", trace_ip, "Client address");
  tr->add_option("--user", trace_user, "Authenticated user, as the users file writes it");
  tr->add_option("--seconds", trace_seconds, "Stop after this long (default: until interrupted)");
  tr->add_option("-c,--config", config, "TOML configuration file");
  auto* sh = app.add_subcommand("shaping", "Egress shaping of the running relay");
  sh->require_subcommand(1);
  auto* shs = sh->add_subcommand("status", "Sources (warm-up), pools, rules in use, paths under an automation action");
  shs->add_option("-c,--config", config, "TOML configuration file");
  auto* cc = app.add_subcommand("check-config", "Validate the configuration and exit");
  auto* dk = app.add_subcommand("dkim", "DKIM keys: generate, check the published record, sign by hand");
  dk->require_subcommand(1);
  mxr::DkimCliArgs da;
  auto* dkg = dk->add_subcommand("keygen", "Write a new private key (0600) and print its DNS TXT record");
  auto* dkc = dk->add_subcommand("check", "Fetch <selector>._domainkey.<domain> and compare it with the key");
  auto* dks = dk->add_subcommand("sign", "Sign the message on stdin, print it with its DKIM-Signature");
  for (CLI::App* sub : {dkg, dkc, dks}) {
    sub->add_option("--domain", da.domain, "Signing domain (d=)")->required();
    sub->add_option("--selector", da.selector, "Selector (s=)")->required();
  }
  dkg->add_option("--algorithm", da.algorithm, "rsa2048 (also rsa1024, rsa3072, rsa4096) or ed25519")->required();
  dkg->add_option("--out", da.out, "Key file to write (default DOMAIN.SELECTOR.pem)");
  dkg->add_flag("--force", da.force, "Replace an existing key file");
  dkc->add_option("--key-file", da.key_file, "Private key (default: the one a [[dkim.rule]] of -c names)");
  dkc->add_option("--resolver", da.resolver, "DNS server ip:port (default: delivery.resolver of -c, else the system's)");
  dkc->add_option("--timeout-ms", da.timeout_ms, "DNS timeout")->default_val(5000);
  dkc->add_option("-c,--config", config, "TOML configuration file");
  dks->add_option("--key-file", da.key_file, "Private key")->required();
  dks->add_option("--canonicalization", da.canonicalization, "relaxed/relaxed (default), simple/simple, ...");
  dks->add_option("--time", da.time, "t= (Unix seconds; default now)");
  for (CLI::App* sub : {run, q, hp, cc}) {
    sub->add_option("-c,--config", config, "TOML configuration file");
  }
  ql->add_option("-c,--config", config, "TOML configuration file");
  qs->add_option("-c,--config", config, "TOML configuration file");
  qw->add_option("-c,--config", config, "TOML configuration file");
  CLI11_PARSE(app, argc, argv);

  if (*hp) return mxr::HashPasswordCmd();
  if (*tak) return mxr::TenantApiKey(tenant_name);
  bool admin_cmd = (*qs && !by.empty()) || *qi || *qsusp || *qres || *qb || *qd || *qr || *qh || *qrel || *qsl;
  if (admin_cmd) {
    auto cfg = mxr::LoadConfig(config);
    if (!cfg.ok()) {
      fmt::print(stderr, "mxrelay: config error: {}\n", cfg.status().message());
      return 2;
    }
    if (*qs) return mxr::AdminCall(*cfg, "GET", "/api/v1/queue/summary?by=" + by, "", act_json);
    if (*qi) return mxr::AdminCall(*cfg, "GET", "/api/v1/queue/messages/" + act_id, "", act_json);
    if (*qsl) return mxr::AdminCall(*cfg, "GET", "/api/v1/queue/suspensions", "", act_json);
    if (*qh || *qrel) {
      return mxr::AdminCall(*cfg, "POST", "/api/v1/queue/messages/" + act_id + (*qh ? "/hold" : "/release"), "", act_json);
    }
    nlohmann::json body = nlohmann::json::object();
    auto put = [&](const char* k, const std::string& v) {
      if (!v.empty()) body[k] = v;
    };
    put("id", act_id);
    put("domain", q_domain);
    put("site", q_site);
    put("tenant", q_tenant);
    put("campaign", q_campaign);
    put("pool", q_pool);
    put("sender", q_sender);
    put("duration", q_duration);
    if (q_all) body["all"] = true;
    const char* verb = *qsusp ? "suspend" : *qres ? "resume" : *qb ? "bounce" : *qd ? "delete" : "retry";
    return mxr::AdminCall(*cfg, "POST", mxr::Cat("/api/v1/queue/", verb), body.dump(), act_json);
  }
  if (*tr) {
    if (trace_ip.empty() && trace_user.empty()) {
      fmt::print(stderr, "mxrelay trace: give --ip ADDR and/or --user NAME\n");
      return 2;
    }
    auto cfg = mxr::LoadConfig(config);
    if (!cfg.ok()) {
      fmt::print(stderr, "mxrelay: config error: {}\n", cfg.status().message());
      return 2;
    }
    return mxr::RunTraceClient(mxr::AdminSocketPath(*cfg), trace_ip, trace_user, trace_seconds);
  }
  if (*shs) {
    auto cfg = mxr::LoadConfig(config);
    if (!cfg.ok()) {
      fmt::print(stderr, "mxrelay: config error: {}\n", cfg.status().message());
      return 2;
    }
    return mxr::RunShapingStatus(mxr::AdminSocketPath(*cfg));
  }
  if (*dkg) return mxr::DkimKeygen(da);
  if (*dks) return mxr::DkimSign(da);
  if (*dkc) {
    if (config.empty()) return mxr::DkimCheck(da, nullptr);
    auto cfg = mxr::LoadConfig(config);
    if (!cfg.ok()) {
      fmt::print(stderr, "mxrelay: config error: {}\n", cfg.status().message());
      return 2;
    }
    return mxr::DkimCheck(da, &*cfg);
  }
  if (*q || *cc) {
    auto cfg = mxr::LoadConfig(config);
    if (!cfg.ok()) {
      fmt::print(stderr, "mxrelay: config error: {}\n", cfg.status().message());
      return 2;
    }
    if (*cc) {
      // The DKIM keys as the relay would load them at start.
      auto dkim_policy = mxr::dkim::Policy::Build(cfg->dkim, mxr::dkim::Policy::Mode::kStrict);
      if (!dkim_policy.ok()) {
        fmt::print(stderr, "mxrelay: config error: {}\n", dkim_policy.status().message());
        return 2;
      }
      // The tenants file as the relay would load it at start.
      size_t ntenants = 0;
      if (!cfg->tenants.file.empty()) {
        auto t = mxr::tenants::Directory::Load(cfg->tenants.file);
        if (!t.ok()) {
          fmt::print(stderr, "mxrelay: config error: {}\n", t.status().message());
          return 2;
        }
        ntenants = (*t)->tenants().size();
      }
      // The shaping and classification files as delivery would load them.
      auto shaping = mxr::delivery::LoadShapingSetup(*cfg);
      if (!shaping.ok()) {
        fmt::print(stderr, "mxrelay: config error: {}\n", shaping.status().message());
        return 2;
      }
      fmt::print("{}: OK ({} listeners, spool {}, {} DKIM rules, {} tenants, {} shaping rules)\n",
                 config.empty() ? "<embedded defaults>" : config, cfg->listeners.size(), cfg->SpoolPath(),
                 cfg->dkim.rules.size(), ntenants, shaping->table->RuleNames().size());
      return 0;
    }
    if (*ql) return mxr::QueueList(*cfg, limit, json);
    if (*qw) return mxr::QueueShow(*cfg, show_id, show_json);
    return mxr::QueueSummary(*cfg);
  }
  return mxr::Run(config);
}
