// IP warm-up: a new source sends at most schedule[N-1] messages (jobs: one
// message to one destination domain) on day N of its warm-up, days counted
// in UTC from `warmup_start`; past the schedule's end it is unlimited. The
// day advances by itself with the clock.
//
// Today's count is kept in memory: a restart forgets what was sent earlier
// the same day (it can at most double that day's volume). Pure, delivery
// loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mxr::delivery {

class Warmup {
 public:
  Warmup() = default;  // no warm-up: never capped
  // `start`: "YYYY-MM-DD" (UTC).
  static absl::StatusOr<Warmup> Make(const std::string& start, std::vector<int64_t> schedule);

  bool active(int64_t now_us) const { return !schedule_.empty() && Day(now_us) <= static_cast<int64_t>(schedule_.size()); }
  // Day of the warm-up at now_us (1 = the start date; before it also 1).
  int64_t Day(int64_t now_us) const;
  // Today's cap (-1 = none).
  int64_t Cap(int64_t now_us) const;
  // Messages counted today.
  int64_t SentToday(int64_t now_us) const { return DayIndex(now_us) == count_day_ ? count_ : 0; }
  // Whether one more may go today; if so it is counted.
  bool TryTake(int64_t now_us);
  // Start of the next UTC day (when a capped source may send again).
  static int64_t NextDayUs(int64_t now_us);

 private:
  int64_t DayIndex(int64_t now_us) const { return now_us / 86'400'000'000LL; }  // days since the epoch
  int64_t start_day_ = 0;  // days since the epoch
  std::vector<int64_t> schedule_;
  int64_t count_day_ = -1, count_ = 0;
};

}  // namespace mxr::delivery
