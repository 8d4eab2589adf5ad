/* SPDX-License-Identifier: MIT */
/*
 * vhu-bench's data-plane scenarios (blk-randread, blk-randwrite, blk-seq):
 * the userspace vhost-user-blk driver (<vhu/blkdrv.h>) against outside
 * back-ends given with --connect. A run whose --scenario names only blk-*
 * scenarios is handled here, with its own options (see bench/README.md).
 */
#ifndef VHU_BENCH_BLK_BENCH_H
#define VHU_BENCH_BLK_BENCH_H

#include <stdbool.h>

/** True if argv asks for blk-* scenarios (then bench_blk_main() runs the whole thing). */
bool bench_blk_wanted(int argc, char **argv);

/** Run the blk scenarios; \return the exit status (0 ok, 1 a failure, 2 usage). */
int bench_blk_main(int argc, char **argv);

#endif
