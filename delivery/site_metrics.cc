#include "delivery/site_metrics.h"

#include <algorithm>

#include "common/strings.h"

namespace mxr::delivery {

void SiteMetrics::PinRoutes(const std::vector<RouteConfig>& routes) {
  for (auto& [label, c] : labelled_) c.pinned = false;  // re-pinned below
  for (const auto& r : routes) {
    if (!r.host.empty()) labelled_[Cat("route:", r.domain)].pinned = true;
  }
  unpinned_ = 0;
  for (const auto& [label, c] : labelled_) unpinned_ += c.pinned ? 0 : 1;
}

void SiteMetrics::Count(const std::string& label, Outcome o, int64_t now_ms) {
  if (label.empty()) return;
  auto it = labelled_.find(label);
  Counters* c = &other_;
  if (it == labelled_.end() && unpinned_ < cap_) {
    it = labelled_.emplace(label, Counters{}).first;  // a free slot: label it at once
    unpinned_++;
  }
  if (it != labelled_.end()) {
    c = &it->second;
  } else if (recent_.size() < 100000) {
    recent_[label]++;
  }
  c->attempts[o]++;
  c->last_active_ms = now_ms;
}

void SiteMetrics::Relabel(int64_t now_ms) {
  std::erase_if(labelled_, [now_ms](const auto& kv) {
    return !kv.second.pinned && now_ms - kv.second.last_active_ms > 3'600'000;
  });
  size_t unpinned = 0;
  for (const auto& [l, c] : labelled_) unpinned += c.pinned ? 0 : 1;
  unpinned_ = unpinned;
  if (unpinned < cap_ && !recent_.empty()) {
    std::vector<std::pair<uint64_t, std::string>> busy;
    busy.reserve(recent_.size());
    for (auto& [l, n] : recent_) busy.emplace_back(n, l);
    size_t take = std::min(cap_ - unpinned, busy.size());
    std::partial_sort(busy.begin(), busy.begin() + static_cast<std::ptrdiff_t>(take), busy.end(), std::greater<>());
    for (size_t i = 0; i < take; ++i) {
      Counters& c = labelled_[busy[i].second];  // a new series, counting from now
      c.last_active_ms = now_ms;
      unpinned_++;
    }
  }
  recent_.clear();
}

std::vector<SiteFigures> SiteMetrics::Figures(const std::vector<Live>& live) const {
  std::vector<SiteFigures> out;
  std::unordered_map<std::string, size_t> index;
  for (const auto& [l, c] : labelled_) {
    index[l] = out.size();
    SiteFigures f;
    f.label = l;
    f.attempts = c.attempts;
    out.push_back(std::move(f));
  }
  SiteFigures other;
  other.label = "other";
  other.attempts = other_.attempts;
  for (const Live& s : live) {
    auto it = index.find(s.label);
    SiteFigures& f = it == index.end() ? other : out[it->second];
    f.connections += s.connections;
    f.queued_jobs += s.queued_jobs;
    f.backed_off = f.backed_off || s.backed_off;
  }
  out.push_back(std::move(other));
  return out;
}

}  // namespace mxr::delivery
