#include "webhooks/dispatcher.h"

#include <curl/curl.h>

#include <algorithm>
#include <random>

#include "common/escape.h"
#include "common/strings.h"
#include "common/thread_name.h"
#include "spdlog/spdlog.h"
#include "webhooks/signature.h"

namespace mxr::webhooks {

struct Dispatcher::State {
  Endpoint ep;
  std::string consumer;  // "webhook:<name>"
  EndpointStats stats;   // guarded by Dispatcher::mu_ (written on the thread)
  CURL* easy = nullptr;  // the request in flight
  curl_slist* headers = nullptr;
  std::string response;  // the first bytes of the answer, for the log
  uint64_t batch_last_seq = 0;
  size_t batch_events = 0;
  int64_t next_try_ms = 0;
  int64_t backoff_ms = 0;
  bool idle = false;  // nothing to send at the last look
};

namespace {

size_t KeepSome(char* p, size_t size, size_t n, void* user) {
  auto* s = static_cast<std::string*>(user);
  size_t len = size * n;
  if (s->size() < 200) s->append(p, std::min(len, 200 - s->size()));
  return len;
}

void InitCurl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

Dispatcher::Dispatcher(EventLog& log, std::vector<Endpoint> endpoints, const Clock& clock,
                       DispatcherOptions opts)
    : log_(log), clock_(clock), opts_(opts) {
  InitCurl();
  for (auto& e : endpoints) {
    auto s = std::make_unique<State>();
    s->consumer = Cat("webhook:", e.name);
    s->stats.name = e.name;
    s->stats.position = log_.Cursor(s->consumer);
    s->ep = std::move(e);
    states_.push_back(std::move(s));
  }
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Start() {
  if (thread_.joinable() || states_.empty()) return;
  thread_ = std::thread([this] {
    SetThreadName("mxr-webhooks");
    Run();
  });
}

void Dispatcher::Stop() {
  stop_.store(true);
  Poke();
  if (thread_.joinable()) thread_.join();
}

void Dispatcher::Poke() {
  std::lock_guard<std::mutex> l(wake_mu_);
  if (multi_ != nullptr) curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

std::vector<EndpointStats> Dispatcher::Stats() const {
  std::vector<EndpointStats> out;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& s : states_) {
    EndpointStats st = s->stats;
    st.last_seq = log_.LastSeq(s->ep.stream);
    out.push_back(std::move(st));
  }
  return out;
}

std::string Dispatcher::Body(const std::string& endpoint, const std::vector<StoredEvent>& events) {
  std::string b = "{\"schema_version\":1,\"endpoint\":";
  AppendJsonString(&b, endpoint);
  b += ",\"events\":[";
  for (size_t i = 0; i < events.size(); ++i) {
    if (i) b.push_back(',');
    b += events[i].json;
  }
  b += "]}";
  return b;
}

bool Dispatcher::TypeMatches(std::string_view json, const std::vector<std::string>& types) {
  if (types.empty()) return true;
  // Events are written by the relay: "type":"<name>" appears once, unescaped.
  for (const auto& t : types) {
    if (json.find(Cat("\"type\":\"", t, "\"")) != std::string_view::npos) return true;
  }
  return false;
}

void Dispatcher::Run() {
  CURLM* m = curl_multi_init();
  {
    std::lock_guard<std::mutex> l(wake_mu_);
    multi_ = m;
  }
  std::minstd_rand rng(static_cast<uint32_t>(clock_.NowMicros()));
  while (!stop_.load()) {
    const int64_t now = clock_.MonoMillis();
    // Start a request for every endpoint that is due and has events.
    for (auto& sp : states_) {
      State& s = *sp;
      if (s.easy != nullptr || now < s.next_try_ms) continue;
      uint64_t pos;
      {
        std::lock_guard<std::mutex> l(mu_);
        pos = s.stats.position;
      }
      auto batch = log_.Read(s.ep.stream, pos, s.ep.batch_max, opts_.batch_max_bytes);
      if (!batch.ok() || batch->empty()) {
        s.idle = true;
        s.next_try_ms = now + opts_.idle_poll_ms;  // or sooner: Poke()
        continue;
      }
      s.idle = false;
      std::vector<StoredEvent> send;
      for (auto& e : *batch) {
        if (TypeMatches(e.json, s.ep.types)) send.push_back(std::move(e));
      }
      const uint64_t last = batch->back().seq;
      if (send.empty()) {  // nothing of its types: move past them
        if (log_.SetCursor(s.consumer, last).ok()) {
          std::lock_guard<std::mutex> l(mu_);
          s.stats.events_skipped += batch->size();
          s.stats.position = last;
        }
        s.next_try_ms = 0;
        continue;
      }
      std::string body = Body(s.ep.name, send);
      s.batch_last_seq = last;
      s.batch_events = send.size();
      {
        std::lock_guard<std::mutex> l(mu_);
        s.stats.events_skipped += batch->size() - send.size();
      }
      s.response.clear();
      s.easy = curl_easy_init();
      s.headers = curl_slist_append(nullptr, "Content-Type: application/json");
      s.headers = curl_slist_append(s.headers, "User-Agent: mxrelay-webhooks/1");
      s.headers = curl_slist_append(
          s.headers,
          Cat(kSignatureHeader, ": ", Sign(s.ep.secret, clock_.NowMicros() / 1'000'000, body)).c_str());
      curl_easy_setopt(s.easy, CURLOPT_URL, s.ep.url.c_str());
      curl_easy_setopt(s.easy, CURLOPT_PROTOCOLS_STR, "http,https");
      curl_easy_setopt(s.easy, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(s.easy, CURLOPT_HTTPHEADER, s.headers);
      curl_easy_setopt(s.easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(s.easy, CURLOPT_COPYPOSTFIELDS, body.c_str());
      curl_easy_setopt(s.easy, CURLOPT_TIMEOUT_MS, static_cast<long>(s.ep.timeout_ms));
      curl_easy_setopt(s.easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(s.ep.timeout_ms, 10000)));
      curl_easy_setopt(s.easy, CURLOPT_WRITEFUNCTION, KeepSome);
      curl_easy_setopt(s.easy, CURLOPT_WRITEDATA, &s.response);
      curl_easy_setopt(s.easy, CURLOPT_PRIVATE, &s);
      if (!s.ep.ca_file.empty()) curl_easy_setopt(s.easy, CURLOPT_CAINFO, s.ep.ca_file.c_str());
      curl_multi_add_handle(m, s.easy);
    }
    int running = 0;
    curl_multi_perform(m, &running);
    CURLMsg* msg;
    int left = 0;
    while ((msg = curl_multi_info_read(m, &left)) != nullptr) {
      if (msg->msg != CURLMSG_DONE) continue;
      State* s = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&s));
      long status = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      CURLcode rc = msg->data.result;
      curl_multi_remove_handle(m, s->easy);
      curl_easy_cleanup(s->easy);
      curl_slist_free_all(s->headers);
      s->easy = nullptr;
      s->headers = nullptr;
      const int64_t t = clock_.MonoMillis();
      if (rc == CURLE_OK && status >= 200 && status < 300 &&
          log_.SetCursor(s->consumer, s->batch_last_seq).ok()) {
        uint64_t failures;
        {
          std::lock_guard<std::mutex> l(mu_);
          s->stats.position = s->batch_last_seq;
          s->stats.events_sent += s->batch_events;
          s->stats.batches_sent++;
          s->stats.backoff_until_ms = 0;
          failures = s->stats.failures;
        }
        if (s->backoff_ms != 0) {
          spdlog::info("event=webhook_recovered endpoint={} failures_total={}", s->ep.name, failures);
        }
        s->backoff_ms = 0;
        s->next_try_ms = 0;  // the next batch at once
        continue;
      }
      std::string why = rc != CURLE_OK ? curl_easy_strerror(rc) : Cat("HTTP ", status);
      s->backoff_ms = s->backoff_ms == 0 ? opts_.retry_initial_ms
                                         : std::min(2 * s->backoff_ms, opts_.retry_max_ms);
      int64_t jitter = s->backoff_ms / 10;
      int64_t wait = s->backoff_ms + (jitter > 0 ? static_cast<int64_t>(rng() % (2 * jitter + 1)) - jitter : 0);
      s->next_try_ms = t + wait;
      uint64_t failures;
      {
        std::lock_guard<std::mutex> l(mu_);
        s->stats.failures++;
        s->stats.last_error = why;
        s->stats.backoff_until_ms = s->next_try_ms;
        failures = s->stats.failures;
      }
      // One line per failure while backing off (at most one per retry_initial_ms
      // doubling: a dead endpoint logs a few lines an hour, not one per event).
      spdlog::warn("event=webhook_failed endpoint={} url=\"{}\" error=\"{}\" response=\"{}\" "
                   "events={} failures_total={} retry_in_ms={}",
                   s->ep.name, LogEscape(s->ep.url), LogEscape(why), LogEscape(s->response),
                   s->batch_events, failures, wait);
    }
    // Sleep until a socket is ready, a retry is due, or Poke().
    int64_t timeout = std::max<int64_t>(1, opts_.idle_poll_ms);
    const int64_t t = clock_.MonoMillis();
    bool poked_wait = false;
    for (auto& sp : states_) {
      if (sp->easy == nullptr) {
        if (sp->next_try_ms <= t) timeout = 0;
        else timeout = std::min(timeout, sp->next_try_ms - t);
      }
      poked_wait |= sp->idle;
    }
    int numfds = 0;
    curl_multi_poll(m, nullptr, 0, static_cast<int>(std::max<int64_t>(0, timeout)), &numfds);
    if (poked_wait) {
      // A wake-up may be a Poke(): idle endpoints look again at once.
      for (auto& sp : states_) {
        if (sp->idle && sp->easy == nullptr) {
          sp->next_try_ms = std::min<int64_t>(sp->next_try_ms, clock_.MonoMillis());
        }
      }
    }
  }
  for (auto& sp : states_) {
    if (sp->easy != nullptr) {
      curl_multi_remove_handle(m, sp->easy);
      curl_easy_cleanup(sp->easy);
      curl_slist_free_all(sp->headers);
      sp->easy = nullptr;
      sp->headers = nullptr;
    }
  }
  {
    std::lock_guard<std::mutex> l(wake_mu_);
    multi_ = nullptr;
  }
  curl_multi_cleanup(m);
}

}  // namespace mxr::webhooks
