/* SPDX-License-Identifier: MIT */
/*
 * The raw server: reads whatever bytes have arrived and answers every whole
 * 12-byte request with the 20 reply bytes, all replies of one read in one
 * send. No framing, no validation: the socket's own limit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

#define RAW_BUF	65536u

static int
raw_setup(struct bench_server *s, int fd)
{
	size_t most = RAW_BUF / BENCH_REQ_SIZE + 1;

	s->fd = fd;
	s->buf_len = RAW_BUF;
	s->buf = malloc(RAW_BUF);
	s->replies = malloc(most * BENCH_REPLY_SIZE);
	if (s->buf == NULL || s->replies == NULL) {
		snprintf(s->detail, sizeof(s->detail), "out of memory");
		return -ENOMEM;
	}
	bench_fill_replies(s->replies, (unsigned int)most);
	return 0;
}

static int
raw_run(struct bench_server *s)
{
	size_t partial = 0;

	for (;;) {
		ssize_t n = recv(s->fd, s->buf, s->buf_len, 0);
		size_t whole, len;
		const uint8_t *p;

		if (n == 0) {
			return 0;
		}
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -errno;
		}
		partial += (size_t)n;
		whole = partial / BENCH_REQ_SIZE;
		partial %= BENCH_REQ_SIZE;
		p = s->replies;
		len = whole * BENCH_REPLY_SIZE;
		while (len) {
			ssize_t m = send(s->fd, p, len, MSG_NOSIGNAL);

			if (m < 0) {
				if (errno == EINTR) {
					continue;
				}
				return -errno;
			}
			p += m;
			len -= (size_t)m;
		}
		s->msgs += whole;
	}
}

static void
raw_teardown(struct bench_server *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	free(s->buf);
	free(s->replies);
	s->buf = NULL;
	s->replies = NULL;
}

const struct bench_server_ops bench_server_raw = {
	.setup = raw_setup,
	.run = raw_run,
	.teardown = raw_teardown,
};
