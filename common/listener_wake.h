// Stopping a civetweb server without its poll timeout.
//
// civetweb's master thread sees a stop only when its poll() on the
// listening socket returns, after up to 2 s (SOCKET_TIMEOUT_QUANTUM in
// civetweb 1.15). A connection wakes the poll at once, so while `close`
// runs, a thread knocks on `address` (connect, close: the worker that may
// take it reads EOF) until `close` has returned. Bounded: 2 s. Used by the
// metrics exporter and the HTTP/admin APIs.
#pragma once

#include <functional>
#include <string>

namespace mxr {

// `address` as the server listens ("ip:port", "[v6]:port"); a wildcard
// listener is knocked on loopback.
void CloseWhileKnocking(const std::string& address, const std::function<void()>& close);

}  // namespace mxr
