// A suppression-list entry and its stored form (suppression/README.md).
//
// Pure functions, no I/O. The key of an entry is `scope \0 address`, where
// scope is a tenant name or "" for the global list and the address is
// normalized by NormalizeAddress (RFC 5321: the domain is case-insensitive,
// the local part is compared as written).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mxr::suppression {

enum class Reason : uint8_t {
  kHardBounce = 1,   // a permanent failure of a category that means "bad address"
  kComplaint = 2,    // an ARF report (RFC 5965) or the API
  kUnsubscribe = 3,  // the platform told us (API, CSV)
  kManual = 4,       // an operator (CLI, API, CSV)
};

std::string_view ReasonName(Reason r);  // "hard_bounce", "complaint", ...
std::optional<Reason> ParseReason(std::string_view name);

struct Entry {
  std::string scope;    // tenant, "" = global
  std::string address;  // normalized
  Reason reason = Reason::kManual;
  std::string category;  // bounce category for kHardBounce ("invalid_recipient"), else free
  std::string source;    // what added it: "queue 0123... 550 5.1.1 ...", "csv", "admin"
  int64_t created_us = 0;
  int64_t expires_us = 0;  // 0 = never

  bool ExpiredAt(int64_t now_us) const { return expires_us != 0 && now_us >= expires_us; }
};

// "<User@Example.COM>" -> "User@example.com": angle brackets dropped, the
// domain lowercased (ASCII), the local part kept as written. nullopt when it
// is not an address (no '@', empty local part or domain, NUL, CR or LF).
std::optional<std::string> NormalizeAddress(std::string_view address);

// The RocksDB key: scope, a NUL, the normalized address. Scope must not
// contain NUL (tenant names never do: config refuses them).
std::string Key(std::string_view scope, std::string_view normalized_address);
bool SplitKey(std::string_view key, std::string_view* scope, std::string_view* address);

// Value: u8 version(1), u8 reason, varint created_us, varint expires_us,
// string category, string source (varint length + bytes).
std::string EncodeValue(const Entry& e);
// Fills everything but scope and address; false on a malformed value.
bool DecodeValue(std::string_view value, Entry* e);

}  // namespace mxr::suppression
