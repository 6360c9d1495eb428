#include "delivery/body_loader.h"

#include "common/strings.h"
#include "spdlog/spdlog.h"

namespace mxr::delivery {

BodyLoader::BodyLoader(queue::Spool* spool, SpoolIo* io, EventLoop* loop, DeliveryStats* stats,
                       int64_t budget_bytes)
    : spool_(spool), io_(io), loop_(loop), state_(std::make_shared<State>()) {
  state_->budget = budget_bytes;
  state_->stats = stats;
  state_->owner = this;
}

BodyLoader::~BodyLoader() { state_->owner = nullptr; }

void BodyLoader::Get(ActiveMessage* m, Ready ready, std::function<ActiveMessage*(const queue::QueueId&)> find) {
  if (BodyRef b = m->Body()) return ready(absl::OkStatus(), std::move(b));
  m->body_waiters.push_back(std::move(ready));
  if (m->body_loading) return;
  m->body_loading = true;
  uint64_t bytes = m->meta.body_size;
  // First come, first read: a read behind a waiting one waits too, so a
  // large body is not overtaken for ever by small ones that would fit.
  if (!waiting_.empty() || (state_->loaded > 0 && state_->loaded + static_cast<int64_t>(bytes) > state_->budget)) {
    state_->stats->body_waits.fetch_add(1, std::memory_order_relaxed);
    waiting_.push_back(Wait{m->meta.id, bytes, std::move(find)});
    return;
  }
  Read(m, std::move(find));
}

void BodyLoader::Read(ActiveMessage* m, std::function<ActiveMessage*(const queue::QueueId&)> find) {
  uint64_t want = m->meta.body_size;
  state_->loaded += static_cast<int64_t>(want);  // reserved now, given back by the deleter or on failure
  state_->stats->body_bytes_loaded.store(state_->loaded, std::memory_order_relaxed);
  queue::Spool* spool = spool_;
  EventLoop* loop = loop_;
  queue::QueueId id = m->meta.id;
  std::shared_ptr<State> state = state_;
  io_->Submit([spool, loop, id, want, state, find = std::move(find)]() mutable {
    auto body = spool->ReadBody(id);
    loop->Post([id, want, state, find = std::move(find), body = std::move(body)]() mutable {
      absl::Status st = body.status();
      if (st.ok() && body->size() != want) {
        st = absl::DataLossError(Cat("body of ", id.ToString(), " has ", body->size(), " bytes, its record says ", want));
      }
      BodyRef ref;
      if (st.ok()) {
        ref = BodyRef(new std::string(std::move(*body)), [state, want](const std::string* s) {
          delete s;
          state->loaded -= static_cast<int64_t>(want);
          state->stats->body_bytes_loaded.store(state->loaded, std::memory_order_relaxed);
          if (state->owner) state->owner->Released();
        });
      } else {
        state->loaded -= static_cast<int64_t>(want);
        state->stats->body_bytes_loaded.store(state->loaded, std::memory_order_relaxed);
        state->stats->body_read_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("event=body_read_failed id={} error=\"{}\" action=\"recipients deferred (4.3.0), nothing sent\"",
                      id.ToString(), st);
      }
      ActiveMessage* msg = find(id);
      if (msg != nullptr) {
        msg->body_loading = false;
        if (ref) msg->loaded = ref;
        auto waiters = std::move(msg->body_waiters);
        msg->body_waiters.clear();
        for (auto& w : waiters) w(st, ref);
      }
      ref.reset();  // nobody took it: the bytes come back now
      if (!st.ok() && state->owner) state->owner->Released();
    });
  });
}

void BodyLoader::Released() {
  while (!waiting_.empty()) {
    Wait& w = waiting_.front();
    if (state_->loaded > 0 && state_->loaded + static_cast<int64_t>(w.bytes) > state_->budget) return;
    Wait next = std::move(w);
    waiting_.pop_front();
    ActiveMessage* m = next.find(next.id);
    if (m == nullptr) continue;  // gone meanwhile (shutdown)
    Read(m, std::move(next.find));
  }
}

}  // namespace mxr::delivery
