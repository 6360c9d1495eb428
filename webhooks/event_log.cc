#include "webhooks/event_log.h"

#include <memory>

#include "common/escape.h"
#include "common/strings.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace mxr::webhooks {
namespace {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::UnavailableError(Cat(what, ": ", s.ToString()));
}

uint64_t GetBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Splits an event key; false if it is not one.
bool SplitEventKey(std::string_view k, std::string_view* stream, uint64_t* seq) {
  if (k.size() < 10 || k[k.size() - 9] != '\0') return false;
  *stream = k.substr(0, k.size() - 9);
  *seq = GetBE64(k.data() + k.size() - 8);
  return true;
}

}  // namespace

std::string EventKey(std::string_view stream, uint64_t seq) {
  std::string k(stream);
  k.push_back('\0');
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>((seq >> (8 * i)) & 0xff));
  return k;
}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(rocksdb::DB* db,
                                                         rocksdb::ColumnFamilyHandle* events,
                                                         rocksdb::ColumnFamilyHandle* cursors) {
  if (db == nullptr || events == nullptr || cursors == nullptr) {
    return absl::FailedPreconditionError("the spool has no \"events\"/\"event_cursors\" column family");
  }
  std::unique_ptr<EventLog> log(new EventLog(db, events, cursors));
  // The last event of every stream: seek to each stream's end, stream by
  // stream (as many seeks as streams, not events).
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), events));
  it->SeekToFirst();
  while (it->Valid()) {
    std::string_view stream;
    uint64_t seq = 0;
    std::string_view k(it->key().data(), it->key().size());
    if (!SplitEventKey(k, &stream, &seq)) {
      it->Next();
      continue;
    }
    std::string s(stream);
    // The first key of the next stream: stream + "\x01".
    std::string next = s;
    next.push_back('\x01');
    it->Seek(next);
    // The last key before it belongs to this stream.
    if (it->Valid()) {
      it->Prev();
    } else {
      it->SeekToLast();
    }
    if (it->Valid() && SplitEventKey(std::string_view(it->key().data(), it->key().size()), &stream, &seq) &&
        stream == s) {
      log->last_seq_[s] = seq;
    }
    it->Seek(next);
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading the event log");
  return log;
}

uint64_t EventLog::LastSeq(std::string_view stream) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = last_seq_.find(std::string(stream));
  return it == last_seq_.end() ? 0 : it->second;
}

absl::StatusOr<uint64_t> EventLog::Append(std::string_view stream, std::string_view json) {
  if (stream.empty() || stream.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("event stream name empty or with NUL");
  }
  if (json.empty() || json.front() != '{' || json.back() != '}') {
    return absl::InvalidArgumentError("an event is a JSON object");
  }
  std::lock_guard<std::mutex> l(mu_);
  uint64_t& last = last_seq_[std::string(stream)];
  uint64_t seq = last + 1;
  std::string id;
  AppendJsonString(&id, Cat(stream, ":", seq));
  std::string value = Cat("{\"id\":", id, json.size() > 2 ? "," : "", json.substr(1));
  rocksdb::WriteOptions wo;  // unsynced: see the header
  rocksdb::Status st = db_->Put(wo, events_, EventKey(stream, seq), value);
  if (!st.ok()) return FromRocks(st, "appending an event");
  last = seq;
  return seq;
}

absl::StatusOr<std::vector<StoredEvent>> EventLog::Read(std::string_view stream, uint64_t after_seq,
                                                        size_t max_events, size_t max_bytes) const {
  std::vector<StoredEvent> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_));
  size_t bytes = 0;
  for (it->Seek(EventKey(stream, after_seq + 1)); it->Valid() && out.size() < max_events; it->Next()) {
    std::string_view s;
    uint64_t seq = 0;
    if (!SplitEventKey(std::string_view(it->key().data(), it->key().size()), &s, &seq) || s != stream) {
      break;
    }
    if (!out.empty() && bytes + it->value().size() > max_bytes) break;
    bytes += it->value().size();
    out.push_back({seq, it->value().ToString()});
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading the event log");
  return out;
}

uint64_t EventLog::Cursor(std::string_view consumer) const {
  std::string v;
  if (!db_->Get(rocksdb::ReadOptions(), cursors_, rocksdb::Slice(consumer.data(), consumer.size()), &v).ok() ||
      v.size() != 8) {
    return 0;
  }
  return GetBE64(v.data());
}

absl::Status EventLog::SetCursor(std::string_view consumer, uint64_t seq) {
  std::string v;
  for (int i = 7; i >= 0; --i) v.push_back(static_cast<char>((seq >> (8 * i)) & 0xff));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Put(wo, cursors_, rocksdb::Slice(consumer.data(), consumer.size()), v),
                   "saving a webhook position");
}

absl::StatusOr<uint64_t> EventLog::Trim(std::string_view stream, uint64_t seq) {
  if (seq == 0) return uint64_t{0};
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_));
  uint64_t n = 0;
  for (it->Seek(EventKey(stream, 1)); it->Valid(); it->Next()) {
    std::string_view s;
    uint64_t q = 0;
    if (!SplitEventKey(std::string_view(it->key().data(), it->key().size()), &s, &q) || s != stream ||
        q > seq) {
      break;
    }
    ++n;
  }
  if (!it->status().ok()) return FromRocks(it->status(), "reading the event log");
  if (n == 0) return n;
  rocksdb::WriteBatch wb;
  wb.DeleteRange(events_, EventKey(stream, 0), EventKey(stream, seq + 1));
  if (auto st = FromRocks(db_->Write(rocksdb::WriteOptions(), &wb), "trimming the event log"); !st.ok()) {
    return st;
  }
  return n;
}

}  // namespace mxr::webhooks
