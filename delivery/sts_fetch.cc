// The MTA-STS policy fetcher: libcurl's easy interface on one thread.
//
// Why a thread and not curl's multi interface on the delivery loop: policy
// fetches are rare (one per policy domain per max_age, typically a day), so
// their throughput does not matter, while driving curl's multi interface
// from our io_uring loop would need its socket/timer callbacks bridged into
// one-shot polls (as resolver.cc does for c-ares) — more code on the hot
// thread for no gain. The thread blocks only itself; results are posted
// back to the loop; at most kMaxQueued fetches wait.
#include <curl/curl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "common/event_loop.h"
#include "common/strings.h"
#include "common/thread_name.h"
#include "delivery/mta_sts.h"

namespace mxr::delivery {
namespace {

constexpr size_t kMaxQueued = 256;
constexpr size_t kMaxBody = 64 * 1024;  // RFC 8461 policies are tiny

size_t Write(char* p, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  size_t len = size * n;
  if (body->size() + len > kMaxBody) return 0;  // aborts the transfer
  body->append(p, len);
  return len;
}

class CurlFetcher final : public StsFetcher {
 public:
  CurlFetcher(EventLoop* loop, const MtaStsConfig& cfg) : loop_(loop), cfg_(cfg) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    thread_ = std::thread([this] { Run(); });
  }
  ~CurlFetcher() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    stop_flag_ = true;
    cv_.notify_all();
    thread_.join();
  }

  void Post(const std::string& url, const std::string& pin, std::string body, std::string content_type,
            std::function<void(Result)> done) override {
    Queue(Item{url, pin, std::move(done), true, std::move(body), std::move(content_type)});
  }

  void Fetch(const std::string& url, const std::string& pin, std::function<void(Result)> done) override {
    Queue(Item{url, pin, std::move(done), false, {}, {}});
  }

 private:
  struct Item {
    std::string url;
    std::string pin;
    std::function<void(Result)> done;
    bool post = false;
    std::string body, content_type;
  };

  void Queue(Item it) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (queue_.size() < kMaxQueued) {
        queue_.push_back(std::move(it));
        cv_.notify_one();
        return;
      }
    }
    Result r;
    r.error = "too many HTTPS requests waiting";
    loop_->Post([done = std::move(it.done), r = std::move(r)]() mutable { done(std::move(r)); });
  }

  void Run() {
    SetThreadName("mxr-sts-fetch");
    for (;;) {
      Item it;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        it = std::move(queue_.front());
        queue_.pop_front();
      }
      Result r = Get(it);
      loop_->Post([done = std::move(it.done), r = std::move(r)]() mutable { done(std::move(r)); });
    }
  }

  Result Get(const Item& it) {
    const std::string& url = it.url;
    const std::string& pin = it.pin;
    curl_slist* headers = nullptr;
    Result r;
    CURL* c = curl_easy_init();
    if (c == nullptr) {
      r.error = "curl_easy_init failed";
      return r;
    }
    char err[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // RFC 8461 3.3: no redirects
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
    if (!cfg_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, cfg_.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(cfg_.fetch_timeout));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(cfg_.fetch_timeout));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    // A stop does not wait for a slow server: the transfer is aborted.
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &stop_flag_);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, +[](void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
      return static_cast<std::atomic<bool>*>(p)->load() ? 1 : 0;
    });
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mxrelay-mta-sts/1");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    if (!pin.empty()) {
      // The address the delivery resolver found ("host:port:address"), so
      // curl never asks the system resolver.
      resolve_ = curl_slist_append(nullptr, pin.c_str());
      curl_easy_setopt(c, CURLOPT_RESOLVE, resolve_);
    }
    if (it.post) {
      headers = curl_slist_append(headers, ("Content-Type: " + it.content_type).c_str());
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, it.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(it.body.size()));
    }
    CURLcode rc = curl_easy_perform(c);
    if (headers) curl_slist_free_all(headers);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.http_status);
    if (rc != CURLE_OK) {
      r.error = Cat(url, ": ", err[0] ? err : curl_easy_strerror(rc));
      r.tls_error = rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
                    rc == CURLE_SSL_CACERT_BADFILE;
    } else if (it.post) {
      r.ok = r.http_status >= 200 && r.http_status < 300;
      if (!r.ok) r.error = Cat(url, ": HTTP status ", r.http_status);
    } else if (r.http_status != 200) {
      r.error = Cat(url, ": HTTP status ", r.http_status);
    } else {
      char* ct = nullptr;
      curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
      std::string type = ct ? ct : "";
      if (type.rfind("text/plain", 0) != 0) {
        r.error = Cat(url, ": Content-Type is not text/plain (", type, ")");
      } else {
        r.ok = true;
      }
    }
    if (!r.ok) r.body.clear();
    curl_easy_cleanup(c);
    if (resolve_) {
      curl_slist_free_all(resolve_);
      resolve_ = nullptr;
    }
    return r;
  }

  EventLoop* loop_;
  MtaStsConfig cfg_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::atomic<bool> stop_flag_{false};
  curl_slist* resolve_ = nullptr;
};

}  // namespace

std::unique_ptr<StsFetcher> MakeCurlStsFetcher(EventLoop* loop, const MtaStsConfig& cfg) {
  return std::make_unique<CurlFetcher>(loop, cfg);
}

}  // namespace mxr::delivery
