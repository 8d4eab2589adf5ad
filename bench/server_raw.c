/* SPDX-License-Identifier: MIT */
/*
 * The raw server: reads whatever bytes have arrived and answers every whole
 * request in them (the case's requests all have the same length) with the
 * 20 reply bytes, all replies of one read in one send. fds are received
 * (a control buffer on every read) and closed. No framing, no validation:
 * the socket's own limit. Several connections are served from one poll()
 * loop; raw+poll spins on non-blocking reads instead of sleeping.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

#define RAW_BUF	65536u

struct raw {
	uint8_t *buf;
	uint8_t *replies;	/* replies back to back, for the most whole requests a read holds */
	size_t nreplies;
	uint32_t *partial;	/* per connection: bytes of a request read so far */
	struct pollfd *pfd;	/* fd -1 once closed */
};

static int
raw_setup(struct bench_server *s)
{
	const struct bench_traffic *tr = s->tr;
	struct raw *r = calloc(1, sizeof(*r));
	uint64_t v = tr->request == VHU_REQ_GET_FEATURES ? BENCH_FEATURES : 0;
	struct vhu_hdr h = vhu_hdr_reply(tr->request, sizeof(v));

	s->priv = r;
	if (r == NULL) {
		goto nomem;
	}
	r->nreplies = RAW_BUF / tr->msg_len + 1;
	r->buf = malloc(RAW_BUF);
	r->replies = malloc(r->nreplies * BENCH_REPLY_SIZE);
	r->partial = calloc(s->nconns, sizeof(*r->partial));
	r->pfd = calloc(s->nconns, sizeof(*r->pfd));
	if (!r->buf || !r->replies || !r->partial || !r->pfd) {
		goto nomem;
	}
	for (size_t i = 0; i < r->nreplies; i++) {
		memcpy(r->replies + i * BENCH_REPLY_SIZE, &h, sizeof(h));
		memcpy(r->replies + i * BENCH_REPLY_SIZE + sizeof(h), &v, sizeof(v));
	}
	for (unsigned int i = 0; i < s->nconns; i++) {
		r->pfd[i].fd = s->fds[i];
		r->pfd[i].events = POLLIN;
	}
	return 0;
nomem:
	snprintf(s->detail, sizeof(s->detail), "out of memory");
	return -ENOMEM;
}

/* One read on connection i. \return 1 if it read, 0 if nothing was there, 2 at EOF, or -errno. */
static int
serve_one(struct bench_server *s, struct raw *r, unsigned int i, int flags)
{
	const struct bench_traffic *tr = s->tr;
	union vhu_cmsg_buf cbuf;
	struct iovec iov = { r->buf, RAW_BUF };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct vhu_fds fds;
	size_t whole;
	ssize_t n;

	vhu_cmsg_prep_recv(&mh, &cbuf);
	do {
		n = recvmsg(r->pfd[i].fd, &mh, flags | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		close(r->pfd[i].fd);
		r->pfd[i].fd = -1;
		s->fds[i] = -1;
		return 2;
	}
	if (n < 0) {
		if (errno == EAGAIN) {
			return 0;
		}
		return -errno;
	}
	if (mh.msg_controllen > 0) {
		int got;

		vhu_fds_init(&fds);
		got = vhu_cmsg_collect(&mh, mh.msg_flags, &fds);
		vhu_fds_close(&fds);
		if (got < 0) {
			return got;
		}
		s->k.fds += (uint64_t)got;
	}
	r->partial[i] += (uint32_t)n;
	whole = r->partial[i] / tr->msg_len;
	r->partial[i] %= tr->msg_len;
	s->k.msgs += whole;
	if (tr->depth == 0) {
		return 1;	/* oneway: nothing to answer */
	}
	s->k.replies += whole;
	while (whole) {
		size_t m = whole < r->nreplies ? whole : r->nreplies;
		int ret = bench_send_all(r->pfd[i].fd, r->replies, m * BENCH_REPLY_SIZE);

		if (ret < 0) {
			return ret;
		}
		whole -= m;
	}
	return 1;
}

static int
raw_run(struct bench_server *s)
{
	struct raw *r = s->priv;
	unsigned int open = s->nconns;
	bool one = s->nconns == 1 && !s->t->busy_poll;

	while (open > 0) {
		int ready = s->nconns;

		if (!one && !s->t->busy_poll) {
			do {
				ready = poll(r->pfd, s->nconns, -1);
			} while (ready < 0 && errno == EINTR);
			if (ready < 0) {
				return -errno;
			}
		}
		for (unsigned int i = 0; i < s->nconns && ready > 0; i++) {
			int ret;

			if (r->pfd[i].fd < 0 || (!one && !s->t->busy_poll && !r->pfd[i].revents)) {
				continue;
			}
			ret = serve_one(s, r, i, one ? 0 : MSG_DONTWAIT);
			if (ret == 2) {
				open--;
			} else if (ret < 0) {
				snprintf(s->detail, sizeof(s->detail), "connection %u: %s", i + 1,
					 strerror(-ret));
				return ret;
			}
		}
	}
	return 0;
}

static void
raw_teardown(struct bench_server *s)
{
	struct raw *r = s->priv;

	if (r) {
		free(r->buf);
		free(r->replies);
		free(r->partial);
		free(r->pfd);
		free(r);
	}
	s->priv = NULL;
}

const struct bench_server_ops bench_server_raw = {
	.setup = raw_setup,
	.run = raw_run,
	.teardown = raw_teardown,
};
