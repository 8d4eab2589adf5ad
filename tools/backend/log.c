/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool quiet;

void
be_log_set_quiet(bool on)
{
	quiet = on;
}

/*
 * Each line goes out in a single write(): several connections log from one
 * loop, and whoever reads the pipe (a test, a supervisor) must never see
 * two lines interleaved.
 */
static void
emit(const char *fmt, va_list ap)
{
	static const char prefix[] = "vhu-backend: ";
	char line[512];
	size_t len = sizeof(prefix) - 1;
	size_t room = sizeof(line) - len - 1;	/* keep one byte for the newline */
	ssize_t w;
	int saved = errno;
	int n;

	memcpy(line, prefix, len);
	n = vsnprintf(line + len, room, fmt, ap);
	if (n < 0) {
		return;
	}
	len += (size_t)n < room ? (size_t)n : room - 1;
	line[len++] = '\n';
	/* A reader that went away must not stop the back-end: the result is ignored. */
	w = write(STDERR_FILENO, line, len);
	(void)w;
	errno = saved;
}

void
be_log_info(const char *fmt, ...)
{
	va_list ap;

	if (quiet) {
		return;
	}
	va_start(ap, fmt);
	emit(fmt, ap);
	va_end(ap);
}

void
be_log_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(fmt, ap);
	va_end(ap);
}
