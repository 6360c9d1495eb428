#include "api/http_api.h"

#include <condition_variable>
#include <mutex>

#include "api/civet.h"
#include "api/inject.h"
#include "api/tls_proxy.h"
#include "common/escape.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "relay/headers.h"
#include "spdlog/spdlog.h"
#include "tenants/headers.h"

namespace mxr::api {
namespace {

using json = nlohmann::json;

// Waits for the commit answers of one request.
struct Latch {
  std::mutex mu;
  std::condition_variable cv;
  size_t left = 0;
  std::vector<absl::StatusCode> codes;
  std::vector<std::string> texts;
};

}  // namespace

struct HttpApi::Handler : CivetHandler {
  HttpApi* api = nullptr;

  bool handleGet(CivetServer*, mg_connection* conn) override {
    api->stats_.requests_bad++;
    Respond(conn, 405, ErrorJson(405, "", "use POST /api/v1/messages"), "application/json", "Allow: POST\r\n");
    return true;
  }

  bool handlePost(CivetServer*, mg_connection* conn) override {
    const mg_request_info* ri = mg_get_request_info(conn);
    std::string uri = ri->local_uri ? ri->local_uri : "";
    if (uri != "/api/v1/messages") {
      api->stats_.requests_bad++;
      Respond(conn, 404, ErrorJson(404, "", "no such endpoint; POST /api/v1/messages"));
      return true;
    }
    int status = Serve(conn, ri);
    if (status == 200) api->stats_.requests_ok++;
    else if (status == 401) api->stats_.requests_unauthorized++;
    else if (status == 403 || status == 429) api->stats_.requests_refused++;
    else if (status >= 500) api->stats_.requests_failed++;
    else api->stats_.requests_bad++;
    return true;
  }

  int Fail(mg_connection* conn, int status, std::string_view field, std::string_view msg,
           std::string_view extra = "") {
    Respond(conn, status, ErrorJson(status, field, msg), "application/json", extra);
    return status;
  }

  int Serve(mg_connection* conn, const mg_request_info* ri) {
    const HttpApiDeps& d = api->deps_;
    std::string body;
    bool too_big = false;
    if (!ReadBody(conn, d.config->http_api.max_body, &body, &too_big)) {
      return Fail(conn, 413, "", Cat("request body over http_api.max_body (", d.config->http_api.max_body, " bytes)"),
                  "Connection: close\r\n");
    }
    std::string key = BearerToken(conn);
    auto dir = d.gate->directory();
    const tenants::Tenant* tenant = dir && !key.empty() ? dir->ForApiKey(key) : nullptr;
    if (tenant == nullptr) {
      spdlog::info("event=api_unauthorized ip={} reason={}", ri->remote_addr, key.empty() ? "no_key" : "unknown_key");
      return Fail(conn, 401, "Authorization",
                  key.empty() ? "an API key is required: Authorization: Bearer <key>" : "unknown API key",
                  "WWW-Authenticate: Bearer realm=\"mxrelay\"\r\n");
    }
    if (!d.spool->Healthy()) {
      return Fail(conn, 503, "", "the spool is not accepting mail; try again later", "Retry-After: 30\r\n");
    }
    InjectLimits lim;
    lim.max_recipients = static_cast<size_t>(d.config->http_api.max_recipients);
    lim.max_message_size = d.config->limits.max_message_size;
    InjectRequest req;
    if (auto e = ParseInjectRequest(body, lim, &req)) return Fail(conn, e->status, e->field, e->message);
    body.clear();
    body.shrink_to_fit();
    tenants::Verdict v = d.gate->SenderFor(*tenant, nullptr, req.envelope_sender, false);
    if (!v.ok) {
      d.gate->stats().refused_sender++;
      return Fail(conn, 403, "envelope_sender", v.text);
    }
    std::vector<BuiltMessage> built;
    if (auto e = BuildMessages(req, lim, &built)) return Fail(conn, e->status, e->field, e->message);
    // The From: header of what was built, and the campaign header.
    std::string campaign = req.campaign;
    for (auto& b : built) {
      if (auto c = tenants::TakeHeader(&b.content, tenants::kCampaignHeader); c && campaign.empty()) {
        if (tenants::ValidCampaign(*c)) campaign = *c;
      }
      if (tenant->check_from_header) {
        tenants::Verdict h =
            d.gate->SenderFor(*tenant, nullptr, tenants::HeaderValue(b.content, "From").value_or(""), true);
        if (!h.ok) {
          d.gate->stats().refused_from_header++;
          return Fail(conn, 403, "content.from", h.text);
        }
      }
      if (relay::ScanHeaders(b.content).received >= d.config->limits.max_hops) {
        return Fail(conn, 400, "content", "too many Received: header fields (mail loop suspected)");
      }
    }
    // At most the tenant's (else the relay's) recipients per message.
    size_t per = static_cast<size_t>(tenant->limits.max_recipients > 0 ? tenant->limits.max_recipients
                                                                       : d.config->limits.max_recipients);
    std::vector<BuiltMessage> msgs;
    for (auto& b : built) {
      for (size_t i = 0; i < b.recipients.size(); i += per) {
        BuiltMessage m;
        m.recipients.assign(b.recipients.begin() + static_cast<long>(i),
                            b.recipients.begin() + static_cast<long>(std::min(b.recipients.size(), i + per)));
        m.content = i + per >= b.recipients.size() ? std::move(b.content) : b.content;
        msgs.push_back(std::move(m));
      }
    }
    built.clear();
    size_t nrcpt = req.recipients.size();
    tenants::Verdict c = d.gate->Charge(*tenant, nullptr, "", static_cast<int64_t>(msgs.size()),
                                        static_cast<int64_t>(nrcpt));
    if (!c.ok) {
      if (c.rule == std::string_view("rate")) d.gate->stats().refused_rate++;
      else d.gate->stats().refused_quota++;
      return Fail(conn, 429, c.rule == std::string_view("rate") ? "" : "recipients", c.text, "Retry-After: 60\r\n");
    }
    // Commit every message through the same path as SMTP; answer once all are durable.
    Latch latch;
    latch.left = msgs.size();
    latch.codes.resize(msgs.size());
    latch.texts.resize(msgs.size());
    std::vector<std::string> ids;
    std::vector<size_t> sizes;
    int64_t now = d.clock->NowMicros();
    std::string client_ip = ri->remote_addr;
    for (size_t i = 0; i < msgs.size(); ++i) {
      queue::NewMessage nm;
      auto& m = nm.meta;
      m.id = d.ids->Next();
      m.received_us = now;
      m.next_attempt_us = now;
      m.sender = req.envelope_sender;
      m.auth_user = "api:" + tenant->name;
      m.client_ip = client_ip;
      m.helo = "http-api";
      m.tenant = tenant->name;
      m.pool = tenant->pool;
      m.campaign = campaign;
      for (char ch : msgs[i].content) {
        if (static_cast<unsigned char>(ch) >= 0x80) {
          m.body_8bit = true;
          break;
        }
      }
      for (auto& r : msgs[i].recipients) m.recipients.push_back(queue::Recipient{r});
      relay::TraceInfo t;
      t.helo = "http-api";
      t.client_ip = client_ip;
      t.hostname = d.hostname;
      t.protocol = d.config->http_api.tls ? "HTTPS" : "HTTP";
      t.auth_user = m.auth_user;
      t.queue_id = m.id.ToString();
      if (m.recipients.size() == 1) t.single_rcpt = m.recipients[0].address;
      t.now_us = now;
      nm.header_prefix = relay::TraceHeaders(t, relay::ScanHeaders(msgs[i].content));
      nm.body = std::move(msgs[i].content);
      m.body_size = nm.header_prefix.size() + nm.body.size();
      ids.push_back(t.queue_id);
      sizes.push_back(m.body_size);
      d.spool->Commit(std::move(nm), [&latch, i](absl::Status st) {
        std::lock_guard<std::mutex> l(latch.mu);
        latch.codes[i] = st.code();
        latch.texts[i] = std::string(st.message());
        if (--latch.left == 0) latch.cv.notify_all();
      });
    }
    {
      std::unique_lock<std::mutex> l(latch.mu);
      latch.cv.wait(l, [&] { return latch.left == 0; });
    }
    json out_msgs = json::array();
    json failed = json::array();
    size_t ok_rcpts = 0, ok_msgs = 0;
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (latch.codes[i] == absl::StatusCode::kOk) {
        ok_msgs++;
        ok_rcpts += msgs[i].recipients.size();
        out_msgs.push_back({{"id", ids[i]}, {"recipients", msgs[i].recipients}});
        spdlog::info("event=queued id={} ip={} listener=http_api user=api:{} sender=<{}> rcpts={} size={} tenant={} "
                     "campaign={}",
                     ids[i], client_ip, LogEscape(tenant->name), LogEscape(req.envelope_sender),
                     msgs[i].recipients.size(), sizes[i], LogEscape(tenant->name),
                     campaign.empty() ? "-" : LogEscape(campaign));
      } else {
        failed.push_back({{"recipients", msgs[i].recipients}, {"message", latch.texts[i]}});
        spdlog::warn("event=api_commit_failed tenant={} error=\"{}\"", LogEscape(tenant->name), LogEscape(latch.texts[i]));
      }
    }
    api->stats_.messages += ok_msgs;
    api->stats_.recipients += ok_rcpts;
    json resp = {{"messages", out_msgs}, {"accepted_recipients", ok_rcpts}, {"tenant", tenant->name}};
    if (!campaign.empty()) resp["campaign"] = campaign;
    if (!failed.empty()) {
      resp["failed"] = failed;
      resp["error"] = {{"status", 503}, {"message", "some messages were not queued (spool failure); retry those"}};
      Respond(conn, 503, resp.dump() + "\n", "application/json", "Retry-After: 30\r\n");
      return 503;
    }
    Respond(conn, 200, resp.dump() + "\n");
    return 200;
  }
};

absl::StatusOr<std::unique_ptr<HttpApi>> HttpApi::Start(HttpApiDeps deps) {
  std::unique_ptr<HttpApi> a(new HttpApi());
  a->deps_ = std::move(deps);
  a->handler_ = std::make_unique<Handler>();
  a->handler_->api = a.get();
  CivetOptions o;
  o.listen = a->deps_.config->http_api.listen;
  o.what = "http_api";
  o.threads = a->deps_.config->http_api.threads;
  bool tls = a->deps_.config->http_api.tls;
  if (tls && a->deps_.tls == nullptr) return absl::FailedPreconditionError("http_api.tls: no certificate loaded");
  // With TLS, civetweb listens on a loopback port of its own and the TLS
  // proxy (api/tls_proxy.h) serves http_api.listen: Debian 12's civetweb
  // cannot serve TLS with OpenSSL 3 itself.
  if (tls) o.listen = "127.0.0.1:0";
  auto s = StartCivet(o, &a->address_);
  if (!s.ok()) return s.status();
  a->server_ = std::move(*s);
  a->server_->addHandler("/api/", a->handler_.get());
  if (tls) {
    auto p = TlsProxy::Start(a->deps_.config->http_api.listen, a->deps_.tls, a->address_,
                             a->deps_.config->http_api.threads);
    if (!p.ok()) return p.status();
    a->backend_ = a->address_;
    a->address_ = (*p)->address();
    a->proxy_ = std::move(*p);
  }
  return a;
}

HttpApi::~HttpApi() {
  proxy_.reset();
  StopCivet(std::move(server_), backend_.empty() ? address_ : backend_);
}

}  // namespace mxr::api
