/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets share: the invariant check that turns a broken
 * promise into a crash libFuzzer records, and fd accounting.
 *
 * fd accounting: the targets that handle fds are linked with
 * -Wl,--wrap=close, so every close() in the target (vhu's code, the
 * harness, libFuzzer) goes through fz's wrapper. Closing an fd that is not
 * open is a double close, and crashes the run: vhu promises each received
 * fd exactly one owner, and in this harness nothing else closes fds twice.
 */
#ifndef VHU_FUZZ_COMMON_H
#define VHU_FUZZ_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* A broken invariant: say which, then abort so libFuzzer keeps the input. */
#define FZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, \
				__LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
			abort(); \
		} \
	} while (0)

/* A fresh fd (a dup of /dev/null, opened once); aborts if none can be had. */
int fz_fd_new(void);

/* The shared /dev/null fd itself (never closed; send it as often as you like). */
int fz_fd_devnull(void);

/* Number of open fds of the process. */
int fz_fd_count(void);

/* True if fd is open. */
bool fz_fd_is_open(int fd);

#endif
