#include "dkim/signing_spool.h"

#include <chrono>

#include "common/escape.h"
#include "common/strings.h"
#include "common/thread_name.h"
#include "spdlog/spdlog.h"

namespace mxr::dkim {
namespace {

// At most one log line per kind every 10 s, saying how many were left out:
// a relay with no rule for a busy domain must not write a line per message.
class LogLimiter {
 public:
  // Returns how many lines were suppressed before this one, or -1 when this
  // one is suppressed too.
  int64_t Admit(size_t kind) {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> l(mu_);
    Slot& s = slots_[kind];
    if (s.logged && now - s.last < std::chrono::seconds(10)) {
      ++s.suppressed;
      return -1;
    }
    s.logged = true;
    s.last = now;
    int64_t n = s.suppressed;
    s.suppressed = 0;
    return n;
  }

 private:
  struct Slot {
    bool logged = false;
    std::chrono::steady_clock::time_point last;
    int64_t suppressed = 0;
  };
  std::mutex mu_;
  Slot slots_[2 * kFailureCount + 1];
};

LogLimiter& Limiter() {
  static LogLimiter l;
  return l;
}

}  // namespace

JobOutcome SignQueuedMessage(const Policy& policy, queue::NewMessage* msg, bool generated, int64_t now_s,
                             DkimStats* stats) {
  auto t0 = std::chrono::steady_clock::now();
  ParsedMessage parsed = ParseMessage(msg->header_prefix, msg->body);
  MessageFacts facts = FactsOf(parsed, msg->meta.sender, msg->meta.auth_user, generated);
  Decision d = policy.Decide(facts);
  std::vector<Failure> failures = d.failures;
  JobOutcome out;
  std::string signed_by;
  if (d.action == Decision::Action::kSign) {
    SignResult r = Sign(parsed, policy.options(), d.keys, now_s);
    std::string errors;
    for (size_t k = 0; k < d.keys.size(); ++k) {
      if (r.per_key[k].ok()) {
        stats->CountSignature(d.keys[k].domain, AlgorithmName(d.keys[k].key->algorithm()));
        signed_by += Cat(signed_by.empty() ? "" : ",", d.keys[k].domain, "/", d.keys[k].selector);
      } else {
        failures.push_back(Failure::kSignError);
        if (errors.empty()) errors = Cat("d=", d.keys[k].domain, " s=", d.keys[k].selector, ": ", r.per_key[k].message());
      }
    }
    if (!errors.empty() && policy.config().on_key_error == DkimFallback::kDefer && !generated) {
      d.action = Decision::Action::kDefer;
      d.detail = Cat("4.7.5 DKIM signing failed (", errors, "); try again later");
    } else {
      if (!errors.empty()) d.detail = Cat("signing failed: ", errors);
      if (!r.fields.empty()) {
        msg->header_prefix.insert(0, r.fields);
        std::string_view end = MissingHeaderEnd(parsed, msg->body);  // canon.h: for OpenDKIM
        msg->body.append(end);
        msg->meta.body_size += r.fields.size() + end.size();
      }
    }
    if (d.action == Decision::Action::kSign && r.fields.empty()) d.action = Decision::Action::kSendUnsigned;
  }
  for (Failure f : failures) stats->CountFailure(f);
  switch (d.action) {
    case Decision::Action::kSign:
      out.result = Result::kSigned;
      break;
    case Decision::Action::kSendUnsigned:
      out.result = Result::kUnsigned;
      break;
    case Decision::Action::kDefer:
      out.result = Result::kDeferred;
      out.deferred = absl::FailedPreconditionError(d.detail);
      break;
  }
  stats->CountResult(out.result);
  stats->signing_us().Observe(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count()));
  // Log what did not go as configured: unsigned or deferred messages, and
  // signed ones that lost a key.
  if (!failures.empty()) {
    size_t kind = static_cast<size_t>(failures.front()) * 2 + (out.result == Result::kDeferred ? 1 : 0);
    int64_t suppressed = Limiter().Admit(kind);
    if (suppressed >= 0) {
      const char* event = out.result == Result::kDeferred   ? "event=dkim_deferred"
                          : out.result == Result::kUnsigned ? "event=dkim_unsigned"
                                                            : "event=dkim_key_skipped";
      const char* action = out.result == Result::kDeferred   ? "refused with 451, the client retries"
                           : out.result == Result::kUnsigned ? "queued without a DKIM signature"
                                                             : "signed with the rule's other keys";
      spdlog::warn("{} id={} reason={} generated={} signed_by={} detail=\"{}\" action=\"{}\" "
                   "similar_lines_suppressed={}",
                   event, msg->meta.id.ToString(), FailureName(failures.front()), generated,
                   signed_by.empty() ? "-" : signed_by, LogEscape(d.detail), action, suppressed);
    }
  }
  return out;
}

SigningService::SigningService(std::shared_ptr<const Policy> policy, int threads, DkimStats* stats,
                               const Clock& clock)
    : stats_(stats), clock_(clock), policy_(std::move(policy)) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  nthreads_ = static_cast<size_t>(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, i] {
      SetThreadName(Cat("mxr-dkim-", i));
      Run();
    });
  }
}

SigningService::~SigningService() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void SigningService::SetPolicy(std::shared_ptr<const Policy> policy) {
  std::lock_guard<std::mutex> l(policy_mu_);
  policy_ = std::move(policy);
}

std::shared_ptr<const Policy> SigningService::policy() const {
  std::lock_guard<std::mutex> l(policy_mu_);
  return policy_;
}

void SigningService::Submit(queue::NewMessage msg, bool generated, queue::Spool* inner, queue::CommitCallback done) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stop_) {
      queue_.push_back(Job{std::move(msg), generated, inner, std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  Job job{std::move(msg), generated, inner, std::move(done)};  // stopping: sign here
  Process(job, *policy());
}

void SigningService::Process(Job& job, const Policy& policy) {
  int64_t now_s = clock_.NowMicros() / 1'000'000;
  JobOutcome o = SignQueuedMessage(policy, &job.msg, job.generated, now_s, stats_);
  if (o.result == Result::kDeferred) {
    // Moved, not copied: the status goes to another thread, and a copy would
    // share its payload's reference count across threads (abseil's count is
    // in Debian's uninstrumented library: TSan would report the last Unref).
    std::move(job.done)(std::move(o.deferred));
    return;
  }
  job.inner->Commit(std::move(job.msg), std::move(job.done));
}

void SigningService::Run() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      // One job at a time, oldest first: each message is committed as soon
      // as it is signed, and the threads stay evenly loaded. The lock is
      // held for a pop, next to a signature of 40-250 µs.
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Process(job, *policy());
  }
}

void SigningSpool::Commit(queue::NewMessage msg, queue::CommitCallback done) {
  if (signer_->policy()->empty()) return inner_->Commit(std::move(msg), std::move(done));
  signer_->Submit(std::move(msg), origin_ == Origin::kGenerated, inner_, std::move(done));
}

}  // namespace mxr::dkim
