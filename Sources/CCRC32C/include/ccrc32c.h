#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU has a CRC32C instruction that `txnwal_crc32c_update` can use
/// (SSE4.2 on x86-64, the CRC extension on AArch64), otherwise 0. Cheap enough to call
/// once at start-up; the answer never changes while the process runs.
int txnwal_crc32c_hw_available(void);

/// Feeds `length` bytes at `data` into a running CRC32C (Castagnoli) state and returns
/// the new state. The state is the raw register: start from 0xFFFFFFFF and invert the
/// final state to get the checksum, so chained calls over consecutive pieces give the
/// same state as one call over all of them. `data` may be NULL when `length` is 0, and
/// needs no particular alignment.
///
/// Call it only after `txnwal_crc32c_hw_available()` returned 1: it executes the CPU's
/// CRC instruction unconditionally. Where no such instruction is known to this file it
/// returns `state` unchanged and must not be relied on.
uint32_t txnwal_crc32c_update(uint32_t state, const void *data, size_t length);

#ifdef __cplusplus
}
#endif

#endif
