// CRC32C with the CPU's own instruction. The Swift side (PersistCodec.CRC32C) asks
// txnwal_crc32c_hw_available() once and otherwise keeps its portable table code.
//
// Two CPU families are supported, each behind its own preprocessor branch, and each
// compiled with a per-function target attribute so the rest of the program keeps the
// baseline instruction set:
//   - x86-64 with SSE4.2 (the `crc32` instruction, 8 bytes per step);
//   - little-endian AArch64 with the CRC extension (`crc32cx`, 8 bytes per step).
// Anything else compiles to "not available".

#include "ccrc32c.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define TXNWAL_CRC_X86 1
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__) \
    && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TXNWAL_CRC_ARM 1
#if defined(__linux__) && !defined(__ARM_FEATURE_CRC32)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1UL << 7) // the arm64 Linux ABI value, for older headers
#endif
#endif
#endif

#if defined(TXNWAL_CRC_X86) || defined(TXNWAL_CRC_ARM)

#if defined(TXNWAL_CRC_X86)
#define TXNWAL_CRC_TARGET __attribute__((target("sse4.2")))
#elif defined(__clang__)
#define TXNWAL_CRC_TARGET __attribute__((target("crc")))
#else
#define TXNWAL_CRC_TARGET __attribute__((target("+crc")))
#endif

// One instruction: the state after eight more bytes (given as a little-endian word).
static inline TXNWAL_CRC_TARGET uint32_t crc_word(uint32_t crc, uint64_t word) {
#if defined(TXNWAL_CRC_X86)
    return (uint32_t)__builtin_ia32_crc32di(crc, word);
#elif defined(__clang__)
    return __builtin_arm_crc32cd(crc, word);
#else
    return __builtin_aarch64_crc32cx(crc, word);
#endif
}

// One instruction: the state after one more byte.
static inline TXNWAL_CRC_TARGET uint32_t crc_byte(uint32_t crc, uint8_t byte) {
#if defined(TXNWAL_CRC_X86)
    return __builtin_ia32_crc32qi(crc, byte);
#elif defined(__clang__)
    return __builtin_arm_crc32cb(crc, byte);
#else
    return __builtin_aarch64_crc32cb(crc, byte);
#endif
}

// An unaligned-safe 8-byte load; both supported targets are little-endian, which is the
// byte order the instructions expect.
static inline uint64_t load_word(const unsigned char *p) {
    uint64_t word;
    __builtin_memcpy(&word, p, sizeof word);
    return word;
}

// The reflected Castagnoli polynomial; in this representation bit 31 is the coefficient
// of x^0 and bit 0 that of x^31.
#define TXNWAL_CRC_POLY 0x82F63B78u

// a * b modulo the polynomial, both in the reflected representation. The register
// update is linear, so the state after `n` more zero bytes is state * x^(8n); this is
// how the independently computed streams below are stitched back together.
static inline uint32_t multiply_mod_poly(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int degree = 0; degree < 32; degree++) {
        // Bit (31 - degree) of `a` says whether b * x^degree belongs in the product;
        // masks instead of branches, since these bits are data.
        product ^= b & (0u - ((a >> (31 - degree)) & 1u));
        b = (b >> 1) ^ (TXNWAL_CRC_POLY & (0u - (b & 1u)));
    }
    return product;
}

// The instruction has a latency of about three cycles but can start one per cycle, so a
// single dependent chain leaves most of it idle. For long inputs three chains run over
// three adjacent blocks at once and are then combined: with
//     crc(s, A B C) = crc(s, A) * x^(8(|B|+|C|)) ^ crc(0, B) * x^(8|C|) ^ crc(0, C)
// and |A| = |B| = |C| = `block`. `shift1` is x^(8 block) mod P and `shift2` is
// x^(16 block) mod P (the tests check every block size against the table code).
// The two multiplications cost about as much as a few hundred bytes of single-chain
// work, so blocks must be well above that.
#define TXNWAL_LONG_BLOCK 8192
#define TXNWAL_LONG_SHIFT1 0x28461564u
#define TXNWAL_LONG_SHIFT2 0xBF455269u
#define TXNWAL_SHORT_BLOCK 1024
#define TXNWAL_SHORT_SHIFT1 0xE4172B16u
#define TXNWAL_SHORT_SHIFT2 0x0D65762Au

static inline TXNWAL_CRC_TARGET uint32_t crc_three_blocks(
    uint32_t crc, const unsigned char *p, size_t block, uint32_t shift1, uint32_t shift2) {
    uint32_t a = crc, b = 0, c = 0;
    for (size_t i = 0; i < block; i += 8) {
        a = crc_word(a, load_word(p + i));
        b = crc_word(b, load_word(p + block + i));
        c = crc_word(c, load_word(p + 2 * block + i));
    }
    return multiply_mod_poly(a, shift2) ^ multiply_mod_poly(b, shift1) ^ c;
}

TXNWAL_CRC_TARGET
uint32_t txnwal_crc32c_update(uint32_t state, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t crc = state;
    // Single bytes up to an 8-byte boundary, so the word loads do not straddle cache
    // lines (they would be correct either way).
    while (length > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = crc_byte(crc, *p);
        p++;
        length--;
    }
    while (length >= 3 * (size_t)TXNWAL_LONG_BLOCK) {
        crc = crc_three_blocks(crc, p, TXNWAL_LONG_BLOCK, TXNWAL_LONG_SHIFT1, TXNWAL_LONG_SHIFT2);
        p += 3 * TXNWAL_LONG_BLOCK;
        length -= 3 * (size_t)TXNWAL_LONG_BLOCK;
    }
    while (length >= 3 * (size_t)TXNWAL_SHORT_BLOCK) {
        crc = crc_three_blocks(crc, p, TXNWAL_SHORT_BLOCK, TXNWAL_SHORT_SHIFT1, TXNWAL_SHORT_SHIFT2);
        p += 3 * TXNWAL_SHORT_BLOCK;
        length -= 3 * (size_t)TXNWAL_SHORT_BLOCK;
    }
    while (length >= 8) {
        crc = crc_word(crc, load_word(p));
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = crc_byte(crc, *p);
        p++;
        length--;
    }
    return crc;
}

int txnwal_crc32c_hw_available(void) {
#if defined(TXNWAL_CRC_X86)
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#elif defined(__ARM_FEATURE_CRC32)
    return 1; // the compiler was told every target CPU has it (e.g. Apple silicon)
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0 ? 1 : 0;
#else
    return 0; // no portable way to ask on this system; the table code is used
#endif
}

#else // no CRC instruction known for this target

uint32_t txnwal_crc32c_update(uint32_t state, const void *data, size_t length) {
    (void)data;
    (void)length;
    return state;
}

int txnwal_crc32c_hw_available(void) { return 0; }

#endif
