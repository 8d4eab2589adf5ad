/* SPDX-License-Identifier: MIT */
/*
 * The raw client: the same bytes as the vhost-user clients, moved with
 * plain send/recv (MSG_NOSIGNAL only), no framing and no validation. Replies
 * are counted by bytes. This is what the socket itself can do.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

static int
send_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			int err = errno;

			if (err == EINTR) {
				continue;
			}
			return -err;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One recv of at most len bytes; EOF is a disconnect. */
static ssize_t
recv_some(int fd, uint8_t *p, size_t len)
{
	for (;;) {
		ssize_t n = recv(fd, p, len, 0);

		if (n > 0) {
			return n;
		}
		if (n == 0) {
			return -VHU_EDISCONNECT;
		}
		if (errno != EINTR) {
			return -errno;
		}
	}
}

static int
raw_open(struct bench_client *c, int fd)
{
	c->fd = fd;
	c->inflight = 0;
	c->partial = 0;
	c->rbuf_len = (size_t)c->depth * BENCH_REPLY_SIZE;
	c->reqs = malloc((size_t)c->depth * BENCH_REQ_SIZE);
	c->rbuf = malloc(c->rbuf_len);
	if (c->reqs == NULL || c->rbuf == NULL) {
		free(c->reqs);
		free(c->rbuf);
		c->reqs = NULL;
		c->rbuf = NULL;
		close(fd);
		c->fd = -1;
		return -ENOMEM;
	}
	bench_fill_requests(c->reqs, c->depth);
	return 0;
}

static int
raw_rt(struct bench_client *c, struct bench_window *w)
{
	uint64_t t0 = bench_now_ns();

	for (;;) {
		size_t got = 0;
		uint64_t t1;
		int ret;

		ret = send_all(c->fd, c->reqs, BENCH_REQ_SIZE);
		if (ret < 0) {
			return ret;
		}
		while (got < BENCH_REPLY_SIZE) {
			ssize_t n = recv_some(c->fd, c->rbuf + got, BENCH_REPLY_SIZE - got);

			if (n < 0) {
				return (int)n;
			}
			got += (size_t)n;
		}
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

/* Receive what has arrived (never beyond the replies owed) and count whole replies. */
static ssize_t
recv_replies(struct bench_client *c)
{
	size_t want = (size_t)c->inflight * BENCH_REPLY_SIZE - c->partial;
	ssize_t n;
	unsigned int whole;

	n = recv_some(c->fd, c->rbuf, want < c->rbuf_len ? want : c->rbuf_len);
	if (n < 0) {
		return n;
	}
	c->partial += (unsigned int)n;
	whole = c->partial / BENCH_REPLY_SIZE;
	c->partial %= BENCH_REPLY_SIZE;
	c->inflight -= whole;
	return whole;
}

static int
raw_pipe(struct bench_client *c, struct bench_window *w)
{
	uint64_t next_check = 32;

	for (;;) {
		ssize_t whole;
		int ret;

		if (c->depth - c->inflight >= c->batch) {
			unsigned int n = c->depth - c->inflight;

			ret = send_all(c->fd, c->reqs, (size_t)n * BENCH_REQ_SIZE);
			if (ret < 0) {
				return ret;
			}
			c->inflight += n;
		}
		whole = recv_replies(c);
		if (whole < 0) {
			return (int)whole;
		}
		w->msgs += (uint64_t)whole;
		if (w->count) {
			if (w->msgs >= w->count) {
				return 0;
			}
		} else if (w->msgs >= next_check) {
			if (bench_now_ns() >= w->deadline_ns) {
				return 0;
			}
			next_check = w->msgs + 32;
		}
	}
}

static int
raw_finish(struct bench_client *c)
{
	ssize_t ret = 0;

	while (c->inflight && c->fd >= 0) {
		ret = recv_replies(c);
		if (ret < 0) {
			break;
		}
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	free(c->reqs);
	free(c->rbuf);
	c->reqs = NULL;
	c->rbuf = NULL;
	return ret < 0 ? (int)ret : 0;
}

const struct bench_client_ops bench_client_raw = {
	.open = raw_open,
	.rt = raw_rt,
	.pipe = raw_pipe,
	.finish = raw_finish,
};
