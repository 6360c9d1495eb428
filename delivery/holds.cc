#include "delivery/holds.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/strings.h"

namespace mxr::delivery {
namespace {

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) {
    if (c >= 'A' && c <= 'Z') c += 32;
  }
  return o;
}

bool Active(const HoldRule& r, int64_t now) { return r.until_us == 0 || r.until_us > now; }

}  // namespace

const char* HoldKindName(HoldKind k) {
  switch (k) {
    case HoldKind::kDomain: return "domain";
    case HoldKind::kSite: return "site";
    case HoldKind::kTenant: return "tenant";
    case HoldKind::kCampaign: return "campaign";
    case HoldKind::kMessage: return "message";
  }
  return "?";
}

std::optional<HoldKind> ParseHoldKind(std::string_view s) {
  for (HoldKind k : {HoldKind::kDomain, HoldKind::kSite, HoldKind::kTenant, HoldKind::kCampaign, HoldKind::kMessage}) {
    if (s == HoldKindName(k)) return k;
  }
  return std::nullopt;
}

absl::Status Holds::Load(int64_t now_us) {
  std::lock_guard<std::mutex> l(mu_);
  rules_.clear();
  if (path_.empty()) return absl::OkStatus();
  std::ifstream f(path_);
  if (!f) return absl::OkStatus();  // none yet
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> parts;
    std::stringstream ss(line);
    std::string p;
    while (std::getline(ss, p, '\t')) parts.push_back(p);
    auto kind = parts.size() == 4 ? ParseHoldKind(parts[0]) : std::nullopt;
    if (!kind) return absl::DataLossError(Cat(path_, ":", n, ": not a hold rule"));
    HoldRule r{*kind, parts[1], std::strtoll(parts[2].c_str(), nullptr, 10), std::strtoll(parts[3].c_str(), nullptr, 10)};
    if (Active(r, now_us)) rules_.push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status Holds::SaveLocked() const {
  if (path_.empty()) return absl::OkStatus();
  std::string text = "# mxrelay admin holds: kind<TAB>value<TAB>until_us (0 = until resumed)<TAB>created_us\n";
  for (const auto& r : rules_) text += Cat(HoldKindName(r.kind), "\t", r.value, "\t", r.until_us, "\t", r.created_us, "\n");
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(Cat("cannot write ", tmp, ": ", strerror(errno)));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    return absl::InternalError(Cat("cannot write ", path_, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status Holds::Add(HoldRule r) {
  if (r.kind == HoldKind::kDomain || r.kind == HoldKind::kSite) r.value = Lower(r.value);
  std::lock_guard<std::mutex> l(mu_);
  auto it = std::find_if(rules_.begin(), rules_.end(),
                         [&](const HoldRule& x) { return x.kind == r.kind && x.value == r.value; });
  if (it != rules_.end()) {
    *it = std::move(r);
  } else {
    rules_.push_back(std::move(r));
  }
  return SaveLocked();
}

absl::StatusOr<bool> Holds::Remove(HoldKind kind, std::string_view value) {
  std::string v = kind == HoldKind::kDomain || kind == HoldKind::kSite ? Lower(value) : std::string(value);
  std::lock_guard<std::mutex> l(mu_);
  size_t before = rules_.size();
  std::erase_if(rules_, [&](const HoldRule& x) { return x.kind == kind && x.value == v; });
  if (rules_.size() == before) return false;
  auto st = SaveLocked();
  if (!st.ok()) return st;
  return true;
}

std::vector<HoldRule> Holds::List(int64_t now_us) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<HoldRule> out;
  for (const auto& r : rules_) {
    if (Active(r, now_us)) out.push_back(r);
  }
  return out;
}

bool Holds::empty() const {
  std::lock_guard<std::mutex> l(mu_);
  return rules_.empty();
}

std::optional<Holds::Match> Holds::Find(HoldKind k, std::string_view v, int64_t now_us) const {
  if (v.empty()) return std::nullopt;
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& r : rules_) {
    if (r.kind != k || r.value != v || !Active(r, now_us)) continue;
    int64_t recheck = now_us + kRecheckUs;
    return Match{r, r.until_us == 0 ? recheck : std::min(r.until_us, recheck)};
  }
  return std::nullopt;
}

std::optional<Holds::Match> Holds::ForMessage(const queue::MessageMeta& m, int64_t now_us) const {
  if (empty()) return std::nullopt;
  if (auto x = Find(HoldKind::kMessage, m.id.ToString(), now_us)) return x;
  if (auto x = Find(HoldKind::kTenant, m.tenant, now_us)) return x;
  return Find(HoldKind::kCampaign, m.campaign, now_us);
}

std::optional<Holds::Match> Holds::ForDomain(std::string_view domain, int64_t now_us) const {
  if (empty()) return std::nullopt;
  return Find(HoldKind::kDomain, Lower(domain), now_us);
}

std::optional<Holds::Match> Holds::ForSite(std::string_view site, int64_t now_us) const {
  if (empty()) return std::nullopt;
  return Find(HoldKind::kSite, Lower(site), now_us);
}

}  // namespace mxr::delivery
