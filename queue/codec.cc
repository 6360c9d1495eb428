#include "queue/codec.h"

#include <cstring>
#include <random>

#include "common/strings.h"

namespace mxr::queue {
namespace {

void PutBE64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}
void PutBE32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
}
uint64_t GetBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint32_t GetBE32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void PutString(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s);
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && !in_.empty(); shift += 7) {
      uint8_t b = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  template <typename T>
  bool Int(T* v) {
    uint64_t x;
    if (!Varint(&x)) return false;
    *v = static_cast<T>(x);
    return true;
  }
  bool Byte(uint8_t* b) {
    if (in_.empty()) return false;
    *b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool String(std::string* s) {
    uint64_t n;
    if (!Varint(&n) || n > in_.size()) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

void PutAttr(std::string* out, uint32_t tag, std::string_view value) {
  PutVarint(out, tag);
  PutString(out, value);
}

// Attributes: varint count, then (varint tag, string value) each; only the
// ones present are written.
void PutMessageAttrs(std::string* out, const MessageMeta& m) {
  const char ret = static_cast<char>(m.dsn_ret);
  size_t n = !m.tenant.empty() + !m.campaign.empty() + !m.pool.empty() +
             (m.dsn_ret != DsnRet::kUnset) + !m.envid.empty() + m.unknown.size();
  PutVarint(out, n);
  if (!m.tenant.empty()) PutAttr(out, kAttrTenant, m.tenant);
  if (!m.campaign.empty()) PutAttr(out, kAttrCampaign, m.campaign);
  if (!m.pool.empty()) PutAttr(out, kAttrPool, m.pool);
  if (m.dsn_ret != DsnRet::kUnset) PutAttr(out, kAttrDsnRet, std::string_view(&ret, 1));
  if (!m.envid.empty()) PutAttr(out, kAttrEnvid, m.envid);
  for (const auto& u : m.unknown) PutAttr(out, u.tag, u.value);
}

void PutRecipientAttrs(std::string* out, const Recipient& r) {
  const char notify = static_cast<char>(r.notify);
  size_t n = (r.notify != 0) + !r.orcpt.empty() + r.delay_dsn_sent + r.unknown.size();
  PutVarint(out, n);
  if (r.notify != 0) PutAttr(out, kAttrNotify, std::string_view(&notify, 1));
  if (!r.orcpt.empty()) PutAttr(out, kAttrOrcpt, r.orcpt);
  if (r.delay_dsn_sent) PutAttr(out, kAttrDelayDsnSent, "1");
  for (const auto& u : r.unknown) PutAttr(out, u.tag, u.value);
}

// Reads an attribute block, handing each (tag, value) to `take`, which
// returns false for a value it cannot accept (a malformed known attribute).
template <typename Take>
bool ReadAttrs(Reader& r, Take&& take) {
  uint64_t n = 0;
  if (!r.Varint(&n)) return false;
  for (uint64_t i = 0; i < n; ++i) {
    uint32_t tag = 0;
    std::string value;
    if (!r.Int(&tag) || !r.String(&value) || !take(tag, std::move(value))) return false;
  }
  return true;
}

bool TakeMessageAttr(MessageMeta& m, uint32_t tag, std::string value) {
  switch (tag) {
    case kAttrTenant: m.tenant = std::move(value); return true;
    case kAttrCampaign: m.campaign = std::move(value); return true;
    case kAttrPool: m.pool = std::move(value); return true;
    case kAttrEnvid: m.envid = std::move(value); return true;
    case kAttrDsnRet:
      if (value.size() != 1 || static_cast<uint8_t>(value[0]) > 2) return false;
      m.dsn_ret = static_cast<DsnRet>(value[0]);
      return true;
    default: m.unknown.push_back({tag, std::move(value)}); return true;
  }
}

bool TakeRecipientAttr(Recipient& rc, uint32_t tag, std::string value) {
  switch (tag) {
    case kAttrNotify:
      if (value.size() != 1) return false;
      rc.notify = static_cast<uint8_t>(value[0]);
      return true;
    case kAttrOrcpt: rc.orcpt = std::move(value); return true;
    case kAttrDelayDsnSent:
      if (value != "1") return false;
      rc.delay_dsn_sent = true;
      return true;
    default: rc.unknown.push_back({tag, std::move(value)}); return true;
  }
}

}  // namespace

std::array<char, QueueId::kKeySize> QueueId::Key() const {
  std::array<char, kKeySize> k;
  PutBE64(k.data(), time_us);
  PutBE32(k.data() + 8, seq);
  return k;
}

std::optional<QueueId> QueueId::FromKey(std::string_view key) {
  if (key.size() != kKeySize) return std::nullopt;
  return QueueId{GetBE64(key.data()), GetBE32(key.data() + 8)};
}

std::string QueueId::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  auto k = Key();
  std::string out(2 * kKeySize, '0');
  for (size_t i = 0; i < kKeySize; ++i) {
    out[2 * i] = kHex[static_cast<uint8_t>(k[i]) >> 4];
    out[2 * i + 1] = kHex[static_cast<uint8_t>(k[i]) & 15];
  }
  return out;
}

std::optional<QueueId> QueueId::Parse(std::string_view hex) {
  if (hex.size() != 2 * kKeySize) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string key(kKeySize, '\0');
  for (size_t i = 0; i < kKeySize; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    key[i] = static_cast<char>(hi << 4 | lo);
  }
  return FromKey(key);
}

QueueIdGenerator::QueueIdGenerator(const Clock& clock)
    : clock_(clock), seq_(static_cast<uint32_t>(std::random_device{}())) {}

QueueId QueueIdGenerator::Next() {
  return QueueId{static_cast<uint64_t>(clock_.NowMicros()),
                 seq_.fetch_add(1, std::memory_order_relaxed)};
}

size_t MessageMeta::PendingRecipients() const {
  size_t n = 0;
  for (const auto& r : recipients) n += r.state == RcptState::kPending;
  return n;
}

std::string EncodeMeta(const MessageMeta& m) {
  std::string out;
  out.reserve(64 + m.sender.size() + m.recipients.size() * 32);
  out.push_back(static_cast<char>(kFormatVersion));
  PutVarint(&out, static_cast<uint64_t>(m.received_us));
  PutVarint(&out, static_cast<uint64_t>(m.next_attempt_us));
  PutVarint(&out, m.attempts);
  PutVarint(&out, m.body_size);
  out.push_back(static_cast<char>((m.smtputf8 ? 1 : 0) | (m.body_8bit ? 2 : 0)));
  PutString(&out, m.sender);
  PutString(&out, m.auth_user);
  PutString(&out, m.client_ip);
  PutString(&out, m.helo);
  PutVarint(&out, m.recipients.size());
  for (const auto& r : m.recipients) {
    PutString(&out, r.address);
    out.push_back(static_cast<char>(r.state));
    PutVarint(&out, r.attempts);
    PutVarint(&out, r.last_code);
    PutString(&out, std::string_view(r.last_response).substr(0, kMaxStoredResponse));
    PutRecipientAttrs(&out, r);
  }
  PutMessageAttrs(&out, m);
  return out;
}

absl::StatusOr<MessageMeta> DecodeMeta(std::string_view key, std::string_view value) {
  MessageMeta m;
  auto id = QueueId::FromKey(key);
  if (!id) return absl::DataLossError("meta key has the wrong size");
  m.id = *id;
  Reader r(value);
  uint8_t version = 0, flags = 0;
  if (!r.Byte(&version)) return absl::DataLossError("empty meta record");
  if (version < kOldestReadableVersion || version > kFormatVersion) {
    return absl::DataLossError(Cat("meta record version ", version, " is not one of ",
                                   kOldestReadableVersion, "..", kFormatVersion));
  }
  const bool attrs = version >= 2;
  uint64_t n = 0;
  bool ok = r.Int(&m.received_us) && r.Int(&m.next_attempt_us) && r.Int(&m.attempts) &&
            r.Int(&m.body_size) && r.Byte(&flags) && r.String(&m.sender) &&
            r.String(&m.auth_user) && r.String(&m.client_ip) && r.String(&m.helo) &&
            r.Varint(&n) && n <= value.size();
  if (!ok) return absl::DataLossError(Cat("truncated meta record ", m.id.ToString()));
  m.smtputf8 = flags & 1;
  m.body_8bit = flags & 2;
  m.recipients.resize(n);
  for (auto& rc : m.recipients) {
    uint8_t state = 0;
    if (!r.String(&rc.address) || !r.Byte(&state) || state > 2 || !r.Int(&rc.attempts) ||
        !r.Int(&rc.last_code) || !r.String(&rc.last_response) ||
        (attrs && !ReadAttrs(r, [&rc](uint32_t tag, std::string v) {
          return TakeRecipientAttr(rc, tag, std::move(v));
        }))) {
      return absl::DataLossError(Cat("truncated recipient in ", m.id.ToString()));
    }
    rc.state = static_cast<RcptState>(state);
  }
  if (attrs && !ReadAttrs(r, [&m](uint32_t tag, std::string v) {
        return TakeMessageAttr(m, tag, std::move(v));
      })) {
    return absl::DataLossError(Cat("bad attributes in ", m.id.ToString()));
  }
  if (!r.done()) return absl::DataLossError(Cat("trailing bytes in ", m.id.ToString()));
  return m;
}

std::string ScheduleKey(int64_t next_attempt_us, const QueueId& id) {
  std::string k(8 + QueueId::kKeySize, '\0');
  PutBE64(k.data(), static_cast<uint64_t>(next_attempt_us));
  auto qk = id.Key();
  std::memcpy(k.data() + 8, qk.data(), qk.size());
  return k;
}

bool ParseScheduleKey(std::string_view key, int64_t* next_attempt_us, QueueId* id) {
  if (key.size() != 8 + QueueId::kKeySize) return false;
  *next_attempt_us = static_cast<int64_t>(GetBE64(key.data()));
  auto q = QueueId::FromKey(key.substr(8));
  if (!q) return false;
  *id = *q;
  return true;
}

}  // namespace mxr::queue
