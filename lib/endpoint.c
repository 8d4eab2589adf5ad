/* SPDX-License-Identifier: MIT */
/*
 * The blocking endpoint. Everything the peer sends is hostile: a header is
 * validated before its size is trusted, a body before a caller sees it, and
 * every fd that arrives is either handed to the caller's struct vhu_fds or
 * closed before we return. fds are only accepted with the first chunk of a
 * message, because a read that crosses into the next message would
 * otherwise attribute that message's fds to this one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
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
};

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
	*out = ep;
	return 0;
}

int
vhu_endpoint_connect(const char *path, const struct vhu_rules *rules, struct vhu_endpoint **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd, err;

	if (!path || !out) {
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
		err = errno;
		return -err;
	}
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err = errno;
		close(fd);
		return -err;
	}
	return make_endpoint(fd, rules ? rules : &rules_front_reply, out);
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

/* Raw transfers ----------------------------------------------------- */

/* One sendmsg. Returns bytes sent or -errno as the kernel gave it (EINTR kept). */
static ssize_t
send_once(int sock, const struct iovec *iov, unsigned int cnt, const int *fds, unsigned int nfds)
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
	n = sendmsg(sock, &mh, MSG_NOSIGNAL);
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
recv_once(int sock, struct iovec *iov, unsigned int cnt, struct vhu_fds *fds)
{
	union vhu_cmsg_buf cbuf;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = cnt };
	struct vhu_fds got;
	unsigned int i;
	ssize_t n;
	int rc, err;

	vhu_cmsg_prep_recv(&mh, &cbuf);
	n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
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

static int
wait_io(int sock, short events)
{
	struct pollfd p = { .fd = sock, .events = events };
	int err;

	for (;;) {
		if (poll(&p, 1, -1) >= 0) {
			return 0;
		}
		err = errno;
		if (err != EINTR) {
			return -err;
		}
	}
}

static ssize_t
retry_code(ssize_t n)
{
	return (n == -EINTR || n == -EAGAIN) ? -VHU_ERETRY : n;
}

ssize_t
vhu_endpoint_send_iov(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
		      const int *fds, unsigned int nfds)
{
	return retry_code(send_once(ep->fd, iov, cnt, fds, nfds));
}

ssize_t
vhu_endpoint_recv_iov(struct vhu_endpoint *ep, struct iovec *iov, unsigned int cnt,
		      struct vhu_fds *fds)
{
	if (vhu_iov_len(iov, cnt) == 0) {
		return -EINVAL;
	}
	return retry_code(recv_once(ep->fd, iov, cnt, fds));
}

int
vhu_endpoint_send_all(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
		      const int *fds, unsigned int nfds)
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
		ssize_t n = send_once(ep->fd, cur, k, first ? fds : NULL, first ? nfds : 0);
		int rc;

		if (n > 0) {
			off += (size_t)n;
		} else if (n == 0) {
			return -VHU_EPARTIAL;
		} else if (n == -EINTR) {
			continue;
		} else if (n == -EAGAIN) {
			rc = wait_io(ep->fd, POLLOUT);
			if (rc < 0) {
				return rc;
			}
		} else {
			return (int)n;
		}
	}
	return 0;
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
	  struct vhu_fds *fds, unsigned int flags)
{
	size_t total = vhu_iov_len(iov, cnt), off = 0;
	struct iovec cur[CHUNK_IOVS];

	while (off < total) {
		unsigned int k = vhu_iov_tail(iov, cnt, off, cur, CHUNK_IOVS);
		ssize_t n = recv_once(ep->fd, cur, k, off == 0 ? fds : NULL);
		int rc;

		if (n > 0) {
			off += (size_t)n;
		} else if (n == -EINTR) {
			continue;
		} else if (n == -EAGAIN) {
			if (off == 0 && !(flags & RECV_WAIT)) {
				return -VHU_ERETRY;
			}
			rc = wait_io(ep->fd, POLLIN);
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
	int rc = recv_loop(ep, iov, cnt, fds, 0);

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
	return vhu_endpoint_send_all(ep, &iov, 1, fds, nfds);
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
	return vhu_endpoint_send_all(ep, iov, 3, fds, nfds);
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
	     unsigned int flags)
{
	struct iovec iov = { .iov_base = hdr, .iov_len = VHU_HDR_SIZE };

	if (fds) {
		vhu_fds_init(fds);
	}
	return recv_loop(ep, &iov, 1, fds, flags);
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

int
vhu_endpoint_recv_header(struct vhu_endpoint *ep, struct vhu_hdr *hdr, struct vhu_fds *fds)
{
	int rc = recv_hdr_raw(ep, hdr, fds, 0);

	if (rc == 0) {
		rc = hdr_accept(&ep->rules, hdr, fds);
	}
	if (rc < 0) {
		vhu_fds_close(fds);
	}
	return rc;
}

static int
recv_body_rules(struct vhu_endpoint *ep, const struct vhu_rules *rules,
		const struct vhu_hdr *hdr, void *buf, size_t len, struct vhu_fds *fds)
{
	struct iovec iov = { .iov_base = buf, .iov_len = hdr->size };
	int rc;

	if (hdr->size > len) {
		rc = -VHU_EOVERSIZED;
		goto fail;
	}
	if (hdr->size > 0) {
		rc = recv_loop(ep, &iov, 1, NULL, RECV_WAIT | RECV_INMSG);
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
	return recv_body_rules(ep, &ep->rules, hdr, buf, len, fds);
}

int
vhu_endpoint_recv_body(struct vhu_endpoint *ep, struct vhu_hdr *hdr, void *body, size_t len,
		       struct vhu_fds *fds)
{
	int rc = vhu_endpoint_recv_header(ep, hdr, fds);

	if (rc < 0) {
		return rc;
	}
	if (hdr->size != len) {
		vhu_fds_close(fds);
		return -VHU_EBODYSIZE;
	}
	return recv_body_rules(ep, &ep->rules, hdr, body, len, fds);
}

ssize_t
vhu_endpoint_recv_body_into_buf(struct vhu_endpoint *ep, struct vhu_hdr *hdr,
				void *buf, size_t len, struct vhu_fds *fds)
{
	int rc = vhu_endpoint_recv_header(ep, hdr, fds);

	if (rc < 0) {
		return rc;
	}
	rc = recv_body_rules(ep, &ep->rules, hdr, buf, len, fds);
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
	const void *whole;
	size_t plen;
	int rc;

	rc = vhu_endpoint_recv_header(ep, hdr, fds);
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
	rc = recv_loop(ep, iov, 2, NULL, RECV_WAIT | RECV_INMSG);
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
vhu_endpoint_call(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
		  const void *body, size_t body_len, const int *fds, unsigned int nfds,
		  void *reply_buf, size_t reply_len, struct vhu_fds *reply_fds)
{
	struct vhu_rules rules = ep->rules;
	struct vhu_hdr rh;
	int rc;

	if (reply_fds) {
		vhu_fds_init(reply_fds);
	}
	rc = vhu_endpoint_send_message(ep, hdr, body, body_len, fds, nfds);
	if (rc < 0) {
		return rc;
	}
	/* Whatever the endpoint normally expects, what comes back now must be a reply. */
	rules.expect = VHU_EXPECT_REPLY;
	/* A reply is due: wait for it even on a non-blocking socket. */
	rc = recv_hdr_raw(ep, &rh, reply_fds, RECV_WAIT);
	if (rc < 0) {
		goto fail;
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
	rc = recv_body_rules(ep, &rules, &rh, reply_buf, reply_len, reply_fds);
	return rc < 0 ? rc : (ssize_t)rh.size;
fail:
	vhu_fds_close(reply_fds);
	return rc;
}
