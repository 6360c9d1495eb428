// String helpers. Debian's abseil is built with its own absl::string_view
// (not std::string_view), so absl::StrCat does not take std::string_view;
// we concatenate with fmt instead, and teach fmt to print absl types.
//
//   std::string s = mxr::Cat("queued as ", id, " (", n, " bytes)");
//   spdlog::info("event=x error=\"{}\"", status);  // absl::Status prints
#pragma once

#include <string.h>
#include <time.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "fmt/format.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(s.ToString(), ctx);
  }
};

namespace mxr {

template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  (fmt::format_to(std::back_inserter(out), "{}", args), ...);
  return out;
}

// ASCII case-insensitive comparison (SMTP verbs, keywords, header names).
inline bool AsciiIEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x -= 32;
    if (y >= 'a' && y <= 'z') y -= 32;
    if (x != y) return false;
  }
  return true;
}

inline bool AsciiIStartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && AsciiIEquals(s.substr(0, prefix.size()), prefix);
}

// A UTC time formatted with strftime(3), to the second.
inline std::string FormatUtc(int64_t unix_us, const char* format) {
  time_t t = static_cast<time_t>(unix_us / 1'000'000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// RFC 5322 date-time in UTC, e.g. "Sun, 22 Nov 2026 00:30:24 +0000".
inline std::string Rfc5322Date(int64_t unix_us) { return FormatUtc(unix_us, "%a, %d %b %Y %H:%M:%S +0000"); }

// ISO 8601 / RFC 3339 in UTC, e.g. "2026-11-22T00:30:24Z".
inline std::string IsoTimeUtc(int64_t unix_us) { return FormatUtc(unix_us, "%Y-%m-%dT%H:%M:%SZ"); }

// Overwrites every byte `s` owns (its whole capacity, so also a password a
// move left behind in the small-string buffer) and empties it. For secrets:
// explicit_bzero is never optimised away.
inline void WipeString(std::string& s) {
  s.resize(s.capacity());
  explicit_bzero(s.data(), s.size());
  s.clear();
}

// absl::Status's message as a std::string_view.
inline std::string_view Msg(const absl::Status& s) {
  return std::string_view(s.message().data(), s.message().size());
}

}  // namespace mxr
