/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool quiet;
/* Lines not written because stderr was full; reported with the next one written. */
static unsigned long dropped;

void
be_log_set_quiet(bool on)
{
	quiet = on;
}

/*
 * Each line goes out in a single write(): several connections log from one
 * loop, and whoever reads the pipe (a test, a supervisor) must never see
 * two lines interleaved. Logging never blocks the ring: a line is written
 * only when stderr has room (a pipe nobody reads fills up); otherwise it
 * is dropped and counted, and the count goes out with the next line.
 */
static void
emit(const char *fmt, va_list ap)
{
	static const char prefix[] = "vhu-backend: ";
	struct pollfd p = { .fd = STDERR_FILENO, .events = POLLOUT };
	char line[640];
	size_t len = 0, room;
	ssize_t w;
	int saved = errno;
	int n;

	/* A pipe with room takes a write of at most PIPE_BUF bytes whole, without waiting. */
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) {
		dropped++;
		errno = saved;
		return;
	}
	if (dropped > 0) {
		len = (size_t)snprintf(line, 96, "%s%lu log lines dropped (stderr was full)\n",
				       prefix, dropped);
		dropped = 0;
	}
	memcpy(line + len, prefix, sizeof(prefix) - 1);
	len += sizeof(prefix) - 1;
	room = 512 - 1;			/* the message, and one byte for the newline */
	n = vsnprintf(line + len, room, fmt, ap);
	if (n < 0) {
		errno = saved;
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
