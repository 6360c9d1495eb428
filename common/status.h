// Small helpers around absl::Status (Debian's abseil 20220623 predates
// absl's own RETURN_IF_ERROR / ASSIGN_OR_RETURN).
//
//   absl::StatusOr<Foo> MakeFoo();
//   absl::Status Use() {
//     MXR_ASSIGN_OR_RETURN(Foo foo, MakeFoo());
//     MXR_RETURN_IF_ERROR(foo.Check());
//     return absl::OkStatus();
//   }
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MXR_RETURN_IF_ERROR(expr)           \
  do {                                      \
    ::absl::Status mxr_status_ = (expr);    \
    if (!mxr_status_.ok()) return mxr_status_; \
  } while (0)

#define MXR_CONCAT_INNER_(a, b) a##b
#define MXR_CONCAT_(a, b) MXR_CONCAT_INNER_(a, b)
#define MXR_ASSIGN_OR_RETURN(lhs, expr) \
  MXR_ASSIGN_OR_RETURN_IMPL_(MXR_CONCAT_(mxr_statusor_, __LINE__), lhs, expr)
#define MXR_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()
