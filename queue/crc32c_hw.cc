// Hardware CRC32C for RocksDB's WAL (see crc32c_hw.h).
//
// Debian's librocksdb 7.8 is built PORTABLE, without SSE4.2, so its
// rocksdb::crc32c::Extend runs the table-driven Slow_CRC32 loop: 13% of the
// relay's CPU at 100 KB messages (every WAL record is checksummed). The link
// option --wrap=_ZN7rocksdb6crc32c6ExtendEjPKcm (queue/CMakeLists.txt) sends
// every call to Extend from the library's objects (log writer, block
// builder, ...) here; on a CPU with SSE4.2 we compute the same CRC with the
// crc32 instruction, else we call the library's own (__real_).
#include "queue/crc32c_hw.h"

#include <atomic>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

extern "C" uint32_t __real__ZN7rocksdb6crc32c6ExtendEjPKcm(uint32_t crc, const char* data, size_t n);

namespace mxr::queue {
namespace {

#if defined(__x86_64__)
bool CpuHasSse42() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  return (c & bit_SSE4_2) != 0;
}

// Three independent crc32 streams would go faster still; one stream already
// moves ~8 bytes per 3 cycles, several times the table loop.
__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const char* p, size_t n) {
  uint64_t c = ~crc;
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), static_cast<uint8_t>(*p++));
    --n;
  }
  while (n >= 32) {
    uint64_t w[4];
    std::memcpy(w, p, sizeof w);
    c = _mm_crc32_u64(c, w[0]);
    c = _mm_crc32_u64(c, w[1]);
    c = _mm_crc32_u64(c, w[2]);
    c = _mm_crc32_u64(c, w[3]);
    p += 32;
    n -= 32;
  }
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof w);
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), static_cast<uint8_t>(*p++));
    --n;
  }
  return ~static_cast<uint32_t>(c);
}
#endif

const bool kHardware =
#if defined(__x86_64__)
    CpuHasSse42();
#else
    false;
#endif

std::atomic<uint64_t> wrapped_calls{0};

}  // namespace

bool Crc32cHardware() { return kHardware; }
uint64_t Crc32cWrappedCalls() { return wrapped_calls.load(std::memory_order_relaxed); }

uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t n) {
#if defined(__x86_64__)
  if (kHardware) return ExtendSse42(crc, data, n);
#endif
  return __real__ZN7rocksdb6crc32c6ExtendEjPKcm(crc, data, n);
}

uint32_t Crc32cExtendLibrary(uint32_t crc, const char* data, size_t n) {
  return __real__ZN7rocksdb6crc32c6ExtendEjPKcm(crc, data, n);
}

}  // namespace mxr::queue

extern "C" uint32_t __wrap__ZN7rocksdb6crc32c6ExtendEjPKcm(uint32_t crc, const char* data, size_t n) {
  mxr::queue::wrapped_calls.fetch_add(1, std::memory_order_relaxed);
  return mxr::queue::Crc32cExtend(crc, data, n);
}
