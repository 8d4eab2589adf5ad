/* SPDX-License-Identifier: MIT */
/*
 * The raw rt client: the same bytes as the vhost-user clients, moved with
 * plain send/recv (MSG_NOSIGNAL only), no framing and no validation. This
 * is what the socket itself can do.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

static int
raw_open(struct bench_client *c)
{
	(void)c;
	return 0;
}

static int
raw_rt(struct bench_client *c, struct bench_window *w)
{
	const struct bench_traffic *tr = c->tr;
	int fd = c->fds[0];
	uint64_t t0 = bench_now_ns();
	uint8_t reply[BENCH_REPLY_SIZE];

	for (;;) {
		size_t got = 0;
		uint64_t t1;
		ssize_t n;

		do {
			n = send(fd, tr->msg, tr->msg_len, MSG_NOSIGNAL);
		} while (n < 0 && errno == EINTR);
		if (n != (ssize_t)tr->msg_len) {
			return n < 0 ? -errno : -EIO;
		}
		c->sent++;
		while (got < sizeof(reply)) {
			n = recv(fd, reply + got, sizeof(reply) - got, 0);
			if (n == 0) {
				return -VHU_EDISCONNECT;
			}
			if (n < 0) {
				if (errno == EINTR) {
					continue;
				}
				return -errno;
			}
			got += (size_t)n;
		}
		c->replies++;
		t1 = bench_now_ns();
		if (w->nsamples < w->cap) {
			w->samples[w->nsamples++] = t1 - t0;
		}
		w->msgs++;
		if (bench_window_done(w, t1)) {
			return 0;
		}
		t0 = t1;
	}
}

static int
raw_finish(struct bench_client *c)
{
	(void)c;
	return 0;
}

const struct bench_client_ops bench_client_raw = {
	.open = raw_open,
	.run = raw_rt,
	.finish = raw_finish,
};
