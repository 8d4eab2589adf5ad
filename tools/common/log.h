/* SPDX-License-Identifier: MIT */
/*
 * The serving tools' log (vhu-backend, vhu-blk): one line per event on
 * stderr, "NAME: " first, and never blocking the ring: lines wait in a
 * bounded buffer while stderr is full, and are dropped and counted when
 * that is full too (the count is logged with the next line that fits).
 */
#ifndef VHU_TOOLS_LOG_H
#define VHU_TOOLS_LOG_H

#include <stdbool.h>

/* Prefix lines with "name: "; quiet silences tool_log_info (errors are always printed). */
void tool_log_init(const char *name, bool quiet);

/* An informational line (listening, accepted, closed). */
void tool_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A line about a fault: always printed. */
void tool_log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write what is pending to stderr as far as it has room, without waiting. */
void tool_log_flush(void);

/* At exit: wait up to timeout_ms for room for each pending write. */
void tool_log_drain(int timeout_ms);

#endif
