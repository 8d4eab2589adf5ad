/* SPDX-License-Identifier: MIT */
/*
 * What every tool prints besides its work: --version, and the check that
 * its output really arrived (a full disk, a closed pipe, -o /dev/full).
 */
#ifndef VHU_TOOLS_OUTPUT_H
#define VHU_TOOLS_OUTPUT_H

#include <stdio.h>

/** Print "NAME vhu X.Y.Z" (the library's vhu_version()) and a newline on f. */
void tool_print_version(FILE *f, const char *name);

/**
 * Flush f and check that everything written to it so far arrived.
 * \return 0, or -errno of the failed write (-EPIPE, -ENOSPC, ...; -EIO when
 *         stdio kept no errno).
 */
int tool_output_flush(FILE *f);

/**
 * tool_output_flush(f), then fclose(f) unless it is stdout or stderr
 * (stdout is flushed and left open, for the exit handlers). On failure
 * prints "NAME: writing WHAT: REASON" on stderr.
 * \return 0, or -errno.
 */
int tool_output_close(FILE *f, const char *name, const char *what);

#endif
