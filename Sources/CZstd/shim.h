#ifndef SWIFT_TXN_WAL_CZSTD_SHIM_H
#define SWIFT_TXN_WAL_CZSTD_SHIM_H
#include <zstd.h>
#endif
