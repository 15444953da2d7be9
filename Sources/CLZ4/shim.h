#ifndef SWIFT_TXN_WAL_CLZ4_SHIM_H
#define SWIFT_TXN_WAL_CLZ4_SHIM_H
#include <lz4.h>
#endif
