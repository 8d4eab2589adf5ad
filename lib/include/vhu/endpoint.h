/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The blocking endpoint: one connected AF_UNIX stream socket, plain
 * sendmsg/recvmsg, no event loop. Raw transfers with fds, loops that
 * complete them, and the framing helpers that send and receive whole
 * vhost-user messages, validated by the rules of wire.h.
 *
 * Fd rules on receive:
 *  - every receive has a control buffer, so fds are never dropped silently;
 *  - fds are accepted only with the first chunk of a message (the header);
 *    fds that arrive with any later chunk are closed, and the call fails
 *    with -VHU_EINVALID;
 *  - MSG_CTRUNC closes every fd that arrived and fails with -VHU_ECTRUNC.
 *
 * Error rule: when a receive helper fails, every fd of that message has
 * been closed and the struct vhu_fds it was given is empty. On success the
 * caller owns the fds in it. The helpers that start a message (recv_header,
 * recv_body, recv_body_into_buf, recv_payload_into_buf, call) initialise
 * the set first, so it needs no vhu_fds_init() but must not hold fds the
 * caller still owns; a NULL set forbids fds (any that arrive are closed,
 * -VHU_EINVALID).
 *
 * Deadlines: an endpoint may have a timeout (vhu_endpoint_set_timeout(),
 * vhu_endpoint_connect_timeout()). Each call below that may wait then gets
 * one deadline, that many milliseconds from when it starts: a framing
 * helper covers its whole message, vhu_endpoint_call() the request and its
 * reply. A call whose deadline passes fails with -ETIMEDOUT (a code of its
 * own, not -VHU_ERETRY); the fds of the message it was receiving are
 * closed, as for any receive error. After -ETIMEDOUT in the middle of a
 * message the position in the stream is lost: destroy the endpoint. The
 * timeout does not change non-blocking semantics: on a socket made
 * non-blocking, a transfer with nothing to do still returns -VHU_ERETRY.
 *
 * Thread context: an endpoint is not thread-safe; use it from one thread
 * at a time.
 */
#ifndef VHU_ENDPOINT_H
#define VHU_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <vhu/fds.h>
#include <vhu/wire.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

struct vhu_endpoint;

/**
 * Create an endpoint on a path (the front-end side). No timeout: connect()
 * may block while the listener's backlog is full.
 * \param rules  what this side receives; NULL means front-end channel,
 *               expecting replies (a front-end on the main socket).
 * \return 0 with *out set, or -errno from socket()/connect().
 */
int vhu_endpoint_connect(const char *path, const struct vhu_rules *rules,
			 struct vhu_endpoint **out);

/**
 * vhu_endpoint_connect() with a deadline: the connect itself (which waits
 * while the listener's backlog is full) ends within timeout_ms, and the
 * endpoint keeps timeout_ms as its timeout for every later call (change it
 * with vhu_endpoint_set_timeout()). 0 means no limit.
 * \return 0 with *out set; -ETIMEDOUT if the deadline passed (the socket is
 *         closed: no fd is left behind); -EINVAL for a negative timeout;
 *         or -errno from socket()/connect().
 */
int vhu_endpoint_connect_timeout(const char *path, const struct vhu_rules *rules,
				 int timeout_ms, struct vhu_endpoint **out);

/**
 * Wrap a connected stream socket; the endpoint takes ownership of fd (also
 * on failure, when it is closed). Use this for an accepted socket or for
 * the back-end channel socket received with SET_BACKEND_REQ_FD (rules:
 * channel VHU_CHAN_BACKEND, expect VHU_EXPECT_REPLY). NULL rules: front-end
 * channel, expecting requests (the accepted, back-end side).
 * \return 0, -ENOTSOCK if fd is not a stream socket, -ENOMEM.
 */
int vhu_endpoint_from_fd(int fd, const struct vhu_rules *rules, struct vhu_endpoint **out);

/**
 * Create the back-end channel endpoint from the fds of a SET_BACKEND_REQ_FD
 * message (crosvm's create_backend_request_endpoint). Exactly one fd is
 * required; it is taken out of fds.
 * \return 0, or -VHU_EINVALID if fds does not hold exactly one fd (the
 *         fds are then closed).
 */
int vhu_endpoint_from_backend_req_fd(struct vhu_fds *fds, struct vhu_endpoint **out);

/**
 * A connected pair (socketpair), for tests and in-process peers. NULL rules:
 * a is a front-end (expects replies), b a back-end (expects requests).
 * \return 0 or -errno.
 */
int vhu_endpoint_pair(const struct vhu_rules *rules_a, const struct vhu_rules *rules_b,
		      struct vhu_endpoint **a, struct vhu_endpoint **b);

/** Close the socket and free the endpoint. NULL is a no-op. */
void vhu_endpoint_destroy(struct vhu_endpoint *ep);

/** \return the socket fd (still owned by the endpoint). */
int vhu_endpoint_fd(const struct vhu_endpoint *ep);

/** \return the endpoint's receive rules. */
const struct vhu_rules *vhu_endpoint_rules(const struct vhu_endpoint *ep);

/** Switch O_NONBLOCK. Non-blocking transfers return -VHU_ERETRY. \return 0 or -errno. */
int vhu_endpoint_set_nonblocking(struct vhu_endpoint *ep, bool on);

/**
 * Set the timeout of each later call, in milliseconds; 0 (the default)
 * means none. See "Deadlines" above.
 * \return 0, or -EINVAL for a negative value.
 */
int vhu_endpoint_set_timeout(struct vhu_endpoint *ep, int timeout_ms);

/** \return the endpoint's timeout in milliseconds (0: none). */
int vhu_endpoint_timeout(const struct vhu_endpoint *ep);

/* Raw transfers ----------------------------------------------------- */

/**
 * One sendmsg of the iovecs with the fds (MSG_NOSIGNAL).
 * \return bytes sent, -VHU_EFDS for > VHU_MAX_FDS fds, -VHU_ERETRY on
 *         EAGAIN/EINTR, or -errno (-EPIPE when the peer is gone).
 */
ssize_t vhu_endpoint_send_iov(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
			      const int *fds, unsigned int nfds);

/**
 * One recvmsg into the iovecs, with MSG_CMSG_CLOEXEC and a control buffer.
 * \param fds  where received fds go (appended); NULL means fds are not
 *             allowed here: any that arrive are closed and -VHU_EINVALID
 *             is returned.
 * \return bytes received (> 0), -VHU_EDISCONNECT when the peer has closed,
 *         -VHU_ERETRY, -VHU_ECTRUNC, -VHU_EFDS, -EINVAL for a zero-length
 *         iovec array, or -errno. On failure nothing is appended to fds.
 */
ssize_t vhu_endpoint_recv_iov(struct vhu_endpoint *ep, struct iovec *iov, unsigned int cnt,
			      struct vhu_fds *fds);

/**
 * Send all of the iovecs; fds go with the first chunk only. Interrupted and
 * would-block attempts are retried (waiting with poll() on a non-blocking
 * socket).
 * \return 0, -VHU_EPARTIAL if the socket stops taking bytes part-way,
 *         -VHU_EFDS, or -errno.
 */
int vhu_endpoint_send_all(struct vhu_endpoint *ep, const struct iovec *iov, unsigned int cnt,
			  const int *fds, unsigned int nfds);

/**
 * Fill all of the iovecs. fds are taken from the first recvmsg only (into
 * fds, which may be NULL to forbid them); fds on a later recvmsg are closed
 * and the call fails with -VHU_EINVALID. On a non-blocking socket with
 * nothing pending it returns -VHU_ERETRY at once (nothing consumed, fds
 * untouched); once a byte has arrived it waits with poll() for the rest.
 * On any other failure the fds in fds are closed and it is left empty.
 * \return 0, -VHU_EDISCONNECT if the peer closed before the first byte,
 *         -VHU_EPARTIAL if it closed after some, -VHU_ERETRY, or another
 *         negative error.
 */
int vhu_endpoint_recv_all(struct vhu_endpoint *ep, struct iovec *iov, unsigned int cnt,
			  struct vhu_fds *fds);

/* Framing helpers --------------------------------------------------- */

/**
 * Send a header-only message. hdr->size must be 0.
 * \return 0, -EINVAL if hdr->size != 0, -VHU_EPARTIAL, -VHU_EFDS, -errno.
 */
int vhu_endpoint_send_header(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			     const int *fds, unsigned int nfds);

/**
 * Send header and body (hdr->size must equal len) in one sendmsg, with fds.
 * \return 0, -EINVAL on a size mismatch, -VHU_EOVERSIZED, -VHU_EPARTIAL,
 *         -VHU_EFDS, -errno.
 */
int vhu_endpoint_send_message(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			      const void *body, size_t len, const int *fds, unsigned int nfds);

/**
 * Send header, body and payload (hdr->size must equal body_len +
 * payload_len) in one sendmsg, with fds.
 * \return 0, -VHU_EFDS for > VHU_MAX_FDS fds, -VHU_EOVERSIZED if the
 *         lengths overflow or exceed the maximum size, -EINVAL on a size
 *         mismatch, -VHU_EPARTIAL, -errno.
 */
int vhu_endpoint_send_message_with_payload(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
					   const void *body, size_t body_len,
					   const void *payload, size_t payload_len,
					   const int *fds, unsigned int nfds);

/**
 * Receive a header: exactly 12 bytes (a split header is completed), fds
 * allowed, then vhu_hdr_check(). For a message with no body the fd count is
 * checked too. The body, if any, is still on the socket: read it with
 * vhu_endpoint_recv_body_bytes(), which waits for it even on a
 * non-blocking socket (only a header that has not begun gives -VHU_ERETRY).
 * \return 0, -VHU_EDISCONNECT, -VHU_EPARTIAL, any vhu_hdr_check error,
 *         -VHU_EFDS, -VHU_ECTRUNC, -errno.
 */
int vhu_endpoint_recv_header(struct vhu_endpoint *ep, struct vhu_hdr *hdr, struct vhu_fds *fds);

/**
 * Receive the body of a message whose header was just received: exactly
 * hdr->size bytes into buf (len must be >= hdr->size), no fds allowed on
 * it; then the whole message is validated with vhu_msg_check() using the
 * fds already in fds. On failure the fds are closed.
 * \return 0, -VHU_EOVERSIZED if hdr->size > len, -VHU_EPARTIAL,
 *         -VHU_EINVALID (fds on the body), any vhu_msg_check error.
 */
int vhu_endpoint_recv_body_bytes(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
				 void *buf, size_t len, struct vhu_fds *fds);

/**
 * Receive a message whose body has exactly len bytes (crosvm's
 * `recv_body::<T>`): header then body, validated.
 * \return 0, -VHU_EBODYSIZE if hdr.size != len, or any error of the two
 *         steps.
 */
int vhu_endpoint_recv_body(struct vhu_endpoint *ep, struct vhu_hdr *hdr, void *body, size_t len,
			   struct vhu_fds *fds);

/**
 * Receive a message into a caller buffer: header, then hdr.size bytes.
 * \return the body length (>= 0), -VHU_EOVERSIZED if it does not fit in
 *         len, or any error of the two steps.
 */
ssize_t vhu_endpoint_recv_body_into_buf(struct vhu_endpoint *ep, struct vhu_hdr *hdr,
					void *buf, size_t len, struct vhu_fds *fds);

/**
 * Receive a message made of a fixed body followed by a payload: header,
 * then body_len bytes into body and the rest into payload. Unlike crosvm,
 * hdr.size < body_len is rejected (-VHU_EBODYSIZE). The whole message is
 * validated with vhu_msg_check() as one contiguous body: directly when
 * payload follows body in memory, otherwise from a copy in a stack buffer
 * of VHU_DEFAULT_MAX_SIZE bytes; a larger message into non-adjacent
 * buffers is refused with -VHU_EOVERSIZED.
 * \return the payload length (>= 0), -VHU_EOVERSIZED if the payload does
 *         not fit in payload_len, or any error of the steps.
 */
ssize_t vhu_endpoint_recv_payload_into_buf(struct vhu_endpoint *ep, struct vhu_hdr *hdr,
					   void *body, size_t body_len,
					   void *payload, size_t payload_len, struct vhu_fds *fds);

/**
 * Send a request and wait for its reply (front-end convenience): sends
 * hdr+body+fds, then receives one message into reply_buf and checks it
 * answers the request (same code, flags exactly VERSION|REPLY; checked
 * before the rest of the header). It waits for the reply even on a
 * non-blocking socket; the request must be one the peer answers.
 * \return the reply body length, -VHU_EREPLY if it does not answer the
 *         request, or any send/receive error. Fds in the reply go to
 *         reply_fds (may be NULL to forbid them).
 */
ssize_t vhu_endpoint_call(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			  const void *body, size_t body_len, const int *fds, unsigned int nfds,
			  void *reply_buf, size_t reply_len, struct vhu_fds *reply_fds);

/**
 * vhu_endpoint_call() that also hands back the reply's header, for callers
 * that report what a peer sent when the call fails. *reply_hdr (may be
 * NULL) is zeroed first and filled as soon as the reply's 12 header bytes
 * are in, so it also names a reply the call then rejects (-VHU_EREPLY, a
 * header or body check error). When the body was received but failed its
 * check, reply_buf holds its reply_hdr->size bytes.
 * \return as vhu_endpoint_call().
 */
ssize_t vhu_endpoint_call_hdr(struct vhu_endpoint *ep, const struct vhu_hdr *hdr,
			      const void *body, size_t body_len, const int *fds, unsigned int nfds,
			      struct vhu_hdr *reply_hdr, void *reply_buf, size_t reply_len,
			      struct vhu_fds *reply_fds);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
