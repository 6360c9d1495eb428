// Where delivery may connect. Checked for every address a destination host
// resolves to (after DNS, /etc/hosts or an MX written as an IP), before any
// connection is opened:
//   - a loop: the address and port are one of our own listeners (a listener
//     on 0.0.0.0 / :: is every local address): 554 5.4.6 "mail loops back to
//     myself" (Postfix bounces the same way);
//   - delivery.deny_networks: 554 5.4.4 naming the network.
// Both are permanent: the recipients bounce with a DSN that says why.
//
// Built once by the engine (its inputs are the configuration and the
// machine's addresses at start); const afterwards, any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/net.h"

namespace mxr::delivery {

struct Refusal {
  int code = 554;
  std::string enhanced;  // "5.4.6" (loop) or "5.4.4" (denied network)
  std::string text;
  std::string reason;    // "loop" or "deny_networks", for logs
};

class DestinationGuard {
 public:
  struct Listener {
    IpAddress address;
    bool any = false;  // 0.0.0.0 or ::
    uint16_t port = 0;
  };
  DestinationGuard(std::vector<Cidr> deny, std::vector<Listener> listeners, std::vector<IpAddress> local_addresses);

  // From the configuration; local addresses from getifaddrs(3) plus loopback.
  static DestinationGuard FromConfig(const Config& cfg);

  // Why delivery must not connect to ip:port (for MX host `host`), if it must not.
  std::optional<Refusal> Check(const IpAddress& ip, uint16_t port, const std::string& host) const;

 private:
  bool IsLocal(const IpAddress& ip) const;
  std::vector<Cidr> deny_;
  std::vector<Listener> listeners_;
  std::vector<IpAddress> local_;
};

}  // namespace mxr::delivery
