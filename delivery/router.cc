#include "delivery/router.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <unordered_map>

#include "common/strings.h"

namespace mxr::delivery {

std::string DomainOf(const std::string& addr) {
  size_t at = addr.rfind('@');
  std::string d = at == std::string::npos ? "" : addr.substr(at + 1);
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

void MakeJobs(ActiveMessage* m, int max_rcpts) {
  std::unordered_map<std::string, Job*> open;
  size_t cap = static_cast<size_t>(std::max(1, max_rcpts));
  for (size_t i = 0; i < m->meta.recipients.size(); ++i) {
    if (m->meta.recipients[i].state != queue::RcptState::kPending) continue;
    std::string d = DomainOf(m->meta.recipients[i].address);
    Job*& j = open[d];
    if (j == nullptr || j->rcpts.size() >= cap) {
      m->jobs.push_back(std::make_unique<Job>());
      j = m->jobs.back().get();
      j->msg = m;
      j->domain = d;
    }
    j->rcpts.push_back(i);
  }
  m->pending_jobs = static_cast<int>(m->jobs.size());
}

const RouteConfig* FindRoute(const std::vector<RouteConfig>& routes, const std::string& domain) {
  const RouteConfig* star = nullptr;
  for (const auto& r : routes) {
    if (r.domain == domain) return &r;
    if (r.domain == "*") star = &r;
  }
  return star;
}

SiteSettings SettingsFor(const DeliveryConfig& cfg, const RouteConfig* route) {
  SiteSettings s;
  s.port = cfg.port;
  s.tls = cfg.tls;
  s.max_conns = cfg.max_connections_per_site;
  if (route) {
    if (!route->host.empty() && route->port) s.port = route->port;
    if (route->tls_set) s.tls = route->tls;
    if (route->max_connections) {
      s.max_conns = route->max_connections;
      s.max_conns_set = true;
    }
    s.auth_user = route->auth_user;
    s.auth_password = route->auth_password;
    s.auth_over_unverified_tls = route->auth_over_unverified_tls;
  }
  return s;
}

SiteId IdentifySite(const std::vector<std::string>& hosts, const SiteSettings& s, const std::string& route_domain) {
  std::vector<std::string> sorted = hosts;
  std::sort(sorted.begin(), sorted.end());
  SiteId id;
  id.name = Cat(route_domain.empty() ? "mx:" : "route:", fmt::format("{}", fmt::join(sorted, ",")), ":", s.port);
  id.label = !route_domain.empty() ? Cat("route:", route_domain) : (sorted.empty() ? id.name : sorted.front());
  // The password enters the identity only as a hash: the identity is never
  // shown, but it must differ when the credentials do.
  if (s.sts) {  // its sessions are reported per policy domain (TLS-RPT)
    id.identity += Cat("|sts=", s.sts_domain, ":", StsModeName(s.sts->mode), ":", s.sts->id);
  }
  id.identity += Cat(id.name, "|tls=", TlsPolicyName(s.tls), "|conns=", s.max_conns, "|src=", s.source, "|rule=", s.rule, "|auth=", s.auth_user, s.auth_over_unverified_tls ? "+unverified" : "", "#",
                    std::hash<std::string>()(s.auth_password));
  return id;
}

}  // namespace mxr::delivery
