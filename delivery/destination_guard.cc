#include "delivery/destination_guard.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include "common/strings.h"

namespace mxr::delivery {

DestinationGuard::DestinationGuard(std::vector<Cidr> deny, std::vector<Listener> listeners,
                                   std::vector<IpAddress> local_addresses)
    : deny_(std::move(deny)), listeners_(std::move(listeners)), local_(std::move(local_addresses)) {}

DestinationGuard DestinationGuard::FromConfig(const Config& cfg) {
  std::vector<Listener> ls;
  for (const auto& l : cfg.listeners) {
    auto ip = IpAddress::Parse(l.address);
    if (!ip.ok()) continue;
    Listener x;
    x.address = *ip;
    x.any = l.address == "0.0.0.0" || l.address == "::";
    x.port = l.port;
    ls.push_back(x);
  }
  std::vector<IpAddress> local;
  ifaddrs* ifa = nullptr;
  if (::getifaddrs(&ifa) == 0) {
    for (ifaddrs* p = ifa; p != nullptr; p = p->ifa_next) {
      if (p->ifa_addr == nullptr) continue;
      int fam = p->ifa_addr->sa_family;
      if (fam != AF_INET && fam != AF_INET6) continue;
      local.push_back(IpAddress::FromSockaddr(p->ifa_addr));
    }
    ::freeifaddrs(ifa);
  }
  return DestinationGuard(cfg.delivery.deny_networks, std::move(ls), std::move(local));
}

bool DestinationGuard::IsLocal(const IpAddress& ip) const {
  static const Cidr kLoop4 = *Cidr::Parse("127.0.0.0/8");
  static const Cidr kLoop6 = *Cidr::Parse("::1/128");
  if (kLoop4.Contains(ip) || kLoop6.Contains(ip)) return true;
  for (const auto& a : local_) {
    if (a == ip) return true;
  }
  return false;
}

std::optional<Refusal> DestinationGuard::Check(const IpAddress& ip, uint16_t port, const std::string& host) const {
  for (const auto& l : listeners_) {
    if (l.port != port) continue;
    if (l.address == ip || (l.any && IsLocal(ip))) {
      return Refusal{554, "5.4.6",
                     Cat("Mail for ", host, " loops back to myself: ", ip.ToString(), ":", port,
                         " is one of this relay's own listeners"),
                     "loop"};
    }
  }
  for (const auto& n : deny_) {
    if (n.Contains(ip)) {
      return Refusal{554, "5.4.4",
                     Cat("Refusing to deliver to ", host, " [", ip.ToString(), "]: ", n.ToString(),
                         " is in delivery.deny_networks"),
                     "deny_networks"};
    }
  }
  return std::nullopt;
}

}  // namespace mxr::delivery
