// DKIM signing at reception, off the event loops: a queue::Spool that signs
// each message on a signing thread, then commits it to the real spool.
//
//   ingress ─Commit─> SigningSpool ─> SigningService (N threads: decide,
//            canonicalize, hash, sign; DKIM-Signature fields put first in
//            the header prefix) ─Commit─> RocksSpool (group commit) ─> 250
//
// Every other Spool call goes straight to the real spool. With no rule
// configured a Commit goes straight through too (no thread hop). The
// message is signed once, before it is durable, so its 250 means "queued
// and signed"; retries send the same bytes (delivery/README.md says why
// this placement).
//
// Threads: Submit/Commit from any thread (ingress loops, the delivery
// loop for DSNs); `done` is called on a signing thread (deferred) or, as
// the real spool does, on its commit thread. SetPolicy (SIGHUP) from any
// thread: messages signed after it returns use the new rules and keys.
//
//   SigningService signer(policy, /*threads=*/0, &stats, RealClock::Get());
//   SigningSpool ingress(spool, &signer, SigningSpool::Origin::kReceived);
//   SigningSpool dsns(spool, &signer, SigningSpool::Origin::kGenerated);
//   // destroy `signer` before `spool`: it commits what it still holds
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "dkim/policy.h"
#include "dkim/stats.h"
#include "queue/spool.h"

namespace mxr::dkim {

// What signing did to one message (the pure part of a job, tested alone).
struct JobOutcome {
  Result result = Result::kUnsigned;
  absl::Status deferred;  // FailedPrecondition("4.7.x text") when kDeferred
};
// Decides, signs, and puts the DKIM-Signature fields first in
// msg->header_prefix (msg->meta.body_size grows by their size). Counts in
// `stats`, logs unsigned and deferred messages (rate-limited).
JobOutcome SignQueuedMessage(const Policy& policy, queue::NewMessage* msg, bool generated, int64_t now_s,
                             DkimStats* stats);

class SigningService {
 public:
  // threads <= 0: one per core.
  SigningService(std::shared_ptr<const Policy> policy, int threads, DkimStats* stats, const Clock& clock);
  // Signs and commits every queued message, then joins the threads.
  ~SigningService();
  SigningService(const SigningService&) = delete;
  SigningService& operator=(const SigningService&) = delete;

  void SetPolicy(std::shared_ptr<const Policy> policy);
  std::shared_ptr<const Policy> policy() const;

  // Signs `msg` on a signing thread, then inner->Commit(msg, done); a
  // deferred message is answered done(FailedPrecondition) instead.
  void Submit(queue::NewMessage msg, bool generated, queue::Spool* inner, queue::CommitCallback done);

  size_t threads() const { return nthreads_; }

 private:
  struct Job {
    queue::NewMessage msg;
    bool generated = false;
    queue::Spool* inner = nullptr;
    queue::CommitCallback done;
  };
  void Run();
  void Process(Job& job, const Policy& policy);

  DkimStats* stats_;
  const Clock& clock_;
  mutable std::mutex policy_mu_;
  std::shared_ptr<const Policy> policy_;  // guarded by policy_mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stop_ = false;      // guarded by mu_
  size_t nthreads_ = 0;    // set before the threads start
  std::vector<std::thread> threads_;
};

class SigningSpool final : public queue::Spool {
 public:
  enum class Origin {
    kReceived,   // from clients: the rules' fallbacks apply
    kGenerated,  // made by the relay (DSNs): never deferred for DKIM
  };
  SigningSpool(queue::Spool* inner, SigningService* signer, Origin origin)
      : inner_(inner), signer_(signer), origin_(origin) {}

  void Commit(queue::NewMessage msg, queue::CommitCallback done) override;
  void SetCommitListener(CommitListener listener) override { inner_->SetCommitListener(std::move(listener)); }
  bool Healthy() const override { return inner_->Healthy(); }
  queue::SpoolHealth Health() const override { return inner_->Health(); }
  queue::SpoolStats Stats() const override { return inner_->Stats(); }
  absl::StatusOr<std::vector<queue::MessageMeta>> LoadDue(int64_t now_us, size_t limit) override {
    return inner_->LoadDue(now_us, limit);
  }
  absl::StatusOr<std::string> ReadBody(const queue::QueueId& id) override { return inner_->ReadBody(id); }
  absl::StatusOr<queue::MessageMeta> LoadMeta(const queue::QueueId& id) override { return inner_->LoadMeta(id); }
  absl::Status ScanSchedule(const std::function<bool(int64_t, const queue::QueueId&)>& visit) override {
    return inner_->ScanSchedule(visit);
  }
  absl::Status Update(const queue::MessageMeta& meta, int64_t old_next_attempt_us) override {
    return inner_->Update(meta, old_next_attempt_us);
  }
  absl::Status Delete(const queue::MessageMeta& meta) override { return inner_->Delete(meta); }
  void UpdateAsync(const queue::MessageMeta& meta, int64_t old_next_attempt_us) override {
    inner_->UpdateAsync(meta, old_next_attempt_us);
  }
  void DeleteAsync(const queue::MessageMeta& meta) override { inner_->DeleteAsync(meta); }
  void FlushAsync() override { inner_->FlushAsync(); }
  absl::Status Scan(const std::function<bool(const queue::MessageMeta&)>& visit) override {
    return inner_->Scan(visit);
  }
  absl::StatusOr<std::optional<queue::QueueId>> OldestFrom(const queue::QueueId& from) override {
    return inner_->OldestFrom(from);
  }

 private:
  queue::Spool* inner_;
  SigningService* signer_;
  Origin origin_;
};

}  // namespace mxr::dkim
