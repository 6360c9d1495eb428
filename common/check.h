// Invariant checks that cost nothing in release builds.
//
//   MXR_DCHECK(job->site == nullptr, "a job on two sites");
//
// On when MXRELAY_DCHECK is defined: Debug builds and both sanitizer stages
// (ASan/UBSan, TSan) of scripts/test.sh. A failed check prints the
// condition, the place and the message to stderr and aborts, so the
// sanitizer stage's test fails. Off in release builds (the condition is not
// evaluated). Use it for invariants of our own code, never for input checks.
#pragma once

#include <cstdio>
#include <cstdlib>

#if defined(MXRELAY_DCHECK)
#define MXR_DCHECK(cond, msg)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "DCHECK failed: %s at %s:%d: %s\n", #cond, __FILE__, __LINE__, \
                   (msg));                                                                 \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)
#define MXR_DCHECK_IS_ON 1
#else
#define MXR_DCHECK(cond, msg) \
  do {                        \
    (void)sizeof(cond);       \
  } while (0)
#define MXR_DCHECK_IS_ON 0
#endif
