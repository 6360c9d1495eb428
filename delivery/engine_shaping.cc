// EngineImpl's egress-path shaping: loading the rules, setting up a path
// (source, site), rate limits, recipients per transaction, and the
// response-driven automation (delivery/shaping.h, automation.h, egress.h).
#include <algorithm>

#include "common/check.h"
#include "common/escape.h"
#include "common/status.h"
#include "common/strings.h"
#include "delivery/engine_impl.h"

namespace mxr::delivery {

absl::Status EngineImpl::LoadShaping() {
  const ShapingConfig& sc = deps_.config->shaping;
  auto setup = LoadShapingSetup(*deps_.config);
  if (!setup.ok()) return setup.status();
  shaping_ = setup->table;
  classifier_ = setup->classifier;
  auto eg = Egress::Create(*deps_.config, helo_, *shaping_);
  if (!eg.ok()) return eg.status();
  egress_ = std::move(*eg);
  spdlog::info("event=shaping_loaded rules={} shipped={} file=\"{}\" classification_rules={} sources={} pools={}",
               shaping_->RuleNames().size(), sc.shipped ? 1 : 0, LogEscape(sc.file), classifier_->size(),
               egress_->sources().size(), egress_->pools().size());
  return absl::OkStatus();
}

// A new path: its source, its rule's limits and automation, its rate.
void EngineImpl::SetUpPath(Site* s, Job* j, ResolvedShaping shaping) {
  s->source = j->source;
  s->shaping = std::move(shaping);
  s->max_msgs_per_conn = s->shaping.limits.max_deliveries_per_connection.value_or(cfg_.max_messages_per_connection);
  s->rate_in_force = s->shaping.limits.max_message_rate.value_or(RateSpec{});
  s->rate.Configure(s->rate_in_force, s->shaping.limits.max_burst.value_or(1));
}

// More recipients than the path takes in one transaction: the rest go in
// new jobs of the same message, on the same path (already routed).
void EngineImpl::SplitJob(Job* j, size_t max_rcpts) {
  ActiveMessage* m = j->msg;
  while (j->rcpts.size() > max_rcpts) {
    size_t keep = j->rcpts.size() - std::min(max_rcpts, j->rcpts.size() - max_rcpts);
    auto extra = std::make_unique<Job>();
    extra->msg = m;
    extra->domain = j->domain;
    extra->site = j->site;
    extra->source = j->source;
    extra->rcpts.assign(j->rcpts.begin() + static_cast<std::ptrdiff_t>(keep), j->rcpts.end());
    j->rcpts.resize(keep);
    m->pending_jobs++;
    m->jobs.push_back(std::move(extra));
    j->site->ready.Push(m->jobs.back().get());
  }
}

int64_t EngineImpl::RateWaitUs(Site* s) {
  int64_t now_ms = loop_->now_ms();
  PathOverrides& o = s->overrides;
  // An automation rate: the slower of it and the rule's while in force.
  RateSpec want = s->shaping.limits.max_message_rate.value_or(RateSpec{});
  if (o.rate_until_ms > now_ms && o.rate.limited() &&
      (!want.limited() || o.rate.interval_us() > want.interval_us())) {
    want = o.rate;
  }
  if (!(want == s->rate_in_force)) {
    s->rate_in_force = want;
    s->rate.Configure(want, s->shaping.limits.max_burst.value_or(1));
  }
  int64_t now_us = deps_.clock->NowMicros();
  int64_t wait = s->rate.WaitUs(now_us);
  if (s->source) wait = std::max(wait, s->source->rate.WaitUs(now_us));
  return wait;
}

void EngineImpl::ArmPump(Site* s, int64_t wait_us) {
  if (s->pump_armed) return;
  s->pump_armed = true;
  int64_t ms = std::max<int64_t>(1, (wait_us + 999) / 1000);
  // By identity: the site may be gone when the timer fires.
  loop_->RunAfter(ms, [this, id = s->identity()] {
    auto it = sites_.find(id);
    if (it == sites_.end()) return;
    it->second->pump_armed = false;
    if (!it->second->ready.empty()) Pump(it->second.get());
  });
}

const AutomationRule* EngineImpl::OnRemoteReply(Site* s, int code, const std::string& enhanced,
                                                const std::string& text) {
  if (s->shaping.automation.empty()) return nullptr;
  const AutomationRule* r = FirstMatch(s->shaping.automation, code, enhanced, text);
  if (r && r->action != ActionKind::kNone) {
    ApplyAutomation(s, *r, Cat(code, enhanced.empty() ? "" : " ", enhanced, " ", text));
  }
  return r;
}

void EngineImpl::ApplyAutomation(Site* s, const AutomationRule& r, const std::string& reply) {
  int64_t now = loop_->now_ms();
  PathOverrides& o = s->overrides;
  // The same action already in force (a session's several replies): once.
  bool same = o.rule == r.rule &&
              ((r.action == ActionKind::kSuspend && o.Suspended(now)) ||
               (r.action == ActionKind::kConnectionLimit && o.conn_limit_until_ms > now &&
                o.conn_limit == r.connection_limit) ||
               (r.action == ActionKind::kMessageRate && o.rate_until_ms > now && o.rate == r.rate));
  if (same) return;
  o.Apply(r, now, reply);
  stats_->CountShapingAction(static_cast<size_t>(r.action));
  const std::string& src = s->settings().source;
  spdlog::warn("event=shaping_action source={} site={} rule={} automation={} action={} seconds={} queued={} "
               "reply=\"{}\"",
               src, s->name(), r.rule, r.index, ActionName(r.action), r.duration_s, s->ready.size(),
               LogEscape(reply));
  if (r.action == ActionKind::kSuspend) {
    // Everything queued on the path waits for the end of the suspension,
    // without an attempt charged; idle connections close.
    while (Job* j = s->ready.Pop()) HoldSuspended(s, j);
    for (auto it = s->conns.begin(); it != s->conns.end();) {
      OutboundConnection* c = *it++;
      if (c->idle()) c->Quit();
    }
  }
}

void EngineImpl::HoldSuspended(Site* s, Job* j) {
  const PathOverrides& o = s->overrides;
  int64_t until_us = deps_.clock->NowMicros() + (o.suspended_until_ms - loop_->now_ms()) * 1000;
  HoldJob(j, until_us, Cat("Egress path ", s->settings().source, " -> ", s->name(), " suspended by shaping rule ",
                           o.rule, " after: ", o.reason));
}

// Sources, pools, rules in use and the paths under an automation action.
void EngineImpl::ShapingSnapshot(int64_t now_ms, DeliverySnapshot* snap) {
  int64_t now_us = deps_.clock->NowMicros();
  for (const auto& src : egress_->sources()) {
    SourceFigures f;
    f.name = src->name;
    f.assigned = src->assigned;
    f.warmup_overflow = src->warmup_overflow;
    if (src->warmup.active(now_us)) {
      f.warmup_day = src->warmup.Day(now_us);
      f.warmup_cap = src->warmup.Cap(now_us);
    }
    f.warmup_sent = src->warmup.SentToday(now_us);
    snap->sources.push_back(std::move(f));
  }
  for (const auto& p : egress_->pools()) snap->pools.emplace_back(p->name, p->assigned);
  std::unordered_map<std::string, int64_t> by_rule;
  for (const std::string& r : shaping_->RuleNames()) by_rule[r] = 0;
  int64_t suspended = 0, longest_ms = 0;
  for (const auto& [k, s] : sites_) {
    by_rule[s->shaping.rule]++;
    const PathOverrides& o = s->overrides;
    if (!o.Active(now_ms)) continue;
    if (o.Suspended(now_ms)) {
      suspended++;
      longest_ms = std::max(longest_ms, now_ms - o.suspended_since_ms);
    }
    PathAction a;
    a.source = s->settings().source;
    a.site = s->name();
    a.rule = o.rule;
    a.reason = o.reason;
    if (o.Suspended(now_ms)) a.suspended_s = (o.suspended_until_ms - now_ms + 999) / 1000;
    if (o.conn_limit_until_ms > now_ms) {
      a.conn_limit = o.conn_limit;
      a.conn_limit_s = (o.conn_limit_until_ms - now_ms + 999) / 1000;
    }
    if (o.rate_until_ms > now_ms) {
      a.rate = o.rate.ToString();
      a.rate_s = (o.rate_until_ms - now_ms + 999) / 1000;
    }
    snap->actions.push_back(std::move(a));
  }
  for (auto& [r, n] : by_rule) snap->rule_paths.emplace_back(r, n);
  std::sort(snap->rule_paths.begin(), snap->rule_paths.end());
  stats_->paths_suspended = suspended;
  stats_->longest_suspension_s = longest_ms / 1000;
}

}  // namespace mxr::delivery
