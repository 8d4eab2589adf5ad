/* SPDX-License-Identifier: MIT */
/*
 * vhu-backend's log: one line per event on stderr, "vhu-backend: " first.
 */
#ifndef VHU_BACKEND_LOG_H
#define VHU_BACKEND_LOG_H

#include <stdbool.h>

/* Silence be_log_info (--quiet). Errors are always printed. */
void be_log_set_quiet(bool quiet);

/* An informational line (listening, accepted, closed). */
void be_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A line about a fault: always printed. */
void be_log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write what is pending to stderr as far as it has room, without waiting. */
void be_log_flush(void);

/* At exit: wait up to timeout_ms for room for each pending write. */
void be_log_drain(int timeout_ms);

#endif
