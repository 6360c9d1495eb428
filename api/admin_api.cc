#include "api/admin_api.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "api/civet.h"
#include "common/escape.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace mxr::api {
namespace {

using json = nlohmann::json;
using Action = delivery::DeliveryEngine::AdminAction;

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z') c += 32;
  }
  return o;
}

std::string DomainOf(std::string_view addr) {
  size_t at = addr.rfind('@');
  return at == std::string_view::npos ? std::string() : Lower(addr.substr(at + 1));
}

const char* StateName(queue::RcptState s) {
  switch (s) {
    case queue::RcptState::kPending: return "pending";
    case queue::RcptState::kDelivered: return "delivered";
    case queue::RcptState::kBounced: return "bounced";
  }
  return "?";
}

// Which messages an action is for: every given field must match.
struct Query {
  std::string id, domain, site, tenant, campaign, pool, sender;
  bool all = false;
  bool empty() const {
    return id.empty() && domain.empty() && site.empty() && tenant.empty() && campaign.empty() && pool.empty() &&
           sender.empty();
  }
  std::string Describe() const {
    std::string o;
    auto add = [&](const char* k, const std::string& v) {
      if (!v.empty()) o += Cat(o.empty() ? "" : " ", k, "=", v);
    };
    add("id", id);
    add("domain", domain);
    add("site", site);
    add("tenant", tenant);
    add("campaign", campaign);
    add("pool", pool);
    add("sender", sender);
    return o.empty() ? "all" : o;
  }
};

struct HttpError {
  int status;
  std::string field, message;
};

std::optional<HttpError> ParseQuery(const json& j, Query* q, int64_t* duration_us, bool allow_duration) {
  if (!j.is_object()) return HttpError{400, "", "expected a JSON object"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "all") {
      if (!v.is_boolean()) return HttpError{400, k, "expected true or false"};
      q->all = v.get<bool>();
      continue;
    }
    if (k == "duration" && allow_duration) {
      std::string d = v.is_number_integer() ? std::to_string(v.get<int64_t>()) : v.is_string() ? v.get<std::string>() : "";
      auto us = ParseDuration(d);
      if (!us.ok()) return HttpError{400, k, std::string(us.status().message())};
      *duration_us = *us;
      continue;
    }
    std::string* f = k == "id" ? &q->id : k == "domain" ? &q->domain : k == "site" ? &q->site
                   : k == "tenant" ? &q->tenant : k == "campaign" ? &q->campaign : k == "pool" ? &q->pool
                   : k == "sender" ? &q->sender : nullptr;
    if (f == nullptr) {
      return HttpError{400, k, Cat("unknown field (known: id, domain, site, tenant, campaign, pool, sender, all",
                                   allow_duration ? ", duration" : "", ")")};
    }
    if (!v.is_string() || v.get<std::string>().empty()) return HttpError{400, k, "expected a non-empty string"};
    *f = v.get<std::string>();
  }
  q->domain = Lower(q->domain);
  q->site = Lower(q->site);
  if (!q->id.empty() && !queue::QueueId::Parse(q->id)) return HttpError{400, "id", "not a queue id (24 hex digits)"};
  return std::nullopt;
}

}  // namespace

absl::StatusOr<int64_t> ParseDuration(std::string_view s) {
  if (s.empty()) return absl::InvalidArgumentError("expected a duration: 90, 90s, 15m, 2h or 1d");
  int64_t n = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    n = n * 10 + (s[i] - '0');
    if (n > 100'000'000) return absl::InvalidArgumentError("duration too long");
  }
  std::string_view unit = s.substr(i);
  int64_t mult = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
  if (i == 0 || mult == 0 || n == 0) return absl::InvalidArgumentError("expected a duration: 90, 90s, 15m, 2h or 1d");
  return n * mult * 1'000'000;
}

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  std::ifstream f(path);
  if (f) {
    std::string t;
    std::getline(f, t);
    while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.size() < 16) return absl::InvalidArgumentError(Cat("admin token file ", path, ": token shorter than 16 characters"));
    return t;
  }
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1) return absl::InternalError("RAND_bytes failed");
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(Cat("cannot create admin token file ", path, ": ", strerror(errno)));
  std::string line = hex + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) return absl::InternalError(Cat("cannot write ", path));
  spdlog::info("event=admin_token_created path={}", path);
  return hex;
}

struct AdminApi::Handler : CivetHandler {
  AdminApi* a = nullptr;

  bool Authorized(mg_connection* conn) {
    std::string t = BearerToken(conn);
    const std::string& want = a->deps_.token;
    bool ok = t.size() == want.size() && CRYPTO_memcmp(t.data(), want.data(), want.size()) == 0;
    if (!ok) {
      a->stats_.unauthorized++;
      Respond(conn, 401, ErrorJson(401, "Authorization", "admin token required: Authorization: Bearer <admin_api.token_file>"),
              "application/json", "WWW-Authenticate: Bearer realm=\"mxrelay-admin\"\r\n");
    }
    return ok;
  }

  bool handleGet(CivetServer*, mg_connection* conn) override {
    if (!Authorized(conn)) return true;
    const mg_request_info* ri = mg_get_request_info(conn);
    std::string uri = ri->local_uri ? ri->local_uri : "";
    std::string qs = ri->query_string ? ri->query_string : "";
    if (uri == "/api/v1/queue/summary") return Summary(conn, qs);
    if (uri == "/api/v1/queue/suspensions") return Suspensions(conn);
    const std::string pre = "/api/v1/queue/messages/";
    if (uri.starts_with(pre)) return Inspect(conn, uri.substr(pre.size()));
    Respond(conn, 404, ErrorJson(404, "", "no such endpoint (docs/API.md)"));
    return true;
  }

  bool handlePost(CivetServer*, mg_connection* conn) override {
    if (!Authorized(conn)) return true;
    const mg_request_info* ri = mg_get_request_info(conn);
    std::string uri = ri->local_uri ? ri->local_uri : "";
    std::string body;
    bool too_big = false;
    if (!ReadBody(conn, 64 * 1024, &body, &too_big)) {
      Respond(conn, 413, ErrorJson(413, "", "request body over 64 KiB"), "application/json", "Connection: close\r\n");
      return true;
    }
    json j = body.empty() ? json::object() : json::parse(body, nullptr, false);
    if (j.is_discarded()) {
      Respond(conn, 400, ErrorJson(400, "", "the body is not valid JSON"));
      return true;
    }
    const std::string pre = "/api/v1/queue/messages/";
    if (uri.starts_with(pre)) {
      std::string rest = uri.substr(pre.size());
      size_t slash = rest.find('/');
      std::string id = rest.substr(0, slash), verb = slash == std::string::npos ? "" : rest.substr(slash + 1);
      if ((verb == "hold" || verb == "release") && j.is_object() && j.empty()) return HoldOne(conn, id, verb == "hold");
      if (verb == "hold" || verb == "release") {
        Respond(conn, 400, ErrorJson(400, "", "no body expected"));
        return true;
      }
    }
    static const std::map<std::string, std::string> kActions = {
        {"/api/v1/queue/suspend", "suspend"}, {"/api/v1/queue/resume", "resume"}, {"/api/v1/queue/bounce", "bounce"},
        {"/api/v1/queue/delete", "delete"},   {"/api/v1/queue/retry", "retry"}};
    auto it = kActions.find(uri);
    if (it == kActions.end()) {
      Respond(conn, 404, ErrorJson(404, "", "no such endpoint (docs/API.md)"));
      return true;
    }
    return Act(conn, it->second, j);
  }

  // Visits the messages with pending recipients matching `q`.
  absl::Status Walk(const Query& q, const std::set<std::string>& site_domains,
                    const std::function<void(const queue::MessageMeta&)>& fn) {
    return a->deps_.spool->Scan([&](const queue::MessageMeta& m) {
      if (m.PendingRecipients() == 0) return true;
      if (!q.id.empty() && m.id.ToString() != q.id) return true;
      if (!q.tenant.empty() && m.tenant != q.tenant) return true;
      if (!q.campaign.empty() && m.campaign != q.campaign) return true;
      if (!q.pool.empty() && m.pool != q.pool) return true;
      if (!q.sender.empty() && Lower(m.sender) != Lower(q.sender)) return true;
      if (!q.domain.empty() || !q.site.empty()) {
        bool hit = false;
        for (const auto& r : m.recipients) {
          if (r.state != queue::RcptState::kPending) continue;
          std::string d = DomainOf(r.address);
          if ((q.domain.empty() || d == q.domain) && (q.site.empty() || site_domains.count(d))) hit = true;
        }
        if (!hit) return true;
      }
      fn(m);
      return true;
    });
  }

  // domain -> site, from the engine (empty without one or when it does not answer).
  std::unordered_map<std::string, std::string> Sites() {
    std::unordered_map<std::string, std::string> out;
    if (a->deps_.engine == nullptr) return out;
    auto st = std::make_shared<std::pair<std::mutex, std::condition_variable>>();
    auto res = std::make_shared<std::optional<std::unordered_map<std::string, std::string>>>();
    a->deps_.engine->DomainSites([st, res](std::unordered_map<std::string, std::string> m) {
      std::lock_guard<std::mutex> l(st->first);
      *res = std::move(m);
      st->second.notify_all();
    });
    std::unique_lock<std::mutex> l(st->first);
    st->second.wait_for(l, std::chrono::seconds(10), [&] { return res->has_value(); });
    if (res->has_value()) out = **res;
    return out;
  }

  // Hands `ids` to the engine; false if it did not take them in time.
  bool Send(std::vector<queue::QueueId>& ids, Action action) {
    if (ids.empty()) return true;
    auto st = std::make_shared<std::pair<std::mutex, std::condition_variable>>();
    auto taken = std::make_shared<std::optional<size_t>>();
    a->deps_.engine->Admin(std::move(ids), action, [st, taken](size_t n) {
      std::lock_guard<std::mutex> l(st->first);
      *taken = n;
      st->second.notify_all();
    });
    ids.clear();
    std::unique_lock<std::mutex> l(st->first);
    return st->second.wait_for(l, std::chrono::seconds(60), [&] { return taken->has_value(); });
  }

  bool Summary(mg_connection* conn, const std::string& qs) {
    char by_buf[32] = "domain";
    if (!qs.empty()) mg_get_var(qs.c_str(), qs.size(), "by", by_buf, sizeof by_buf);
    std::string by = by_buf;
    static const std::set<std::string> kBy = {"domain", "site", "tenant", "campaign", "pool"};
    if (!kBy.count(by)) {
      Respond(conn, 400, ErrorJson(400, "by", "group by domain, site, tenant, campaign or pool"));
      return true;
    }
    auto sites = by == "site" ? Sites() : std::unordered_map<std::string, std::string>();
    struct G {
      uint64_t messages = 0, recipients = 0, bytes = 0;
      int64_t oldest_us = 0;
    };
    std::map<std::string, G> groups;
    uint64_t total_m = 0, total_r = 0;
    int64_t now = a->deps_.clock->NowMicros();
    auto add = [&](const std::string& key, const queue::MessageMeta& m, uint64_t rcpts) {
      G& g = groups[key.empty() ? "-" : key];
      g.messages++;
      g.recipients += rcpts;
      g.bytes += m.body_size;
      if (g.oldest_us == 0 || m.received_us < g.oldest_us) g.oldest_us = m.received_us;
    };
    auto st = Walk(Query{}, {}, [&](const queue::MessageMeta& m) {
      total_m++;
      size_t pending = m.PendingRecipients();
      total_r += pending;
      if (by == "domain" || by == "site") {
        std::map<std::string, uint64_t> per;
        for (const auto& r : m.recipients) {
          if (r.state != queue::RcptState::kPending) continue;
          std::string d = DomainOf(r.address);
          if (by == "site") {
            auto it = sites.find(d);
            d = it == sites.end() ? "(not routed yet)" : it->second;
          }
          per[d]++;
        }
        for (const auto& [k, n] : per) add(k, m, n);
      } else {
        add(by == "tenant" ? m.tenant : by == "campaign" ? m.campaign : m.pool, m, pending);
      }
    });
    if (!st.ok()) {
      Respond(conn, 500, ErrorJson(500, "", Cat("reading the spool: ", st.message())));
      return true;
    }
    json arr = json::array();
    for (const auto& [k, g] : groups) {
      arr.push_back({{"key", k}, {"messages", g.messages}, {"recipients", g.recipients}, {"bytes", g.bytes},
                     {"oldest_age_s", (now - g.oldest_us) / 1'000'000}});
    }
    json out = {{"by", by}, {"groups", arr}, {"total", {{"messages", total_m}, {"recipients", total_r}}}};
    Respond(conn, 200, out.dump() + "\n");
    return true;
  }

  bool Suspensions(mg_connection* conn) {
    json arr = json::array();
    for (const auto& r : a->deps_.holds->List(a->deps_.clock->NowMicros())) {
      json x = {{"kind", delivery::HoldKindName(r.kind)}, {"value", r.value}, {"created", IsoTimeUtc(r.created_us)}};
      x["until"] = r.until_us ? json(IsoTimeUtc(r.until_us)) : json(nullptr);
      arr.push_back(x);
    }
    Respond(conn, 200, json{{"suspensions", arr}}.dump() + "\n");
    return true;
  }

  bool Inspect(mg_connection* conn, const std::string& idtext) {
    auto id = queue::QueueId::Parse(idtext);
    if (!id) {
      Respond(conn, 400, ErrorJson(400, "id", "not a queue id (24 hex digits)"));
      return true;
    }
    auto m = a->deps_.spool->LoadMeta(*id);
    if (!m.ok()) {
      int status = m.status().code() == absl::StatusCode::kNotFound ? 404 : 500;
      Respond(conn, status, ErrorJson(status, "id", status == 404 ? "no such message in the queue" : std::string(m.status().message())));
      return true;
    }
    int64_t now = a->deps_.clock->NowMicros();
    json rc = json::array();
    for (const auto& r : m->recipients) {
      rc.push_back({{"address", r.address}, {"state", StateName(r.state)}, {"attempts", r.attempts},
                    {"last_code", r.last_code}, {"last_reply", r.last_response}});
    }
    json out = {{"id", m->id.ToString()}, {"received", IsoTimeUtc(m->received_us)}, {"sender", m->sender},
                {"auth_user", m->auth_user}, {"client_ip", m->client_ip}, {"tenant", m->tenant},
                {"campaign", m->campaign}, {"pool", m->pool}, {"size", m->body_size}, {"attempts", m->attempts},
                {"next_attempt", IsoTimeUtc(m->next_attempt_us)}, {"recipients", rc}};
    std::optional<delivery::Holds::Match> h = a->deps_.holds->ForMessage(*m, now);
    for (const auto& r : m->recipients) {
      if (!h && r.state == queue::RcptState::kPending) h = a->deps_.holds->ForDomain(DomainOf(r.address), now);
    }
    out["suspended_by"] = h ? json({{"kind", delivery::HoldKindName(h->rule.kind)}, {"value", h->rule.value}}) : json(nullptr);
    auto body = a->deps_.spool->ReadBody(*id);
    if (body.ok()) {
      size_t end = body->find("\r\n\r\n");
      std::string headers = body->substr(0, std::min<size_t>(end == std::string::npos ? body->size() : end + 2, 65536));
      out["headers"] = headers;  // invalid UTF-8 is replaced when dumped
    }
    Respond(conn, 200, out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
    return true;
  }

  bool Done(mg_connection* conn, const std::string& action, const std::string& what, size_t n,
            std::chrono::steady_clock::time_point t0, json extra = json::object()) {
    int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    a->stats_.messages_touched += n;
    spdlog::info("event=admin_action action={} query=\"{}\" messages={} duration_ms={}", action, LogEscape(what), n, ms);
    extra["action"] = action;
    extra["query"] = what;
    extra["messages"] = n;
    extra["duration_ms"] = ms;
    Respond(conn, 200, extra.dump() + "\n");
    return true;
  }

  void Count(const std::string& action) {
    if (action == "suspend") a->stats_.suspend++;
    else if (action == "resume") a->stats_.resume++;
    else if (action == "bounce") a->stats_.bounce++;
    else if (action == "delete") a->stats_.del++;
    else if (action == "retry") a->stats_.retry++;
    else if (action == "hold") a->stats_.hold++;
    else if (action == "release") a->stats_.release++;
  }

  bool Act(mg_connection* conn, const std::string& action, const json& j) {
    auto t0 = std::chrono::steady_clock::now();
    Query q;
    int64_t duration = 0;
    if (auto e = ParseQuery(j, &q, &duration, action == "suspend")) {
      Respond(conn, e->status, ErrorJson(e->status, e->field, e->message));
      return true;
    }
    bool engine_needed = action == "bounce" || action == "delete" || action == "retry";
    if (engine_needed && a->deps_.engine == nullptr) {
      Respond(conn, 503, ErrorJson(503, "", "delivery is disabled (delivery.enabled = false)"));
      return true;
    }
    int64_t now = a->deps_.clock->NowMicros();
    if (action == "suspend" || action == "resume") {
      // Exactly one of domain, site, tenant, campaign.
      std::vector<std::pair<delivery::HoldKind, std::string>> keys;
      if (!q.domain.empty()) keys.emplace_back(delivery::HoldKind::kDomain, q.domain);
      if (!q.site.empty()) keys.emplace_back(delivery::HoldKind::kSite, q.site);
      if (!q.tenant.empty()) keys.emplace_back(delivery::HoldKind::kTenant, q.tenant);
      if (!q.campaign.empty()) keys.emplace_back(delivery::HoldKind::kCampaign, q.campaign);
      if (keys.size() != 1 || !q.id.empty() || !q.pool.empty() || !q.sender.empty() || q.all) {
        Respond(conn, 400, ErrorJson(400, "", Cat(action, " takes exactly one of domain, site, tenant, campaign "
                                                          "(one message: POST /api/v1/queue/messages/ID/hold)")));
        return true;
      }
      std::set<std::string> site_domains;
      if (!q.site.empty()) {
        for (const auto& [d, s] : Sites()) {
          if (Lower(s) == q.site) site_domains.insert(d);
        }
      }
      json extra = json::object();
      if (action == "suspend") {
        delivery::HoldRule r{keys[0].first, keys[0].second, duration ? now + duration : 0, now};
        if (auto st = a->deps_.holds->Add(r); !st.ok()) {
          Respond(conn, 500, ErrorJson(500, "", std::string(st.message())));
          return true;
        }
        extra["until"] = duration ? json(IsoTimeUtc(now + duration)) : json(nullptr);
      } else {
        auto removed = a->deps_.holds->Remove(keys[0].first, keys[0].second);
        if (!removed.ok()) {
          Respond(conn, 500, ErrorJson(500, "", std::string(removed.status().message())));
          return true;
        }
        extra["removed"] = *removed;
      }
      // Count what it touches; a resume makes those messages due at once.
      std::vector<queue::QueueId> batch;
      size_t n = 0;
      bool ok = true;
      auto st = Walk(q, site_domains, [&](const queue::MessageMeta& m) {
        n++;
        if (action == "resume" && a->deps_.engine) {
          batch.push_back(m.id);
          if (batch.size() >= kBatch) ok &= Send(batch, Action::kRetry);
        }
      });
      if (action == "resume" && a->deps_.engine) ok &= Send(batch, Action::kRetry);
      Count(action);
      if (!st.ok() || !ok) {
        Respond(conn, 500, ErrorJson(500, "", st.ok() ? "the delivery engine did not take the messages" : std::string(st.message())));
        return true;
      }
      return Done(conn, action, q.Describe(), n, t0, extra);
    }
    if (q.empty() && !q.all) {
      Respond(conn, 400, ErrorJson(400, "", Cat(action, " needs a query (id, domain, site, tenant, campaign, pool, sender) "
                                                        "or \"all\": true")));
      return true;
    }
    Action act = action == "bounce" ? Action::kBounce : action == "delete" ? Action::kDelete : Action::kRetry;
    std::set<std::string> site_domains;
    if (!q.site.empty()) {
      for (const auto& [d, s] : Sites()) {
        if (Lower(s) == q.site) site_domains.insert(d);
      }
    }
    std::vector<queue::QueueId> batch;
    size_t n = 0;
    bool ok = true;
    auto st = Walk(q, site_domains, [&](const queue::MessageMeta& m) {
      n++;
      batch.push_back(m.id);
      if (batch.size() >= kBatch) ok &= Send(batch, act);
    });
    ok &= Send(batch, act);
    Count(action);
    if (!st.ok() || !ok) {
      Respond(conn, 500, ErrorJson(500, "", st.ok() ? "the delivery engine did not take the messages" : std::string(st.message())));
      return true;
    }
    return Done(conn, action, q.Describe(), n, t0);
  }

  bool HoldOne(mg_connection* conn, const std::string& idtext, bool hold) {
    auto t0 = std::chrono::steady_clock::now();
    auto id = queue::QueueId::Parse(idtext);
    if (!id) {
      Respond(conn, 400, ErrorJson(400, "id", "not a queue id (24 hex digits)"));
      return true;
    }
    auto m = a->deps_.spool->LoadMeta(*id);
    if (!m.ok()) {
      Respond(conn, 404, ErrorJson(404, "id", "no such message in the queue"));
      return true;
    }
    int64_t now = a->deps_.clock->NowMicros();
    json extra = json::object();
    if (hold) {
      if (auto st = a->deps_.holds->Add({delivery::HoldKind::kMessage, id->ToString(), 0, now}); !st.ok()) {
        Respond(conn, 500, ErrorJson(500, "", std::string(st.message())));
        return true;
      }
    } else {
      auto r = a->deps_.holds->Remove(delivery::HoldKind::kMessage, id->ToString());
      extra["removed"] = r.ok() && *r;
      if (a->deps_.engine) {
        std::vector<queue::QueueId> one = {*id};
        Send(one, Action::kRetry);
      }
    }
    Count(hold ? "hold" : "release");
    return Done(conn, hold ? "hold" : "release", "id=" + id->ToString(), 1, t0, extra);
  }
};

absl::StatusOr<std::unique_ptr<AdminApi>> AdminApi::Start(AdminDeps deps) {
  std::unique_ptr<AdminApi> a(new AdminApi());
  a->deps_ = std::move(deps);
  a->handler_ = std::make_unique<Handler>();
  a->handler_->a = a.get();
  CivetOptions o;
  o.listen = a->deps_.config->admin_api.listen;
  o.what = "admin_api";
  o.threads = 4;
  auto s = StartCivet(o, &a->address_);
  if (!s.ok()) return s.status();
  a->server_ = std::move(*s);
  a->server_->addHandler("/api/v1/queue", a->handler_.get());
  return a;
}

AdminApi::~AdminApi() { StopCivet(std::move(server_), address_); }

}  // namespace mxr::api
