// String helpers. Debian's abseil is built with its own absl::string_view
// (not std::string_view), so absl::StrCat does not take std::string_view;
// we concatenate with fmt instead, and teach fmt to print absl types.
//
//   std::string s = mxr::Cat("queued as ", id, " (", n, " bytes)");
//   spdlog::info("event=x error=\"{}\"", status);  // absl::Status prints
#pragma once

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

// absl::Status's message as a std::string_view.
inline std::string_view Msg(const absl::Status& s) {
  return std::string_view(s.message().data(), s.message().size());
}

}  // namespace mxr
