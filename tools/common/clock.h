/* SPDX-License-Identifier: MIT */
/* The monotonic clock the tools and the bench harness time things with. */
#ifndef VHU_TOOLS_CLOCK_H
#define VHU_TOOLS_CLOCK_H

#include <stdint.h>
#include <time.h>

/** CLOCK_MONOTONIC in nanoseconds (from an arbitrary start). */
int64_t tool_now_ns(void);

/** Any clock (CLOCK_THREAD_CPUTIME_ID, ...) in nanoseconds; 0 if it cannot be read. */
int64_t tool_clock_ns(clockid_t clock);

#endif
