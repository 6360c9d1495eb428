#include "delivery/rate_limiter.h"

#include <algorithm>
#include <cctype>

#include "common/strings.h"

namespace mxr::delivery {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Seconds in one unit ("s", "min", "hours"...), 0 if unknown.
int64_t UnitSeconds(std::string_view u) {
  std::string l;
  for (char c : u) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "s" || l == "sec" || l == "secs" || l == "second" || l == "seconds") return 1;
  if (l == "m" || l == "min" || l == "mins" || l == "minute" || l == "minutes") return 60;
  if (l == "h" || l == "hr" || l == "hrs" || l == "hour" || l == "hours") return 3600;
  if (l == "d" || l == "day" || l == "days") return 86400;
  return 0;
}

bool ParsePositive(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 15) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string RateSpec::ToString() const {
  if (!limited()) return "unlimited";
  const char* unit = "s";
  int64_t secs = period_us / 1'000'000;
  if (secs == 60) unit = "min";
  if (secs == 3600) unit = "h";
  if (secs == 86400) unit = "d";
  return Cat(quantity, "/", unit);
}

absl::StatusOr<RateSpec> ParseRate(std::string_view text) {
  text = Trim(text);
  if (text.empty() || text == "unlimited") return RateSpec{};
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return absl::InvalidArgumentError(Cat("rate '", text, "': expected N/unit"));
  int64_t q = 0;
  if (!ParsePositive(Trim(text.substr(0, slash)), &q) || q == 0) {
    return absl::InvalidArgumentError(Cat("rate '", text, "': the quantity must be a positive integer"));
  }
  int64_t secs = UnitSeconds(Trim(text.substr(slash + 1)));
  if (secs == 0) return absl::InvalidArgumentError(Cat("rate '", text, "': unit must be s, min, h or d"));
  return RateSpec{q, secs * 1'000'000};
}

absl::StatusOr<int64_t> ParseDurationSeconds(std::string_view text) {
  text = Trim(text);
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  int64_t n = 0;
  if (!ParsePositive(text.substr(0, i), &n)) {
    return absl::InvalidArgumentError(Cat("duration '", text, "': expected a number and a unit (90s, 30m, 2h, 1d)"));
  }
  std::string_view unit = Trim(text.substr(i));
  int64_t secs = unit.empty() ? 1 : UnitSeconds(unit);
  if (secs == 0) return absl::InvalidArgumentError(Cat("duration '", text, "': unit must be s, m, h or d"));
  return n * secs;
}

void Gcra::Configure(RateSpec spec, int64_t burst) {
  interval_us_ = spec.interval_us();
  tolerance_us_ = interval_us_ * std::max<int64_t>(0, burst - 1);
}

int64_t Gcra::WaitUs(int64_t now_us) const {
  if (interval_us_ <= 0) return 0;
  // Allowed when now >= TAT - tau.
  int64_t allow_at = tat_us_ - tolerance_us_;
  return now_us >= allow_at ? 0 : allow_at - now_us;
}

int64_t Gcra::Take(int64_t now_us) {
  int64_t wait = WaitUs(now_us);
  if (wait > 0 || interval_us_ <= 0) return wait;
  tat_us_ = std::max(tat_us_, now_us) + interval_us_;
  return 0;
}

}  // namespace mxr::delivery
