/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*
 * Logging never blocks the ring. Lines go to a bounded buffer and from
 * there to stderr whenever it has room: at once if it does, else as the
 * serve loop calls tool_log_flush(). A pipe nobody reads fills the buffer;
 * then lines are dropped and counted, and the count is logged in front of
 * the next line that fits. Each write carries whole lines and at most
 * PIPE_BUF bytes, so whoever reads the pipe (a test, a supervisor) never
 * sees two lines interleaved or a line cut.
 *
 * With reactors (--cpus) each front-end's device logs on its own ring's
 * thread: the buffer is behind a mutex (held for a copy and a
 * non-blocking write, never on the request path).
 */
#define PENDING_MAX	(64u * 1024u)
#define LINE_MAX	512u
#define WRITE_MAX	4096u		/* PIPE_BUF: a pipe write this small is atomic */

#define PREFIX_MAX	32u

static char prefix[PREFIX_MAX] = "vhu: ";
static size_t prefix_len = 5;
static bool quiet;
static char pending[PENDING_MAX];
static size_t plen;
static unsigned long dropped;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

void
tool_log_init(const char *name, bool on)
{
	int n = snprintf(prefix, sizeof(prefix), "%s: ", name);

	prefix_len = n > 0 && (size_t)n < sizeof(prefix) ? (size_t)n : strlen(prefix);
	quiet = on;
}

/* Does stderr take a write of WRITE_MAX bytes without blocking? */
static bool
writable(int timeout_ms)
{
	struct pollfd p = { .fd = STDERR_FILENO, .events = POLLOUT };

	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLOUT);
}

static void
flush(int timeout_ms)
{
	int saved = errno;

	while (plen > 0 && writable(timeout_ms)) {
		size_t n = plen < WRITE_MAX ? plen : WRITE_MAX;
		ssize_t w;

		/* End the write at a line's end. */
		while (n > 0 && pending[n - 1] != '\n') {
			n--;
		}
		w = write(STDERR_FILENO, pending, n);
		if (w <= 0) {
			/* The reader went away (EPIPE) or an error: the lines are lost, not blocking. */
			plen = 0;
			break;
		}
		memmove(pending, pending + w, plen - (size_t)w);
		plen -= (size_t)w;
	}
	errno = saved;
}

void
tool_log_flush(void)
{
	pthread_mutex_lock(&mu);
	if (plen > 0) {
		flush(0);
	}
	pthread_mutex_unlock(&mu);
}

void
tool_log_drain(int timeout_ms)
{
	pthread_mutex_lock(&mu);
	if (plen > 0) {
		flush(timeout_ms);
	}
	pthread_mutex_unlock(&mu);
}

static void
emit(const char *fmt, va_list ap)
{
	char line[LINE_MAX + 96];
	size_t len = 0, room;
	int saved = errno;
	int n;

	pthread_mutex_lock(&mu);
	if (dropped > 0) {
		len = (size_t)snprintf(line, 96, "%s%lu log lines dropped (stderr was full)\n",
				       prefix, dropped);
	}
	memcpy(line + len, prefix, prefix_len);
	len += prefix_len;
	room = LINE_MAX - prefix_len - 1;	/* one byte for the newline */
	n = vsnprintf(line + len, room, fmt, ap);
	if (n < 0) {
		pthread_mutex_unlock(&mu);
		errno = saved;
		return;
	}
	len += (size_t)n < room ? (size_t)n : room - 1;
	line[len++] = '\n';
	if (plen + len > PENDING_MAX) {
		dropped++;
	} else {
		memcpy(pending + plen, line, len);
		plen += len;
		dropped = 0;
	}
	flush(0);
	pthread_mutex_unlock(&mu);
	errno = saved;
}

void
tool_log_info(const char *fmt, ...)
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
tool_log_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(fmt, ap);
	va_end(ap);
}
