#include "delivery/warmup.h"

#include <ctime>

#include "common/strings.h"

namespace mxr::delivery {

absl::StatusOr<Warmup> Warmup::Make(const std::string& start, std::vector<int64_t> schedule) {
  Warmup w;
  if (schedule.empty()) return w;
  struct tm t {};
  const char* end = strptime(start.c_str(), "%Y-%m-%d", &t);
  if (end == nullptr || *end != '\0') return absl::InvalidArgumentError(Cat("warmup_start '", start, "': expected YYYY-MM-DD"));
  w.start_day_ = static_cast<int64_t>(timegm(&t)) / 86400;
  w.schedule_ = std::move(schedule);
  return w;
}

int64_t Warmup::Day(int64_t now_us) const {
  int64_t d = DayIndex(now_us) - start_day_ + 1;
  return d < 1 ? 1 : d;
}

int64_t Warmup::Cap(int64_t now_us) const {
  if (!active(now_us)) return -1;
  return schedule_[static_cast<size_t>(Day(now_us) - 1)];
}

bool Warmup::TryTake(int64_t now_us) {
  int64_t cap = Cap(now_us);
  int64_t day = DayIndex(now_us);
  if (day != count_day_) {
    count_day_ = day;
    count_ = 0;
  }
  if (cap >= 0 && count_ >= cap) return false;
  count_++;
  return true;
}

int64_t Warmup::NextDayUs(int64_t now_us) { return (now_us / 86'400'000'000LL + 1) * 86'400'000'000LL; }

}  // namespace mxr::delivery
