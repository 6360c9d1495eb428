// Per-site metrics with a bounded number of label values: every configured
// route keeps its label ("route:<domain>"); of the other sites, the busiest
// `site_labels` have their own (re-chosen every minute from the last
// minute's attempts, a label idle for an hour is given back); the rest is
// summed as "other". Keeps Prometheus' series count bounded however many
// domains mail goes to.
//
// Delivery loop thread only; Publish() hands a snapshot to DeliveryStats.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/config.h"
#include "delivery/stats.h"

namespace mxr::delivery {

class SiteMetrics {
 public:
  explicit SiteMetrics(int site_labels) : cap_(static_cast<size_t>(std::max(0, site_labels))) {}

  // The routes changed: their labels are pinned (never given back).
  void PinRoutes(const std::vector<RouteConfig>& routes);
  // One recipient attempt at the site labelled `label` ("" = before any
  // site, e.g. DNS: not counted per site).
  void Count(const std::string& label, Outcome o, int64_t now_ms);
  // Every minute: give back idle labels, label the busiest unlabelled sites.
  void Relabel(int64_t now_ms);

  struct Live {  // a site's live figures, for the snapshot
    std::string label;
    int64_t connections = 0;
    int64_t queued_jobs = 0;
    bool backed_off = false;
  };
  // Labelled sites' figures then "other" (live figures summed per label).
  std::vector<SiteFigures> Figures(const std::vector<Live>& live) const;

  bool Labelled(const std::string& label) const { return labelled_.count(label) > 0; }
  size_t unpinned() const { return unpinned_; }

 private:
  struct Counters {
    OutcomeCounts attempts;
    int64_t last_active_ms = 0;
    bool pinned = false;  // a configured route: never gives its label back
  };
  size_t cap_;
  std::unordered_map<std::string, Counters> labelled_;
  Counters other_;
  std::unordered_map<std::string, uint64_t> recent_;  // unlabelled: attempts this minute
  size_t unpinned_ = 0;  // labelled_ entries that are not routes
};

}  // namespace mxr::delivery
