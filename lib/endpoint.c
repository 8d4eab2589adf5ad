/* SPDX-License-Identifier: MIT */
/*
 * The blocking endpoint. Everything the peer sends is hostile: a header is
 * validated before its size is trusted, a body before a caller sees it, and
 * every fd that arrives is either handed to the caller's struct vhu_fds or
 * closed before we return. fds are only accepted with the first chunk of a
 * message, because a read that crosses into the next message would
 * otherwise attribute that message's fds to this one.
 *
 * Deadlines: with a timeout set, each public call computes one deadline
 * when it starts, every transfer in it uses MSG_DONTWAIT, and every wait
 * is a poll() for the time left, so no call blocks past its deadline.
 * Whether the caller asked for non-blocking semantics (-VHU_ERETRY before
 * the first byte) is read from the socket's O_NONBLOCK flag only when a
 * transfer would block.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vhu/endpoint.h>
#include <vhu/error.h>
#include <vhu/iov.h>

/* iovecs handed to one sendmsg/recvmsg by the _all loops; longer arrays take more calls. */
#define CHUNK_IOVS 16

/* recv_loop flags */
#define RECV_WAIT	0x1	/* poll() even before the first byte (a reply or body is due) */
#define RECV_INMSG	0x2	/* the message began earlier: EOF at the first byte is partial */

struct vhu_endpoint {
	int fd;
	struct vhu_rules rules;
	int timeout_ms;		/* per call; 0: none */
};

/* A call's deadline on CLOCK_MONOTONIC in ns; 0 means none. */
typedef int64_t deadline_t;

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static deadline_t
deadline_in(int timeout_ms)
{
	return timeout_ms > 0 ? mono_ns() + (int64_t)timeout_ms * 1000000 : 0;
}

static deadline_t
call_deadline(const struct vhu_endpoint *ep)
{
	return deadline_in(ep->timeout_ms);
}

/* A front-end on the main socket: it sends requests and reads replies. */
static const struct vhu_rules rules_front_reply = {
	.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
};
/* A back-end on the main socket (accepted side). */
static const struct vhu_rules rules_front_request = {
	.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REQUEST,
};
/* The back-end's end of the SET_BACKEND_REQ_FD channel: it sends requests there. */
static const struct vhu_rules rules_backend_reply = {
	.channel = VHU_CHAN_BACKEND, .expect = VHU_EXPECT_REPLY,
};

static int
make_endpoint(int fd, const struct vhu_rules *rules, struct vhu_endpoint **out)
{
	struct vhu_endpoint *ep = malloc(sizeof(*ep));

	if (!ep) {
		close(fd);
		return -ENOMEM;
	}
	ep->fd = fd;
	ep->rules = *rules;
	ep->timeout_ms = 0;
	*out = ep;
	return 0;
}

/*
 * connect() with a deadline. An AF_UNIX connect to a listener whose backlog
 * is full sleeps in the kernel until a slot frees; a non-blocking connect
 * fails with EAGAIN at once and there is nothing to poll for the slot. The
 * kernel bounds that sleep by the socket's send timeout, so the time left
 * goes there, and EAGAIN after it means the deadline passed.
 */
static int
connect_by(int fd, const struct sockaddr_un *sa, deadline_t dl)
{
	struct timeval tv = { 0, 0 };
	int64_t left;
	int rc, err;

	if (dl != 0) {
		left = dl - mono_ns();
		if (left <= 0) {
			return -ETIMEDOUT;
		}
		/* Rounded up to a whole microsecond: 0 would mean no limit at all. */
		left = (left + 999) / 1000;
		tv.tv_sec = (time_t)(left / 1000000);
		tv.tv_usec = (suseconds_t)(left % 1000000);
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
			return -errno;
		}
	}
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	err = rc != 0 ? errno : 0;
	if (dl != 0) {
		/* The send timeout was only for connecting; later waits are ours. */
		tv.tv_sec = 0;
		tv.tv_usec = 0;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 && err == 0) {
			err = errno;
		}
		if (err == EAGAIN || err == EINPROGRESS) {
			err = ETIMEDOUT;
		}
	}
	return -err;
}

int
vhu_endpoint_connect_timeout(const char *path, const struct vhu_rules *rules, int timeout_ms,
			     struct vhu_endpoint **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	deadline_t dl = deadline_in(timeout_ms);
	size_t len;
	int fd, rc;

	if (!path || !out || timeout_ms < 0) {
		return -EINVAL;
	}
	*out = NULL;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path)) {
		return -ENAMETOOLONG;
	}
	if (len == 0) {
		return -EINVAL;
	}
	memcpy(sa.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	rc = connect_by(fd, &sa, dl);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	rc = make_endpoint(fd, rules ? rules : &rules_front_reply, out);
	if (rc == 0) {
		(*out)->timeout_ms = timeout_ms;
	}
	return rc;
}

int
vhu_endpoint_connect(const char *path, const struct vhu_rules *rules, struct vhu_endpoint **out)
{
	return vhu_endpoint_connect_timeout(path, rules, 0, out);
}

int
vhu_endpoint_from_fd(int fd, const struct vhu_rules *rules, struct vhu_endpoint **out)
{
	socklen_t sl = sizeof(int);
	int type = 0, err;

	if (!out) {
		if (fd >= 0) {
			close(fd);
		}
		return -EINVAL;
	}
	*out = NULL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) != 0) {
		err = errno;
		if (err != EBADF) {
			close(fd);
		}
		return -err;
	}
	if (type != SOCK_STREAM) {
		close(fd);
		return -ENOTSOCK;
	}
	return make_endpoint(fd, rules ? rules : &rules_front_request, out);
}

int
vhu_endpoint_from_backend_req_fd(struct vhu_fds *fds, struct vhu_endpoint **out)
{
	int fd;

	if (!fds || !out) {
		return -EINVAL;
	}
	*out = NULL;
	if (fds->n != 1 || fds->fd[0] < 0) {
		vhu_fds_close(fds);
		return -VHU_EINVALID;
	}
	fd = vhu_fds_take(fds, 0);
	fds->n = 0;
	return vhu_endpoint_from_fd(fd, &rules_backend_reply, out);
}

int
vhu_endpoint_pair(const struct vhu_rules *rules_a, const struct vhu_rules *rules_b,
		  struct vhu_endpoint **a, struct vhu_endpoint **b)
{
	int sv[2], rc, err;

	if (!a || !b) {
		return -EINVAL;
	}
	*a = NULL;
	*b = NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		err = errno;
		return -err;
	}
	rc = make_endpoint(sv[0], rules_a ? rules_a : &rules_front_reply, a);
	if (rc < 0) {
		close(sv[1]);
		return rc;
	}
	rc = make_endpoint(sv[1], rules_b ? rules_b : &rules_front_request, b);
	if (rc < 0) {
		vhu_endpoint_destroy(*a);
		*a = NULL;
		return rc;
	}
	return 0;
}

void
vhu_endpoint_destroy(struct vhu_endpoint *ep)
{
	if (!ep) {
		return;
	}
	close(ep->fd);
	free(ep);
}

int
vhu_endpoint_fd(const struct vhu_endpoint *ep)
{
	return ep->fd;
}

const struct vhu_rules *
vhu_endpoint_rules(const struct vhu_endpoint *ep)
{
	return &ep->rules;
}

int
vhu_endpoint_set_nonblocking(struct vhu_endpoint *ep, bool on)
{
	int fl = fcntl(ep->fd, F_GETFL), err;

	if (fl < 0) {
		err = errno;
		return -err;
	}
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	if (fcntl(ep->fd, F_SETFL, fl) != 0) {
		err = errno;
		return -err;
	}
	return 0;
}

int
vhu_endpoint_set_timeout(struct vhu_endpoint *ep, int timeout_ms)
{
	if (!ep || timeout_ms < 0) {
		return -EINVAL;
	}
	ep->timeout_ms = timeout_ms;
	return 0;
}

int
vhu_endpoint_timeout(const struct vhu_endpoint *ep)
{
	return ep->timeout_ms;
}

/* Raw transfers ----------------------------------------------------- */

/* MSG_DONTWAIT under a deadline: a blocking socket must not sleep past it in the kernel. */
static int
dl_flags(deadline_t dl)
{
	return dl != 0 ? MSG_DONTWAIT : 0;
}

/* True if the caller made the socket non-blocking (a would-block is theirs to see). */
static bool
user_nonblocking(const struct vhu_endpoint *ep)
{
	int fl = fcntl(ep->fd, F_GETFL);

	return fl >= 0 && (fl & O_NONBLOCK) != 0;
}

/* One sendmsg. Returns bytes sent or -errno as the kernel gave it (EINTR kept). */
static ssize_t
send_once(int sock, const struct iovec *iov, unsigned int cnt, const int *fds, unsigned int nfds,
	  int flags)
{
	union vhu_cmsg_buf cbuf;
	struct msghdr mh = {
		/* sendmsg does not write through msg_iov; the cast only drops const. */
		.msg_iov = (struct iovec *)iov,
		.msg_iovlen = cnt,
	};
	ssize_t n;
	int rc, err;

	rc = vhu_cmsg_build(&mh, &cbuf, fds, nfds);
	if (rc < 0) {
		return rc;
	}
	n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
	if (n < 0) {
		err = errno;
		return -err;
	}
	return n;
}

/*
 * One recvmsg, always with a control buffer. fds that arrive go to fds, or
 * are closed when fds is NULL (-VHU_EINVALID). On any error nothing is
 * appended to fds. Returns bytes (> 0), -errno as the kernel gave it (EINTR
 * kept), or a vhu error.
 */
static ssize_t
recv_once(int sock, struct iovec *iov, unsigned int cnt, struct vhu_fds *fds, int flags)
{
	union vhu_cmsg_buf cbuf;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = cnt };
	struct vhu_fds got;
	unsigned int i;
	ssize_t n;
	int rc, err;

	vhu_cmsg_prep_recv(&mh, &cbuf);
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
	if (n < 0) {
		err = errno;
		return -err;
	}
	vhu_fds_init(&got);
	rc = vhu_cmsg_collect(&mh, mh.msg_flags, &got);
	if (rc < 0) {
		return rc;
	}
	if (n == 0) {
		vhu_fds_close(&got);
		return -VHU_EDISCONNECT;
	}
	if (got.n == 0) {
		return n;
	}
	if (!fds) {
		vhu_fds_close(&got);
		return -VHU_EINVALID;
	}
	if (fds->n > VHU_MAX_FDS || got.n > VHU_MAX_FDS - fds->n) {
		vhu_fds_close(&got);
		return -VHU_EFDS;
	}
	for (i = 0; i < got.n; i++) {
		fds->fd[fds->n++] = got.fd[i];
	}
	return n;
}

/* Wait for events; with a deadline, -ETIMEDOUT once it has passed. */
static int
wait_io(int sock, short events, deadline_t dl)
{
	struct pollfd p = { .fd = sock, .events = events };
	int64_t left;
	int n, err;

	for (;;) {
		int ms = -1;

		if (dl != 0) {
			left = dl - mono_ns();
			if (left <= 0) {
				return -ETIMEDOUT;
			}
			/* Rounded up: a wait that ends just short of the deadline would spin. */
			left = (left + 999999) / 1000000;
			ms = left > INT32_MAX ? INT32_MAX : (int)left;
		}
		n = poll(&p, 1, ms);
		if (n > 0) {
			/* Errors and hang-ups included: the next transfer names them. */
			return 0;
		}
		if (n < 0) {
			err = errno;
			if (err != EINTR) {
				return -err;
			}
		}
	}
}

static ssize_t
retry_code(ssize_t n)
{
	return (n == -EINTR || n == -EAGAIN) ? -VHU_ERETRY : n;
}

/*
 * Under a timeout a raw transfer on a blocking socket waits for readiness
 * with the deadline first, then makes its one transfer.
 */
static int
raw_wait(struct vhu_endpoint *ep, ssize_t n, short events, deadline_t dl)
{
	if (n != -EAGAIN || dl == 0 || user_nonblocking(ep)) {
		return 1;
	}
	return wait_io(ep->fd, events, dl);
}

ssize_t
vhu_endpoint_send_iov(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
		      const int *fds, unsigned int nfds)
{
	deadline_t dl = call_deadline(ep);
	ssize_t n;
	int rc;

	for (;;) {
		n = send_once(ep->fd, iov, cnt, fds, nfds, dl_flags(dl));
		rc = raw_wait(ep, n, POLLOUT, dl);
		if (rc < 0) {
			return rc;
		}
		if (rc > 0) {
			return retry_code(n);
		}
	}
}

ssize_t
vhu_endpoint_recv_iov(struct vhu_endpoint *ep, struct iovec *iov, unsigned int cnt,
		      struct vhu_fds *fds)
{
	deadline_t dl = call_deadline(ep);
	ssize_t n;
	int rc;

	if (vhu_iov_len(iov, cnt) == 0) {
		return -EINVAL;
	}
	for (;;) {
		n = recv_once(ep->fd, iov, cnt, fds, dl_flags(dl));
		rc = raw_wait(ep, n, POLLIN, dl);
		if (rc < 0) {
			return rc;
		}
		if (rc > 0) {
			return retry_code(n);
		}
	}
}

static int
send_all_by(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
	    const int *fds, unsigned int nfds, deadline_t dl)
{
	size_t total = vhu_iov_len(iov, cnt), off = 0;
	struct iovec cur[CHUNK_IOVS];

	if (nfds > VHU_MAX_FDS) {
		return -VHU_EFDS;
	}
	if (total == 0) {
		/* A stream socket cannot carry fds without at least one byte. */
		return nfds ? -EINVAL : 0;
	}
	while (off < total) {
		unsigned int k = vhu_iov_tail(iov, cnt, off, cur, CHUNK_IOVS);
		bool first = off == 0;
		ssize_t n = send_once(ep->fd, cur, k, first ? fds : NULL, first ? nfds : 0,
				      dl_flags(dl));
		int rc;

		if (n > 0) {
			off += (size_t)n;
		} else if (n == 0) {
			return -VHU_EPARTIAL;
		} else if (n == -EINTR) {
			continue;
		} else if (n == -EAGAIN) {
			rc = wait_io(ep->fd, POLLOUT, dl);
			if (rc < 0) {
				return rc;
			}
		} else {
			return (int)n;
		}
	}
	return 0;
}

int
vhu_endpoint_send_all(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
		      const int *fds, unsigned int nfds)
{
	return send_all_by(ep, iov, cnt, fds, nfds, call_deadline(ep));
}

/*
 * Fill iov. fds (may be NULL: none allowed) only from the first chunk that
 * brings bytes. Without RECV_WAIT a non-blocking socket with nothing
 * pending gives -VHU_ERETRY, and nothing has been consumed; once a byte
 * is in, we wait for the rest, since returning would lose the position in
 * the stream.
 */
static int
recv_loop(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
	  struct vhu_fds *fds, unsigned int flags, deadline_t dl)
{
	size_t total = vhu_iov_len(iov, cnt), off = 0;
	struct iovec cur[CHUNK_IOVS];

	while (off < total) {
		unsigned int k = vhu_iov_tail(iov, cnt, off, cur, CHUNK_IOVS);
		ssize_t n = recv_once(ep->fd, cur, k, off == 0 ? fds : NULL, dl_flags(dl));
		int rc;

		if (n > 0) {
			off += (size_t)n;
		} else if (n == -EINTR) {
			continue;
		} else if (n == -EAGAIN) {
			if (off == 0 && !(flags & RECV_WAIT) && (dl == 0 || user_nonblocking(ep))) {
				return -VHU_ERETRY;
			}
			rc = wait_io(ep->fd, POLLIN, dl);
			if (rc < 0) {
				return rc;
			}
		} else if (n == -VHU_EDISCONNECT && (off > 0 || (flags & RECV_INMSG))) {
			return -VHU_EPARTIAL;
		} else {
			return (int)n;
		}
	}
	return 0;
}

int
vhu_endpoint_recv_all(struct vhu_endpoint *ep, struct iovec *iov, unsigned int cnt,
		      struct vhu_fds *fds)
{
	int rc = recv_loop(ep, iov, cnt, fds, 0, call_deadline(ep));

	if (rc < 0 && rc != -VHU_ERETRY) {
		vhu_fds_close(fds);
	}
	return rc;
}

/* Framing helpers --------------------------------------------------- */

int
vhu_endpoint_send_header(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			 const int *fds, unsigned int nfds)
{
	struct iovec iov = { .iov_base = (void *)hdr, .iov_len = VHU_HDR_SIZE };

	if (!hdr || hdr->size != 0) {
		return -EINVAL;
	}
	return send_all_by(ep, &iov, 1, fds, nfds, call_deadline(ep));
}

static int
send_message_by(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
		const void *body, size_t body_len, const void *payload, size_t payload_len,
		const int *fds, unsigned int nfds, deadline_t dl)
{
	struct iovec iov[3] = {
		{ .iov_base = (void *)hdr, .iov_len = VHU_HDR_SIZE },
		{ .iov_base = (void *)body, .iov_len = body_len },
		{ .iov_base = (void *)payload, .iov_len = payload_len },
	};

	if (nfds > VHU_MAX_FDS) {
		return -VHU_EFDS;
	}
	/* The size field is a u32: anything that does not fit cannot be framed. */
	if (body_len > UINT32_MAX || payload_len > UINT32_MAX - body_len) {
		return -VHU_EOVERSIZED;
	}
	if (!hdr || hdr->size != body_len + payload_len || (body_len && !body) ||
	    (payload_len && !payload)) {
		return -EINVAL;
	}
	return send_all_by(ep, iov, 3, fds, nfds, dl);
}

int
vhu_endpoint_send_message(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			  const void *body, size_t len, const int *fds, unsigned int nfds)
{
	return vhu_endpoint_send_message_with_payload(ep, hdr, body, len, NULL, 0, fds, nfds);
}

int
vhu_endpoint_send_message_with_payload(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
				       const void *body, size_t body_len,
				       const void *payload, size_t payload_len,
				       const int *fds, unsigned int nfds)
{
	return send_message_by(ep, hdr, body, body_len, payload, payload_len, fds, nfds,
			       call_deadline(ep));
}

static int
check_fd_count(const struct vhu_rules *rules, const struct vhu_hdr *hdr, const void *body,
	       const struct vhu_fds *fds)
{
	unsigned int min = 0, max = 0, n = fds ? fds->n : 0;
	int rc = vhu_msg_fd_bounds(rules, hdr, body, &min, &max);

	if (rc < 0) {
		return rc;
	}
	return (n < min || n > max) ? -VHU_EFDS : 0;
}

/* The 12 header bytes, fds only on their first chunk; no validation. */
static int
recv_hdr_raw(struct vhu_endpoint *ep, struct vhu_hdr *hdr, struct vhu_fds *fds,
	     unsigned int flags, deadline_t dl)
{
	struct iovec iov = { .iov_base = hdr, .iov_len = VHU_HDR_SIZE };

	if (fds) {
		vhu_fds_init(fds);
	}
	return recv_loop(ep, &iov, 1, fds, flags, dl);
}

/* The checks recv_header makes once the 12 bytes are in. */
static int
hdr_accept(const struct vhu_rules *rules, const struct vhu_hdr *hdr, const struct vhu_fds *fds)
{
	int rc = vhu_hdr_check(rules, hdr);

	if (rc < 0) {
		return rc;
	}
	/* With no body to come, the fd rule can be settled now. */
	if (hdr->size == 0) {
		return check_fd_count(rules, hdr, NULL, fds);
	}
	return 0;
}

static int
recv_header_by(struct vhu_endpoint *ep, struct vhu_hdr *hdr, struct vhu_fds *fds, deadline_t dl)
{
	int rc = recv_hdr_raw(ep, hdr, fds, 0, dl);

	if (rc == 0) {
		rc = hdr_accept(&ep->rules, hdr, fds);
	}
	if (rc < 0) {
		vhu_fds_close(fds);
	}
	return rc;
}

int
vhu_endpoint_recv_header(struct vhu_endpoint *ep, struct vhu_hdr *hdr, struct vhu_fds *fds)
{
	return recv_header_by(ep, hdr, fds, call_deadline(ep));
}

static int
recv_body_rules(struct vhu_endpoint *ep, const struct vhu_rules *rules,
		const struct vhu_hdr *hdr, void *buf, size_t len, struct vhu_fds *fds,
		deadline_t dl)
{
	struct iovec iov = { .iov_base = buf, .iov_len = hdr->size };
	int rc;

	if (hdr->size > len) {
		rc = -VHU_EOVERSIZED;
		goto fail;
	}
	if (hdr->size > 0) {
		rc = recv_loop(ep, &iov, 1, NULL, RECV_WAIT | RECV_INMSG, dl);
		if (rc < 0) {
			goto fail;
		}
	}
	rc = vhu_msg_check(rules, hdr, buf, fds ? fds->n : 0);
	if (rc == 0 && fds) {
		rc = vhu_msg_check_fd_kinds(rules, hdr, fds->fd, fds->n, vhu_endpoint_fd(ep));
	}
	if (rc < 0) {
		goto fail;
	}
	return 0;
fail:
	vhu_fds_close(fds);
	return rc;
}

int
vhu_endpoint_recv_body_bytes(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			     void *buf, size_t len, struct vhu_fds *fds)
{
	return recv_body_rules(ep, &ep->rules, hdr, buf, len, fds, call_deadline(ep));
}

int
vhu_endpoint_recv_body(struct vhu_endpoint *ep, struct vhu_hdr *hdr, void *body, size_t len,
		       struct vhu_fds *fds)
{
	deadline_t dl = call_deadline(ep);
	int rc = recv_header_by(ep, hdr, fds, dl);

	if (rc < 0) {
		return rc;
	}
	if (hdr->size != len) {
		vhu_fds_close(fds);
		return -VHU_EBODYSIZE;
	}
	return recv_body_rules(ep, &ep->rules, hdr, body, len, fds, dl);
}

ssize_t
vhu_endpoint_recv_body_into_buf(struct vhu_endpoint *ep, struct vhu_hdr *hdr,
				void *buf, size_t len, struct vhu_fds *fds)
{
	deadline_t dl = call_deadline(ep);
	int rc = recv_header_by(ep, hdr, fds, dl);

	if (rc < 0) {
		return rc;
	}
	rc = recv_body_rules(ep, &ep->rules, hdr, buf, len, fds, dl);
	return rc < 0 ? rc : (ssize_t)hdr->size;
}

/*
 * Body and payload land in two caller buffers, but vhu_msg_check() needs
 * the message contiguous (a config body's size field is checked against
 * the payload that follows it). When the buffers are not adjacent the
 * message is copied into a stack buffer for the check; that buffer holds
 * VHU_DEFAULT_MAX_SIZE bytes, so a larger message (possible only with a
 * raised max_size) must use adjacent buffers or recv_body_into_buf.
 */
ssize_t
vhu_endpoint_recv_payload_into_buf(struct vhu_endpoint *ep, struct vhu_hdr *hdr,
				   void *body, size_t body_len,
				   void *payload, size_t payload_len, struct vhu_fds *fds)
{
	union {
		uint64_t align;
		unsigned char b[VHU_DEFAULT_MAX_SIZE];
	} gather;
	struct iovec iov[2];
	deadline_t dl = call_deadline(ep);
	const void *whole;
	size_t plen;
	int rc;

	rc = recv_header_by(ep, hdr, fds, dl);
	if (rc < 0) {
		return rc;
	}
	if (hdr->size < body_len) {
		rc = -VHU_EBODYSIZE;
		goto fail;
	}
	plen = hdr->size - body_len;
	if (plen > payload_len) {
		rc = -VHU_EOVERSIZED;
		goto fail;
	}
	if (plen == 0) {
		whole = body;
	} else if (body_len == 0 || (char *)body + body_len == (char *)payload) {
		whole = body_len ? body : payload;
	} else if (hdr->size <= sizeof(gather.b)) {
		whole = gather.b;
	} else {
		rc = -VHU_EOVERSIZED;
		goto fail;
	}
	iov[0].iov_base = body;
	iov[0].iov_len = body_len;
	iov[1].iov_base = payload;
	iov[1].iov_len = plen;
	rc = recv_loop(ep, iov, 2, NULL, RECV_WAIT | RECV_INMSG, dl);
	if (rc < 0) {
		goto fail;
	}
	if (whole == gather.b) {
		memcpy(gather.b, body, body_len);
		memcpy(gather.b + body_len, payload, plen);
	}
	rc = vhu_msg_check(&ep->rules, hdr, whole, fds ? fds->n : 0);
	if (rc == 0 && fds) {
		rc = vhu_msg_check_fd_kinds(&ep->rules, hdr, fds->fd, fds->n, vhu_endpoint_fd(ep));
	}
	if (rc < 0) {
		goto fail;
	}
	return (ssize_t)plen;
fail:
	vhu_fds_close(fds);
	return rc;
}

ssize_t
vhu_endpoint_call_hdr(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
		      const void *body, size_t body_len, const int *fds, unsigned int nfds,
		      struct vhu_hdr *reply_hdr, void *reply_buf, size_t reply_len,
		      struct vhu_fds *reply_fds)
{
	struct vhu_rules rules = ep->rules;
	deadline_t dl = call_deadline(ep);
	struct vhu_hdr rh;
	int rc;

	if (reply_fds) {
		vhu_fds_init(reply_fds);
	}
	if (reply_hdr) {
		memset(reply_hdr, 0, sizeof(*reply_hdr));
	}
	rc = send_message_by(ep, hdr, body, body_len, NULL, 0, fds, nfds, dl);
	if (rc < 0) {
		return rc;
	}
	/* Whatever the endpoint normally expects, what comes back now must be a reply. */
	rules.expect = VHU_EXPECT_REPLY;
	/* A reply is due: wait for it even on a non-blocking socket. */
	rc = recv_hdr_raw(ep, &rh, reply_fds, RECV_WAIT, dl);
	if (rc < 0) {
		goto fail;
	}
	if (reply_hdr) {
		*reply_hdr = rh;
	}
	/* No message ids on this channel: the next message must be the answer. */
	if (rh.request != hdr->request || rh.flags != (VHU_VERSION | VHU_FLAG_REPLY)) {
		rc = -VHU_EREPLY;
		goto fail;
	}
	rc = hdr_accept(&rules, &rh, reply_fds);
	if (rc < 0) {
		goto fail;
	}
	rc = recv_body_rules(ep, &rules, &rh, reply_buf, reply_len, reply_fds, dl);
	return rc < 0 ? rc : (ssize_t)rh.size;
fail:
	vhu_fds_close(reply_fds);
	return rc;
}

ssize_t
vhu_endpoint_call(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
		  const void *body, size_t body_len, const int *fds, unsigned int nfds,
		  void *reply_buf, size_t reply_len, struct vhu_fds *reply_fds)
{
	return vhu_endpoint_call_hdr(ep, hdr, body, body_len, fds, nfds, NULL, reply_buf,
				     reply_len, reply_fds);
}
