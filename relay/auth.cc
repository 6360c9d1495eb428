#include "common/thread_name.h"
#include "relay/auth.h"

#include "common/strings.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace mxr::relay {

namespace {
constexpr size_t kMaxCacheEntries = 10000;
}  // namespace

Authenticator::Authenticator(std::shared_ptr<const UserDb> users, int threads, const Clock& clock,
                             int64_t cache_ttl_ms)
    : clock_(clock), cache_ttl_ms_(cache_ttl_ms), users_(std::move(users)) {
  RAND_bytes(hmac_key_, sizeof hmac_key_);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      SetThreadName("mxr-auth");
      Work();
    });
  }
}

Authenticator::~Authenticator() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  OPENSSL_cleanse(hmac_key_, sizeof hmac_key_);
}

std::string Authenticator::CacheKey(const std::string& user, const std::string& password) const {
  std::string msg = user;
  msg.push_back('\0');
  msg += password;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), hmac_key_, sizeof hmac_key_, reinterpret_cast<const unsigned char*>(msg.data()),
       msg.size(), out, &len);
  OPENSSL_cleanse(msg.data(), msg.size());
  return std::string(reinterpret_cast<char*>(out), len);
}

void Authenticator::Verify(std::string user, std::string password,
                           absl::AnyInvocable<void(AuthAnswer) &&> done) {
  std::string key = CacheKey(user, password);
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = in_flight_.find(key);
    if (!stop_ && it != in_flight_.end() && it->second.gen == users_gen_) {
      it->second.waiters.push_back(std::move(done));
      WipeString(password);
      return;
    }
    if (!stop_ && jobs_.size() < kMaxQueuedJobs && it == in_flight_.end()) {
      in_flight_[key].gen = users_gen_;
      jobs_.push_back(Job{std::move(user), std::move(password), std::move(key), std::move(done)});
      WipeString(password);  // a short password stays in the moved-from inline buffer
      cv_.notify_one();
      return;
    }
    if (!stop_ && jobs_.size() < kMaxQueuedJobs) {
      // A check of the same login against the previous users file is still
      // running: this one is checked on its own (not joined to, not joinable).
      jobs_.push_back(Job{std::move(user), std::move(password), "", std::move(done)});
      WipeString(password);
      cv_.notify_one();
      return;
    }
  }
  WipeString(password);
  // Not a failure: the client is told to try later (454 4.7.0) and nothing
  // is counted against it (a flood must not lock out real users).
  std::move(done)(AuthAnswer{AuthResult::kBusy, {}});
}

bool Authenticator::JoinInFlight(const std::string& user, std::string& password,
                                 absl::AnyInvocable<void(AuthAnswer) &&> done) {
  std::string key = CacheKey(user, password);
  WipeString(password);
  std::lock_guard<std::mutex> l(mu_);
  auto it = in_flight_.find(key);
  if (stop_ || it == in_flight_.end() || it->second.gen != users_gen_) return false;
  it->second.waiters.push_back(std::move(done));
  return true;
}

std::optional<std::string> Authenticator::CachedOk(const std::string& user, const std::string& password) const {
  std::string key = CacheKey(user, password);
  int64_t now = clock_.MonoMillis();
  std::lock_guard<std::mutex> l(mu_);
  auto it = cache_.find(key);
  if (it == cache_.end() || it->second.expiry_ms <= now) return std::nullopt;
  return it->second.user;
}

void Authenticator::SetUsers(std::shared_ptr<const UserDb> users) {
  std::lock_guard<std::mutex> l(mu_);
  users_ = std::move(users);
  cache_.clear();
  ++users_gen_;  // checks under way use the old file: nobody joins them any more
}

size_t Authenticator::user_count() const {
  std::lock_guard<std::mutex> l(mu_);
  return users_ ? users_->size() : 0;
}

void Authenticator::Work() {
  for (;;) {
    Job job;
    std::shared_ptr<const UserDb> users;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !jobs_.empty(); });
      if (stop_ && jobs_.empty()) return;
      job = std::move(jobs_.front());
      WipeString(jobs_.front().password);
      jobs_.pop_front();
      users = users_;
    }
    const std::string key = job.key.empty() ? CacheKey(job.user, job.password) : job.key;
    int64_t now = clock_.MonoMillis();
    AuthAnswer answer;
    bool cached = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = cache_.find(key);
      if (it != cache_.end() && it->second.expiry_ms > now && users == users_) {
        cached = true;
        answer = AuthAnswer{AuthResult::kOkCached, it->second.user};
      }
    }
    if (!cached) {
      UserDb::Check c;
      if (users != nullptr) c = users->CheckPassword(job.user, job.password);
      answer.user = c.user;
      answer.result = c.result == UserDb::Result::kOk            ? AuthResult::kOk
                      : c.result == UserDb::Result::kBadPassword ? AuthResult::kBad
                                                                 : AuthResult::kUnknownUser;
      if (answer.result == AuthResult::kOk) {
        std::lock_guard<std::mutex> l(mu_);
        if (users == users_) {
          if (cache_.size() >= kMaxCacheEntries) cache_.clear();
          cache_[key] = Cached{now + cache_ttl_ms_, c.user};
        }
      }
    }
    WipeString(job.password);
    Waiters waiters;
    if (!job.key.empty()) {  // the job others could join
      std::lock_guard<std::mutex> l(mu_);
      auto it = in_flight_.find(key);
      if (it != in_flight_.end()) {
        waiters = std::move(it->second.waiters);
        in_flight_.erase(it);
      }
    }
    // The others asked the same question while it was being checked: one
    // password check answers them all.
    AuthAnswer shared = answer;
    if (shared.result == AuthResult::kOk) shared.result = AuthResult::kOkCached;
    std::move(job.done)(std::move(answer));
    for (auto& w : waiters) std::move(w)(shared);
  }
}

}  // namespace mxr::relay
