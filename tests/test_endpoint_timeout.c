/* SPDX-License-Identifier: MIT */
/*
 * Deadlines of the blocking endpoint: a connect to a listener whose
 * backlog is full, a call whose peer never answers, a body that stops
 * half-way; each ends with -ETIMEDOUT within its deadline (checked against
 * a generous upper bound; nothing sleeps) and leaves no fd behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vhu/endpoint.h>
#include <vhu/error.h>

#include "helpers.h"

TestSuite(endpoint_timeout, .init = t_setup, .fini = t_teardown, .timeout = 60);

/* The deadline under test, and how late past it a return may come on a loaded machine. */
#define DEADLINE_MS	200
#define SLACK_MS	10000
/* Most connections a full backlog is filled with. */
#define MAX_FILL	64

static int64_t
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
expect_within_deadline(int64_t start)
{
	int64_t took = ms_now() - start;

	cr_assert_geq(took, DEADLINE_MS - 1, "returned after %lld ms, before the deadline",
		      (long long)took);
	cr_assert_lt(took, DEADLINE_MS + SLACK_MS, "returned after %lld ms", (long long)took);
}

struct backlog {
	int lfd;
	int fill[MAX_FILL];
	unsigned int n;
};

/* A listener nobody accepts on, its backlog filled with non-blocking connects. */
static const char *
full_backlog(struct backlog *b)
{
	const char *path = t_path("full.sock");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	b->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(b->lfd, 0);
	cr_assert_eq(bind(b->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(b->lfd, 0), 0);
	for (b->n = 0; b->n < MAX_FILL; b->n++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		cr_assert_geq(fd, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			cr_assert_eq(errno, EAGAIN, "connect: %s", strerror(errno));
			close(fd);
			break;
		}
		b->fill[b->n] = fd;
	}
	cr_assert_lt(b->n, MAX_FILL, "the backlog never filled");
	return path;
}

static void
backlog_close(struct backlog *b)
{
	unsigned int i;

	for (i = 0; i < b->n; i++) {
		close(b->fill[i]);
	}
	close(b->lfd);
}

Test(endpoint_timeout, connect_to_full_backlog_times_out)
{
	struct backlog b;
	const char *path = full_backlog(&b);
	struct vhu_endpoint *ep = (struct vhu_endpoint *)&b;
	int before = t_fd_count();
	int64_t start = ms_now();

	cr_assert_eq(vhu_endpoint_connect_timeout(path, NULL, DEADLINE_MS, &ep), -ETIMEDOUT);
	expect_within_deadline(start);
	cr_assert_null(ep);
	cr_assert_eq(t_fd_count(), before, "the socket of the failed connect was closed");
	cr_assert_str_eq(vhu_errname(-ETIMEDOUT), "ETIMEDOUT");
	backlog_close(&b);
}

Test(endpoint_timeout, connect_within_deadline_keeps_the_timeout)
{
	const char *path = t_path("ok.sock");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vhu_endpoint *ep = NULL;
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv;
	socklen_t len = sizeof(tv);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	cr_assert_eq(vhu_endpoint_connect_timeout(path, NULL, 1500, &ep), 0);
	cr_assert_eq(vhu_endpoint_timeout(ep), 1500);
	/* The kernel's send timeout was only for connecting. */
	cr_assert_eq(getsockopt(vhu_endpoint_fd(ep), SOL_SOCKET, SO_SNDTIMEO, &tv, &len), 0);
	cr_assert(tv.tv_sec == 0 && tv.tv_usec == 0);
	cr_assert_eq(vhu_endpoint_set_timeout(ep, -1), -EINVAL);
	cr_assert_eq(vhu_endpoint_set_timeout(ep, 0), 0);
	cr_assert_eq(vhu_endpoint_timeout(ep), 0);
	vhu_endpoint_destroy(ep);
	cr_assert_eq(vhu_endpoint_connect_timeout(path, NULL, -1, &ep), -EINVAL);
	cr_assert_eq(vhu_endpoint_connect_timeout(t_path("none.sock"), NULL, 100, &ep),
		     -ENOENT);
	close(lfd);
}

Test(endpoint_timeout, call_to_a_silent_peer_times_out)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rh = { 1, 2, 3 };
	struct vhu_fds fds;
	uint64_t r = 0;
	int before, i;
	int64_t start;

	cr_assert_eq(vhu_endpoint_pair(NULL, NULL, &a, &b), 0);
	cr_assert_eq(vhu_endpoint_set_timeout(a, DEADLINE_MS), 0);
	before = t_fd_count();
	/* Blocking and non-blocking sockets alike: a call waits for its reply until the deadline. */
	for (i = 0; i < 2; i++) {
		cr_assert_eq(vhu_endpoint_set_nonblocking(a, i == 1), 0);
		start = ms_now();
		cr_assert_eq(vhu_endpoint_call_hdr(a, &req, NULL, 0, NULL, 0, &rh, &r, sizeof(r),
						   &fds), -ETIMEDOUT);
		expect_within_deadline(start);
		cr_assert_eq(fds.n, 0);
		cr_assert_eq(rh.request, 0, "no reply header came");
	}
	cr_assert_eq(t_fd_count(), before);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint_timeout, body_that_stops_half_way_times_out_and_closes_fds)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_INFLIGHT_FD, 24);
	uint8_t msg[VHU_HDR_SIZE + 10] = { 0 };
	uint8_t buf[64];
	struct vhu_hdr got;
	struct vhu_fds fds;
	int efd = t_eventfd(), before;
	int64_t start;

	cr_assert_eq(vhu_endpoint_pair(NULL, NULL, &a, &b), 0);
	memcpy(msg, &h, sizeof(h));
	/* The back-end's side sends a header with an fd and 10 of 24 body bytes. */
	cr_assert_eq(vhu_endpoint_send_iov(b, &(struct iovec){ msg, sizeof(msg) }, 1, &efd, 1),
		     (ssize_t)sizeof(msg));
	close(efd);
	cr_assert_eq(vhu_endpoint_set_timeout(a, DEADLINE_MS), 0);
	before = t_fd_count();
	start = ms_now();
	cr_assert_eq(vhu_endpoint_recv_body_into_buf(a, &got, buf, sizeof(buf), &fds),
		     -ETIMEDOUT);
	expect_within_deadline(start);
	cr_assert_eq(fds.n, 0);
	cr_assert_eq(t_fd_count(), before, "the fd that came with the header was closed");
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint_timeout, non_blocking_socket_still_says_retry)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr h;
	uint8_t c;

	cr_assert_eq(vhu_endpoint_pair(NULL, NULL, &a, &b), 0);
	cr_assert_eq(vhu_endpoint_set_timeout(a, 60000), 0);
	cr_assert_eq(vhu_endpoint_set_nonblocking(a, true), 0);
	cr_assert_eq(vhu_endpoint_recv_header(a, &h, NULL), -VHU_ERETRY);
	cr_assert_eq(vhu_endpoint_recv_iov(a, &(struct iovec){ &c, 1 }, 1, NULL), -VHU_ERETRY);
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint_timeout, raw_receive_on_a_blocking_socket_times_out)
{
	struct vhu_endpoint *a, *b;
	uint8_t c;
	int64_t start;

	cr_assert_eq(vhu_endpoint_pair(NULL, NULL, &a, &b), 0);
	cr_assert_eq(vhu_endpoint_set_timeout(a, DEADLINE_MS), 0);
	start = ms_now();
	cr_assert_eq(vhu_endpoint_recv_iov(a, &(struct iovec){ &c, 1 }, 1, NULL), -ETIMEDOUT);
	expect_within_deadline(start);
	cr_assert_eq(vhu_endpoint_send_iov(b, &(struct iovec){ "x", 1 }, 1, NULL, 0), 1);
	cr_assert_eq(vhu_endpoint_recv_iov(a, &(struct iovec){ &c, 1 }, 1, NULL), 1);
	cr_assert_eq(c, 'x');
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}

Test(endpoint_timeout, call_hdr_names_the_reply_it_rejects)
{
	struct vhu_endpoint *a, *b;
	struct vhu_hdr req = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	struct vhu_hdr rep = vhu_hdr_reply(VHU_REQ_GET_PROTOCOL_FEATURES, 8);
	struct vhu_hdr rh;
	uint64_t v = 1, r = 0;

	cr_assert_eq(vhu_endpoint_pair(NULL, NULL, &a, &b), 0);
	cr_assert_eq(vhu_endpoint_send_message(b, &rep, &v, 8, NULL, 0), 0);
	cr_assert_eq(vhu_endpoint_call_hdr(a, &req, NULL, 0, NULL, 0, &rh, &r, 8, NULL),
		     -VHU_EREPLY);
	cr_assert_arr_eq(&rh, &rep, sizeof(rh));
	vhu_endpoint_destroy(a);
	vhu_endpoint_destroy(b);
}
