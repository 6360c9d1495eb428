// The router: which jobs a message makes and where each job goes (Postfix's
// qmgr_message_resolve + qmgr_transport). Pure functions of the message,
// the routes and the configuration; the MX lookup itself is the resolver's.
//
//   MakeJobs(msg, max_rcpts)        pending recipients -> one job per domain (chunked)
//   FindRoute(routes, domain)       exact domain, else "*", else none (MX)
//   SettingsFor(cfg, route)         port, TLS policy, AUTH, connection limit
//   IdentifySite(...)               the site's identity, display name and metrics label
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "delivery/message.h"
#include "delivery/site.h"

namespace mxr::delivery {

// The lower-cased domain of an address ("" if it has no '@').
std::string DomainOf(const std::string& address);

// Groups the pending recipients of `m` by domain into jobs of at most
// `max_rcpts` recipients each (in recipient order). Sets m->jobs and
// m->pending_jobs.
void MakeJobs(ActiveMessage* m, int max_rcpts);

const RouteConfig* FindRoute(const std::vector<RouteConfig>& routes, const std::string& domain);

// The delivery settings for mail to a domain with `route` (nullptr: none).
SiteSettings SettingsFor(const DeliveryConfig& cfg, const RouteConfig* route);

struct SiteId {
  std::string identity;  // the sites map key: destination + every setting
  std::string name;      // "route:host:port" / "mx:h1,h2:port" (logs, event log)
  std::string label;     // metrics: "route:<domain>" or the first MX host name
};

// `hosts`: the route's host, or the MX hosts of a lookup (any order).
// `route_domain`: the route's domain when the site is a static route, else "".
SiteId IdentifySite(const std::vector<std::string>& hosts, const SiteSettings& s, const std::string& route_domain);

}  // namespace mxr::delivery
