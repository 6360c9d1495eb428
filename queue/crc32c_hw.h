// CRC32C (Castagnoli) for RocksDB, in hardware where the CPU has SSE4.2.
//
// Every executable that links mxrelay_queue links with
// --wrap=_ZN7rocksdb6crc32c6ExtendEjPKcm, so RocksDB's own
// rocksdb::crc32c::Extend (a table loop in Debian's PORTABLE build) is
// replaced by Crc32cExtend. Same function, same results: the WAL and SST
// files stay readable by any RocksDB.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mxr::queue {

// Whether Crc32cExtend uses the crc32 instruction (else RocksDB's code).
bool Crc32cHardware();
// The CRC32C of A + data[0, n) given crc = CRC32C of A (RocksDB's Extend).
uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t n);
// How many times RocksDB called its Extend (i.e. ours): proves the wrap.
uint64_t Crc32cWrappedCalls();
// RocksDB's own implementation, unwrapped (for tests and comparisons).
uint32_t Crc32cExtendLibrary(uint32_t crc, const char* data, size_t n);

}  // namespace mxr::queue
