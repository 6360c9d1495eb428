// Names the calling thread (what top -H, ps -L, perf and gdb show):
// "mxr-ingress-0", "mxr-commit", "mxr-delivery", "mxr-auth", ...
// Linux limits names to 15 bytes; longer names are cut.
#pragma once

#include <pthread.h>

#include <string>

namespace mxr {

inline void SetThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace mxr
