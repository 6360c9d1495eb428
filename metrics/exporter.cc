#include "metrics/exporter.h"

#include "common/event_loop.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "CivetServer.h"
#include "api/admin_api.h"
#include "api/http_api.h"
#include "common/listener_wake.h"
#include "common/net.h"
#include "common/status.h"
#include "common/strings.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace mxr::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Builds the families of one scrape.
class Families {
 public:
  MetricFamily& Family(const char* name, const char* help, MetricType type) {
    out_.push_back(MetricFamily{name, help, type, {}});
    return out_.back();
  }
  void Counter(const char* name, const char* help, double v, Labels l = {}) {
    AddCounter(Family(name, help, MetricType::Counter), v, std::move(l));
  }
  void Gauge(const char* name, const char* help, double v, Labels l = {}) {
    AddGauge(Family(name, help, MetricType::Gauge), v, std::move(l));
  }
  static void AddCounter(MetricFamily& f, double v, Labels l = {}) {
    ClientMetric m;
    m.label = std::move(l);
    m.counter.value = v;
    f.metric.push_back(std::move(m));
  }
  static void AddGauge(MetricFamily& f, double v, Labels l = {}) {
    ClientMetric m;
    m.label = std::move(l);
    m.gauge.value = v;
    f.metric.push_back(std::move(m));
  }
  // `scale` converts the histogram's unit (µs -> s: 1e-6).
  void Histogram(const char* name, const char* help, const HistogramSnapshot& h, double scale) {
    MetricFamily& f = Family(name, help, MetricType::Histogram);
    ClientMetric m;
    m.histogram.sample_count = h.count;
    m.histogram.sample_sum = static_cast<double>(h.sum) * scale;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      m.histogram.bucket.push_back({h.cumulative[i], static_cast<double>(h.bounds[i]) * scale});
    }
    m.histogram.bucket.push_back({h.count, std::numeric_limits<double>::infinity()});
    f.metric.push_back(std::move(m));
  }
  std::vector<MetricFamily> Take() {
    return std::vector<MetricFamily>(std::make_move_iterator(out_.begin()), std::make_move_iterator(out_.end()));
  }

 private:
  std::deque<MetricFamily> out_;  // a deque: Family() references stay valid
};

double Load(const std::atomic<uint64_t>& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); }
double Load(const std::atomic<int64_t>& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); }

void RenderIngress(const Sources& src, Families& f) {
  const relay::IngressStats& s = *src.ingress;
  auto& acc = f.Family("mxrelay_connections_accepted_total", "SMTP connections accepted, by listener.",
                       MetricType::Counter);
  for (size_t i = 0; i < s.listener_count && i < src.config->listeners.size(); ++i) {
    Families::AddCounter(acc, Load(s.accepted_by_listener[i]), {{"listener", src.config->listeners[i].name}});
  }
  f.Gauge("mxrelay_connections_current", "SMTP connections open now.", Load(s.connections_current));
  auto& ref = f.Family("mxrelay_connections_refused_total", "Connections refused with 421 at connect, by reason.",
                       MetricType::Counter);
  Families::AddCounter(ref, Load(s.connections_refused_global), {{"reason", "global_limit"}});
  Families::AddCounter(ref, Load(s.connections_refused_per_ip), {{"reason", "per_ip_limit"}});
  auto& pp = f.Family("mxrelay_proxy_protocol_total",
                      "PROXY protocol listeners: headers accepted, or connections closed without a reply, by result.",
                      MetricType::Counter);
  Families::AddCounter(pp, Load(s.proxy_ok), {{"result", "ok"}});
  Families::AddCounter(pp, Load(s.proxy_untrusted_peer), {{"result", "untrusted_peer"}});
  Families::AddCounter(pp, Load(s.proxy_malformed), {{"result", "malformed"}});
  Families::AddCounter(pp, Load(s.proxy_no_header), {{"result", "no_header"}});
  auto& tls = f.Family("mxrelay_tls_handshakes_total", "Inbound TLS handshakes, by result and protocol version.",
                       MetricType::Counter);
  Families::AddCounter(tls, Load(s.tls_handshakes_tls12), {{"result", "ok"}, {"version", "TLSv1.2"}});
  Families::AddCounter(tls, Load(s.tls_handshakes_tls13), {{"result", "ok"}, {"version", "TLSv1.3"}});
  Families::AddCounter(tls, Load(s.tls_handshakes_failed), {{"result", "failed"}, {"version", "none"}});
  auto& auth = f.Family("mxrelay_auth_attempts_total", "AUTH PLAIN/LOGIN password checks, by result.",
                        MetricType::Counter);
  Families::AddCounter(auth, Load(s.auth_success), {{"result", "success"}});
  Families::AddCounter(auth, Load(s.auth_failure), {{"result", "failure"}});
  Families::AddCounter(auth, Load(s.auth_blocked), {{"result", "blocked"}});
  Families::AddCounter(auth, Load(s.auth_busy), {{"result", "busy"}});
  f.Counter("mxrelay_auth_joined_total",
            "AUTH attempts over the client's limit of checks in flight that were answered by the "
            "identical login already being checked (instead of 454).",
            Load(s.auth_joined));
  f.Counter("mxrelay_auth_password_checks_total",
            "Passwords checked against the users file (crypt(3)); logins answered from the cache of recent "
            "successes are not counted.",
            Load(s.auth_password_checks));
  auto& rep = f.Family("mxrelay_smtp_replies_total", "SMTP replies sent, by the command answered and code class.",
                       MetricType::Counter);
  static const char* kClass[4] = {"2xx", "3xx", "4xx", "5xx"};
  for (size_t c = 0; c < static_cast<size_t>(relay::ReplyCmd::kCount); ++c) {
    for (int k = 0; k < 4; ++k) {
      uint64_t v = s.replies[c][k].load(std::memory_order_relaxed);
      if (v == 0) continue;  // most pairs never happen; absent = 0
      Families::AddCounter(rep, static_cast<double>(v),
                           {{"command", relay::ReplyCmdName(static_cast<relay::ReplyCmd>(c))}, {"class", kClass[k]}});
    }
  }
  f.Counter("mxrelay_messages_received_total", "Messages acknowledged with 250 (durably queued).",
            Load(s.messages_accepted));
  f.Counter("mxrelay_received_bytes_total", "Bytes of acknowledged messages, as stored.", Load(s.bytes_accepted));
  f.Histogram("mxrelay_message_size_bytes", "Size of acknowledged messages.", s.message_size.Snapshot(), 1.0);
  f.Histogram("mxrelay_time_to_250_seconds", "From the end of a message to its 250 (the spool commit as clients see it).",
              s.time_to_250_us.Snapshot(), 1e-6);
}

void RenderSpool(const Sources& src, Families& f) {
  queue::SpoolStats s = src.spool->Stats();
  f.Gauge("mxrelay_spool_healthy", "1 when the spool accepts writes, 0 when latched unhealthy.",
          src.spool->Healthy() ? 1 : 0);
  f.Counter("mxrelay_spool_commits_total", "Synced group-commit writes.", static_cast<double>(s.commits));
  f.Counter("mxrelay_spool_committed_messages_total", "Messages made durable.", static_cast<double>(s.committed_messages));
  f.Counter("mxrelay_spool_committed_bytes_total", "Bytes made durable.", static_cast<double>(s.committed_bytes));
  f.Counter("mxrelay_spool_commit_failed_messages_total", "Messages whose commit failed (client got 451/452).",
            static_cast<double>(s.failed_messages));
  f.Histogram("mxrelay_spool_commit_batch_messages", "Messages per synced group commit.", s.batch_messages, 1.0);
  f.Histogram("mxrelay_spool_commit_duration_seconds", "Duration of each synced group commit.", s.commit_micros, 1e-6);
  f.Counter("mxrelay_spool_write_stalls_total", "Writes that met a RocksDB write stall.",
            static_cast<double>(s.write_stalls));
  f.Counter("mxrelay_spool_background_errors_total", "Times the spool was latched unhealthy by an error.",
            static_cast<double>(s.background_errors));
  f.Gauge("mxrelay_spool_disk_bytes", "RocksDB SST and WAL files on disk.", static_cast<double>(s.disk_bytes));
  if (s.queue_known) {  // absent until the open-time count is done
    f.Gauge("mxrelay_queue_messages", "Messages in the spool not yet delivered or bounced.",
            static_cast<double>(std::max<int64_t>(0, s.queue_messages)));
    f.Gauge("mxrelay_queue_bytes", "Body bytes of the queued messages.",
            static_cast<double>(std::max<int64_t>(0, s.queue_bytes)));
  }
}

void RenderDelivery(const Sources& src, Families& f) {
  const delivery::DeliveryStats& s = *src.delivery;
  auto& att = f.Family("mxrelay_delivery_attempts_total", "Recipient delivery attempts, by outcome.",
                       MetricType::Counter);
  for (delivery::Outcome o : delivery::kAllOutcomes) {
    Families::AddCounter(att, static_cast<double>(s.Attempts(o)), {{"outcome", std::string(delivery::OutcomeName(o))}});
  }
  f.Counter("mxrelay_delivery_messages_completed_total", "Messages removed from the spool (all recipients done).",
            Load(s.messages_completed));
  f.Counter("mxrelay_delivery_dsns_total", "DSN bounce messages queued.", Load(s.dsns_queued));
  const char* notices_help = "RFC 3461 notices we generated (relayed: NOTIFY=SUCCESS to a next hop without DSN).";
  auto& notices = f.Family("mxrelay_dsn_notices_total", notices_help, MetricType::Counter);
  Families::AddCounter(notices, Load(s.dsn_ext_success), {{"kind", "relayed"}});
  Families::AddCounter(notices, Load(s.dsn_ext_delay), {{"kind", "delayed"}});
  auto& sts = f.Family("mxrelay_mta_sts_sessions_total",
                       "Outbound sessions under an MTA-STS policy, by policy mode and TLS-RPT outcome.",
                       MetricType::Counter);
  Families::AddCounter(sts, Load(s.sts_enforce_ok), {{"mode", "enforce"}, {"result", "success"}});
  Families::AddCounter(sts, Load(s.sts_enforce_failed), {{"mode", "enforce"}, {"result", "failure"}});
  Families::AddCounter(sts, Load(s.sts_testing_ok), {{"mode", "testing"}, {"result", "success"}});
  Families::AddCounter(sts, Load(s.sts_testing_failed), {{"mode", "testing"}, {"result", "failure"}});
  f.Counter("mxrelay_mta_sts_mx_mismatch_total",
            "Jobs deferred because no MX host matched the domain's MTA-STS enforce policy.", Load(s.sts_mx_mismatch));
  auto& rpt = f.Family("mxrelay_tls_rpt_reports_total", "TLS-RPT aggregate reports by outcome.",
                       MetricType::Counter);
  Families::AddCounter(rpt, Load(s.tls_rpt_sent), {{"result", "sent"}});
  Families::AddCounter(rpt, Load(s.tls_rpt_failed), {{"result", "failed"}});
  Families::AddCounter(rpt, Load(s.tls_rpt_no_rua), {{"result", "no_rua"}});
  f.Counter("mxrelay_dsn_failure_suppressed_total", "Failure DSNs not sent because NOTIFY asked for none.",
            Load(s.dsn_ext_failure_suppressed));
  auto& conns = f.Family("mxrelay_delivery_connections_total",
                         "Outbound connections (counted when closed), by whether they reached a usable session.",
                         MetricType::Counter);
  Families::AddCounter(conns, Load(s.connections_ok), {{"result", "ok"}});
  Families::AddCounter(conns, Load(s.connections_failed), {{"result", "failed"}});
  f.Gauge("mxrelay_delivery_connections_active", "Outbound connections open now.", Load(s.connections_active));
  f.Gauge("mxrelay_delivery_sites_backed_off", "Sites in dead-site backoff now.", Load(s.sites_backed_off));
  f.Counter("mxrelay_delivery_site_backoffs_total", "Times a site entered backoff.", Load(s.site_backoffs));
  f.Gauge("mxrelay_delivery_messages_active", "Messages loaded and being worked on.", Load(s.messages_active));
  f.Gauge("mxrelay_queue_deferred_messages",
          "Messages waiting for a later attempt (after a deferral or a held round); what `mxrelay queue summary` "
          "calls deferred.",
          Load(s.messages_deferred));
  f.Counter("mxrelay_delivery_body_read_failures_total",
            "Message bodies that could not be read from the spool (their recipients deferred 4.3.0, nothing sent).",
            Load(s.body_read_failures));
  f.Gauge("mxrelay_delivery_body_bytes_loaded", "Bytes of message bodies read from the spool and held for transactions.",
          Load(s.body_bytes_loaded));
  f.Counter("mxrelay_delivery_body_budget_waits_total",
            "Body reads that waited for the delivery.max_body_memory budget.", Load(s.body_waits));
  f.Histogram("mxrelay_delivery_latency_seconds", "From acceptance to the recipient's 250 at the destination.",
              s.delivery_latency_us.Snapshot(), 1e-6);
  int64_t oldest = s.oldest_message_us.load(std::memory_order_relaxed);
  double age = 0;
  if (oldest > 0) {
    age = std::max(0.0, static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count() -
                                            oldest) /
                            1e6);
  }
  f.Gauge("mxrelay_queue_oldest_message_age_seconds", "Age of the oldest queued message (0 when empty).", age);

  delivery::DeliverySnapshot snap = s.Snapshot();
  auto& dns = f.Family("mxrelay_dns_lookups_total", "MX/A/AAAA lookups, by result.", MetricType::Counter);
  Families::AddCounter(dns, static_cast<double>(snap.dns_ok), {{"result", "ok"}});
  Families::AddCounter(dns, static_cast<double>(snap.dns_nxdomain), {{"result", "nxdomain"}});
  Families::AddCounter(dns, static_cast<double>(snap.dns_nullmx), {{"result", "nullmx"}});
  Families::AddCounter(dns, static_cast<double>(snap.dns_tempfail), {{"result", "tempfail"}});
  Families::AddCounter(dns, static_cast<double>(snap.dns_cache_hits), {{"result", "cache_hit"}});
  Families::AddCounter(dns, static_cast<double>(snap.dns_coalesced), {{"result", "coalesced"}});
  f.Histogram("mxrelay_dns_lookup_duration_seconds", "Duration of DNS lookups that went to the server.",
              snap.dns_micros, 1e-6);

  auto& sa = f.Family("mxrelay_site_attempts_total", "Recipient attempts per site, by outcome.", MetricType::Counter);
  auto& sc = f.Family("mxrelay_site_connections_active", "Outbound connections open to the site.", MetricType::Gauge);
  auto& sq = f.Family("mxrelay_site_queued_jobs", "Transactions waiting for a connection to the site.",
                      MetricType::Gauge);
  auto& sb = f.Family("mxrelay_site_backed_off", "1 while the site is backed off.", MetricType::Gauge);
  for (const auto& site : snap.sites) {
    for (delivery::Outcome o : delivery::kAllOutcomes) {
      Families::AddCounter(sa, static_cast<double>(site.attempts[o]),
                           {{"site", site.label}, {"outcome", std::string(delivery::OutcomeName(o))}});
    }
    Families::AddGauge(sc, static_cast<double>(site.connections), {{"site", site.label}});
    Families::AddGauge(sq, static_cast<double>(site.queued_jobs), {{"site", site.label}});
    Families::AddGauge(sb, site.backed_off ? 1 : 0, {{"site", site.label}});
  }

  // Egress sources, pools, shaping (delivery/egress.h, shaping.h, classify.h).
  // Labels are bounded by the configuration (sources, pools, rules) and by
  // fixed lists (categories, actions).
  auto& fc = f.Family("mxrelay_delivery_failures_total",
                      "Failed recipient attempts (deferred, bounced, expired), by bounce category.", MetricType::Counter);
  for (size_t i = 0; i < delivery::kFailureCategoryNames.size(); ++i) {
    Families::AddCounter(fc, Load(s.failures_by_category[i]), {{"category", std::string(delivery::kFailureCategoryNames[i])}});
  }
  auto& act = f.Family("mxrelay_shaping_actions_total", "Automation actions taken on egress paths, by action.",
                       MetricType::Counter);
  for (size_t i = 1; i < delivery::kShapingActionNames.size(); ++i) {
    Families::AddCounter(act, Load(s.shaping_actions[i]), {{"action", std::string(delivery::kShapingActionNames[i])}});
  }
  f.Gauge("mxrelay_shaping_paths_suspended", "Egress paths (source, site) suspended by an automation rule now.",
          Load(s.paths_suspended));
  f.Gauge("mxrelay_shaping_longest_suspension_seconds",
          "How long the oldest suspension of an egress path in force has lasted (0: none).",
          Load(s.longest_suspension_s));
  auto& rp = f.Family("mxrelay_shaping_rule_paths", "Egress paths known to delivery, by the shaping rule they use.",
                      MetricType::Gauge);
  for (const auto& [rule, n] : snap.rule_paths) Families::AddGauge(rp, static_cast<double>(n), {{"rule", rule}});
  auto& sj = f.Family("mxrelay_egress_source_jobs_total", "Transactions assigned to each egress source.",
                      MetricType::Counter);
  auto& wd = f.Family("mxrelay_egress_source_warmup_day", "Day of the source's warm-up (0: not warming up).",
                      MetricType::Gauge);
  auto& wc = f.Family("mxrelay_egress_source_warmup_cap", "Today's warm-up cap of the source (-1: none).",
                      MetricType::Gauge);
  auto& ws = f.Family("mxrelay_egress_source_warmup_sent_today", "Transactions the source took today (UTC).",
                      MetricType::Gauge);
  auto& wo = f.Family("mxrelay_egress_source_warmup_overflow_total",
                      "Times the source was passed over: its warm-up cap for the day was reached.", MetricType::Counter);
  for (const auto& src2 : snap.sources) {
    Families::AddCounter(sj, static_cast<double>(src2.assigned), {{"source", src2.name}});
    Families::AddGauge(wd, static_cast<double>(src2.warmup_day), {{"source", src2.name}});
    Families::AddGauge(wc, static_cast<double>(src2.warmup_cap), {{"source", src2.name}});
    Families::AddGauge(ws, static_cast<double>(src2.warmup_sent), {{"source", src2.name}});
    Families::AddCounter(wo, static_cast<double>(src2.warmup_overflow), {{"source", src2.name}});
  }
  auto& pj = f.Family("mxrelay_egress_pool_jobs_total", "Transactions assigned through each egress pool.",
                      MetricType::Counter);
  for (const auto& [pool, n] : snap.pools) Families::AddCounter(pj, static_cast<double>(n), {{"pool", pool}});
}

// Tenants, the HTTP injection API and the admin API (issue 18).
void RenderControlPlane(const Sources& src, Families& f) {
  if (src.tenants != nullptr) {
    const tenants::GateStats& t = *src.tenants;
    auto& r = f.Family("mxrelay_tenant_refusals_total",
                       "Messages or recipients refused by a tenant rule (SMTP and HTTP API), by rule.",
                       MetricType::Counter);
    Families::AddCounter(r, Load(t.refused_sender), {{"rule", "sender_domains"}});
    Families::AddCounter(r, Load(t.refused_from_header), {{"rule", "from_header"}});
    Families::AddCounter(r, Load(t.refused_rate), {{"rule", "rate"}});
    Families::AddCounter(r, Load(t.refused_quota), {{"rule", "daily_quota"}});
    Families::AddCounter(r, Load(t.refused_recipients), {{"rule", "max_recipients"}});
    Families::AddCounter(r, Load(t.refused_unassigned), {{"rule", "unassigned"}});
  }
  if (src.http_api != nullptr) {
    const api::ApiStats& a = *src.http_api;
    auto& r = f.Family("mxrelay_http_api_requests_total", "HTTP injection API requests, by result.", MetricType::Counter);
    Families::AddCounter(r, Load(a.requests_ok), {{"result", "ok"}});
    Families::AddCounter(r, Load(a.requests_bad), {{"result", "bad_request"}});
    Families::AddCounter(r, Load(a.requests_unauthorized), {{"result", "unauthorized"}});
    Families::AddCounter(r, Load(a.requests_refused), {{"result", "refused"}});
    Families::AddCounter(r, Load(a.requests_failed), {{"result", "failed"}});
    f.Counter("mxrelay_http_api_messages_total", "Messages queued through the HTTP API.", Load(a.messages));
    f.Counter("mxrelay_http_api_recipients_total", "Recipients queued through the HTTP API.", Load(a.recipients));
  }
  if (src.admin != nullptr) {
    const api::AdminStats& a = *src.admin;
    auto& r = f.Family("mxrelay_admin_actions_total", "Admin API actions, by action.", MetricType::Counter);
    Families::AddCounter(r, Load(a.suspend), {{"action", "suspend"}});
    Families::AddCounter(r, Load(a.resume), {{"action", "resume"}});
    Families::AddCounter(r, Load(a.bounce), {{"action", "bounce"}});
    Families::AddCounter(r, Load(a.del), {{"action", "delete"}});
    Families::AddCounter(r, Load(a.retry), {{"action", "retry"}});
    Families::AddCounter(r, Load(a.hold), {{"action", "hold"}});
    Families::AddCounter(r, Load(a.release), {{"action", "release"}});
    f.Counter("mxrelay_admin_messages_touched_total", "Messages the admin actions touched.", Load(a.messages_touched));
    f.Counter("mxrelay_admin_unauthorized_total", "Admin API requests refused for a missing or wrong token.",
              Load(a.unauthorized));
  }
}

void RenderDkim(const Sources& src, Families& f) {
  const dkim::DkimStats& s = *src.dkim;
  auto& sig = f.Family("mxrelay_dkim_signatures_total",
                       "DKIM signatures made, by signing domain (d=; the first dkim.domain_labels domains, the "
                       "rest as other) and algorithm.",
                       MetricType::Counter);
  for (const auto& [key, n] : s.Signatures()) {
    Families::AddCounter(sig, static_cast<double>(n), {{"domain", key.first}, {"algorithm", key.second}});
  }
  auto& msgs = f.Family("mxrelay_dkim_messages_total",
                        "Messages through the DKIM signer, by result (signed, unsigned, deferred with 451).",
                        MetricType::Counter);
  for (dkim::Result r : {dkim::Result::kSigned, dkim::Result::kUnsigned, dkim::Result::kDeferred}) {
    Families::AddCounter(msgs, static_cast<double>(s.results(r)), {{"result", std::string(dkim::ResultName(r))}});
  }
  auto& fail = f.Family("mxrelay_dkim_failures_total",
                        "Signatures not made, by reason (no_rule, from_invalid, key_unusable, sign_error).",
                        MetricType::Counter);
  for (dkim::Failure r : dkim::kAllFailures) {
    Families::AddCounter(fail, static_cast<double>(s.failures(r)), {{"reason", std::string(dkim::FailureName(r))}});
  }
  f.Histogram("mxrelay_dkim_signing_duration_seconds",
              "Time a signing thread spent on one message (parse, canonicalize, hash, every signature of its rule).",
              s.SigningTime(), 1e-6);
}

// /proc figures of this process.
void RenderProcess(const Sources& src, Families& f) {
  auto& bi = f.Family("mxrelay_build_info", "Build information (value 1).", MetricType::Gauge);
  Families::AddGauge(bi, 1, {{"version", src.version}});
  if (RunningLoopBackend() != LoopBackend::kAuto) {
    auto& lb = f.Family("mxrelay_event_loop_backend",
                        "The event-loop backend the relay's threads run (value 1): io_uring, or epoll where "
                        "io_uring is refused or event_loop says so.",
                        MetricType::Gauge);
    Families::AddGauge(lb, 1, {{"backend", LoopBackendName(RunningLoopBackend())}});
  }
  static const long kTick = sysconf(_SC_CLK_TCK);
  static const long kPage = sysconf(_SC_PAGESIZE);
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the command name (which may contain spaces) in ")".
    size_t rp = line.rfind(')');
    std::istringstream in(line.substr(rp + 2));
    std::vector<std::string> fld;
    std::string x;
    while (in >> x) fld.push_back(x);
    // fld[0] is field 3 (state): utime = field 14, stime = 15, starttime = 22, rss = 24.
    if (fld.size() > 21) {
      double utime = std::stod(fld[11]), stime = std::stod(fld[12]);
      f.Counter("mxrelay_process_cpu_seconds_total", "User and system CPU time.", (utime + stime) / kTick);
      f.Gauge("mxrelay_process_resident_memory_bytes", "Resident set size.", std::stod(fld[21]) * kPage);
      double start_ticks = std::stod(fld[19]);
      std::ifstream ps("/proc/stat");
      std::string key;
      double btime = 0;
      while (ps >> key) {
        if (key == "btime") {
          ps >> btime;
          break;
        }
      }
      f.Gauge("mxrelay_process_start_time_seconds", "Start time of the process (Unix seconds).",
              btime + start_ticks / kTick);
    }
  }
  int fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) fds += e->d_name[0] != '.';
    closedir(d);
    fds -= 1;  // the directory stream's own fd
  }
  f.Gauge("mxrelay_process_open_fds", "Open file descriptors.", fds);
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    f.Gauge("mxrelay_process_max_fds", "File descriptor limit.", static_cast<double>(rl.rlim_cur));
  }
}

}  // namespace

std::string Render(const Sources& src) {
  Families f;
  RenderProcess(src, f);
  std::string why = src.not_ready ? src.not_ready() : std::string();
  f.Gauge("mxrelay_ready", "1 when /readyz reports ready.", why.empty() ? 1 : 0);
  if (src.ingress != nullptr) RenderIngress(src, f);
  if (src.spool != nullptr) RenderSpool(src, f);
  if (src.delivery != nullptr) RenderDelivery(src, f);
  if (src.dkim != nullptr) RenderDkim(src, f);
  RenderControlPlane(src, f);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, f.Take());
  return out.str();
}

struct MetricsServer::Handlers {
  struct Get : CivetHandler {
    std::function<std::pair<int, std::string>()> fn;
    const char* content_type = "text/plain; charset=utf-8";
    bool handleGet(CivetServer*, mg_connection* conn) override {
      std::pair<int, std::string> r;
      try {
        r = fn();
      } catch (const std::exception& e) {
        r = {500, Cat("error: ", e.what(), "\n")};
      }
      const char* reason = r.first == 200 ? "OK" : r.first == 503 ? "Service Unavailable" : "Error";
      mg_printf(conn,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n",
                r.first, reason, content_type, r.second.size());
      mg_write(conn, r.second.data(), r.second.size());
      return true;
    }
  };
  Get metrics, healthz, readyz;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const MetricsConfig& config, Sources src) {
  MXR_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(config.listen));
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->src_ = std::move(src);
  s->handlers_ = std::make_unique<Handlers>();
  const Sources* sp = &s->src_;
  s->handlers_->metrics.content_type = "text/plain; version=0.0.4; charset=utf-8";
  s->handlers_->metrics.fn = [sp] { return std::pair<int, std::string>(200, Render(*sp)); };
  s->handlers_->healthz.fn = [] { return std::pair<int, std::string>(200, "ok\n"); };
  s->handlers_->readyz.fn = [sp] {
    std::string why = sp->not_ready ? sp->not_ready() : std::string();
    if (why.empty()) return std::pair<int, std::string>(200, "ready\n");
    return std::pair<int, std::string>(503, Cat("not ready: ", why, "\n"));
  };
  bool v6 = hp.address.find(':') != std::string::npos;
  std::string ports = v6 ? Cat("[", hp.address, "]:", hp.port) : Cat(hp.address, ":", hp.port);
  // Each accepted connection holds one worker until its request is read or
  // the request timeout passes: with 2 workers and 10 s, two idle TCP
  // connections starved /healthz (and Kubernetes restarted a healthy relay).
  // kHttpThreads workers (idle ones cost a blocked thread each, ~no CPU) and a
  // 2 s timeout: /healthz answers at once while fewer than kHttpThreads
  // connections are open, and within ~2 s even then.
  std::vector<std::string> opts = {"listening_ports", ports,
                                   "num_threads", std::to_string(kHttpThreads),
                                   "request_timeout_ms", std::to_string(kHttpRequestTimeoutMs),
                                   "enable_keep_alive", "no"};
  try {
    s->server_ = std::make_unique<CivetServer>(opts);
  } catch (const CivetException& e) {
    return absl::UnavailableError(Cat("metrics.listen ", config.listen, ": cannot listen (", e.what(),
                                      "); is the port in use?"));
  }
  if (s->server_->getContext() == nullptr) {
    return absl::UnavailableError(Cat("metrics.listen ", config.listen, ": cannot listen"));
  }
  s->server_->addHandler("/metrics", &s->handlers_->metrics);
  s->server_->addHandler("/healthz", &s->handlers_->healthz);
  s->server_->addHandler("/readyz", &s->handlers_->readyz);
  std::vector<int> bound = s->server_->getListeningPorts();
  int port = bound.empty() ? hp.port : bound.front();
  s->address_ = v6 ? Cat("[", hp.address, "]:", port) : Cat(hp.address, ":", port);
  return s;
}

MetricsServer::~MetricsServer() {
  if (!server_) return;
  // Without the knocking every relay stop waited ~1 s for civetweb's poll
  // (common/listener_wake.h).
  CloseWhileKnocking(address_, [this] { server_->close(); });
}

}  // namespace mxr::metrics
