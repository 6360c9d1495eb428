// Ingress counters, summed over all event-loop threads with relaxed atomics.
// The session and the server update them; metrics/ reads them at scrape
// time. Every label value is from a fixed set (or the configured listener
// names), never from client input.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/histogram.h"

namespace mxr::relay {

// What a reply answered (the `command` label of mxrelay_smtp_replies_total).
enum class ReplyCmd : uint8_t {
  kConnect,   // the greeting, or a refusal at connect
  kHelo, kEhlo, kMail, kRcpt,
  kData,      // the 354 (or the refusal of DATA)
  kDot,       // the final reply to a message (after the dot or the last BDAT)
  kBdat,      // a non-final BDAT chunk
  kRset, kNoop, kQuit, kVrfy, kHelp,
  kAuth,      // AUTH and its continuation lines
  kStartTls,
  kUnknown,   // unrecognised commands and over-long lines
  kOther,     // timeouts, shutdown, errors outside a command
  kCount,
};
const char* ReplyCmdName(ReplyCmd c);

struct IngressStats {
  explicit IngressStats(size_t listeners = 0)
      : listener_count(listeners), accepted_by_listener(new std::atomic<uint64_t>[listeners]) {
    for (size_t i = 0; i < listeners; ++i) accepted_by_listener[i].store(0);
  }

  std::atomic<uint64_t> connections_accepted{0};
  size_t listener_count;
  std::unique_ptr<std::atomic<uint64_t>[]> accepted_by_listener;  // index = config order
  std::atomic<uint64_t> connections_refused_global{0};
  std::atomic<uint64_t> connections_refused_per_ip{0};
  std::atomic<int64_t> connections_current{0};
  std::atomic<uint64_t> tls_handshakes_ok{0};
  std::atomic<uint64_t> tls_handshakes_tls12{0};   // of the ok ones
  std::atomic<uint64_t> tls_handshakes_tls13{0};
  std::atomic<uint64_t> tls_handshakes_failed{0};
  std::atomic<uint64_t> auth_success{0};
  std::atomic<uint64_t> auth_failure{0};
  std::atomic<uint64_t> auth_blocked{0};   // refused unchecked: the IP is blocked
  std::atomic<uint64_t> auth_busy{0};      // 454 unchecked: checks in flight at the limit, or queue full
  std::atomic<uint64_t> auth_joined{0};    // over the limit, answered by the same login's check in flight
  std::atomic<uint64_t> auth_password_checks{0};  // crypt(3) checks run (cache hits excluded)
  std::atomic<uint64_t> messages_accepted{0};
  std::atomic<uint64_t> bytes_accepted{0};
  std::atomic<uint64_t> messages_spool_failed{0};
  std::atomic<uint64_t> recv_enobufs{0};
  // PROXY protocol listeners: headers accepted, connections refused by why.
  std::atomic<uint64_t> proxy_ok{0};
  std::atomic<uint64_t> proxy_untrusted_peer{0};  // the peer is not in proxy_from
  std::atomic<uint64_t> proxy_malformed{0};
  std::atomic<uint64_t> proxy_no_header{0};       // timeout, or closed before a whole header
  // [command][class]: class 0 = 2xx, 1 = 3xx, 2 = 4xx, 3 = 5xx.
  std::array<std::array<std::atomic<uint64_t>, 4>, static_cast<size_t>(ReplyCmd::kCount)> replies{};
  Histogram message_size{buckets::SizeBytes()};
  Histogram time_to_250_us{buckets::LatencyUs()};

  void CountReply(ReplyCmd cmd, int code) {
    int cls = code / 100 - 2;
    if (cls < 0 || cls > 3) return;
    replies[static_cast<size_t>(cmd)][cls].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace mxr::relay
