// A site: where a group of jobs goes and how (the qmgr "queue" of Postfix,
// KumoMTA's ready queue). Its identity is its destination (the sorted MX
// host set or a route's host, and the port) *and* its delivery policy (TLS
// policy, AUTH credentials, connection limit): two domains that share MX
// hosts but not a policy get two sites, so one can never downgrade the other.
//
// A site owns its ready queue (jobs waiting for a connection, taken
// round-robin across envelope senders so one campaign cannot starve other
// senders), its adaptive connection window and dead-site backoff
// (policy.h), and the list of its open connections (owned by the engine).
//
// Delivery loop thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/config.h"
#include "delivery/automation.h"
#include "delivery/mta_sts.h"
#include "delivery/policy.h"
#include "delivery/rate_limiter.h"
#include "delivery/shaping.h"
#include "delivery/smtp_client.h"

namespace mxr::delivery {

struct Job;
struct Source;
class OutboundConnection;

// How mail for a site is sent: part of the site's identity.
struct SiteSettings {
  uint16_t port = 25;
  TlsPolicy tls = TlsPolicy::kOpportunistic;
  std::string auth_user, auth_password;
  bool auth_over_unverified_tls = false;
  int max_conns = 20;
  bool max_conns_set = false;  // by the route (wins over shaping rules)
  // Egress path: the source (part of the identity, delivery/egress.h) and
  // the shaping rule that matched (delivery/shaping.h).
  std::string source = "default";
  std::string bind_address;  // "" = the kernel's choice
  std::string ehlo;          // "" = the engine's helo name
  std::string rule = "default";
  // MTA-STS (delivery/mta_sts.h): the policy domain and its policy when the
  // mail goes under one in mode testing or enforce; else null.
  std::string sts_domain;
  std::shared_ptr<const StsPolicy> sts;
};

// Jobs waiting for a connection, round-robin across envelope senders.
class ReadyQueue {
 public:
  // REQUIRES: `j` is on no ready queue.
  void Push(Job* j);
  Job* Pop();  // nullptr when empty
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::unordered_map<std::string, std::deque<Job*>> by_sender_;
  std::deque<std::string> rr_;  // senders with queued jobs, in turn order
  size_t size_ = 0;
};

class Site {
 public:
  Site(std::string identity, std::string name, std::string label, SiteSettings settings);

  const std::string& identity() const { return identity_; }  // the sites map key
  const std::string& name() const { return name_; }          // logs and event log ("mx:..." / "route:...")
  const std::string& label() const { return label_; }        // metrics label (SiteMetrics)
  const SiteSettings& settings() const { return settings_; }

  std::vector<std::string> hosts;  // MX order of the latest lookup (shuffled within a preference)
  ReadyQueue ready;
  std::list<OutboundConnection*> conns;
  SiteWindow window;
  int64_t tls_broken_until_ms = 0;  // opportunistic only: STARTTLS failed, send in clear until then
  int64_t last_used_ms = 0;
  Reply last_error;  // why the last connection failed (shown for held jobs)

  // Egress path shaping (delivery/shaping.h, automation.h): the source's
  // overall limiter lives on the Source.
  Source* source = nullptr;
  ResolvedShaping shaping;
  int max_msgs_per_conn = 0;
  Gcra rate;                  // delivery rate of this path
  RateSpec rate_in_force;     // what `rate` is configured with
  PathOverrides overrides;    // automation actions in force
  bool pump_armed = false;    // a timer will pump the site (rate limit)

  // Whether it may be forgotten (nothing queued or open, no backoff running).
  bool Idle(int64_t now_ms, int64_t unused_ms) const;

 private:
  std::string identity_, name_, label_;
  SiteSettings settings_;
};

}  // namespace mxr::delivery
