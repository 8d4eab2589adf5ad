/* SPDX-License-Identifier: MIT */
/*
 * One front-end connection of vhu-backend: the vhost-user state it built up
 * (features, owner, memory table, vrings, status) and the handling of each
 * request. Transport-free: a handler turns one validated message into at
 * most one reply, which the caller sends.
 */
#ifndef VHU_BACKEND_SESSION_H
#define VHU_BACKEND_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include <vhu/uring.h>
#include <vhu/wire.h>

#include "device.h"

/* The reply to one request: a body of its own or a u64 ack. */
struct be_reply {
	bool present;
	struct vhu_hdr hdr;
	size_t len;
	uint8_t body[VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD];
};

struct be_session;

/*
 * A fresh session for connection number id, serving dev (which must outlive
 * it). \return the session, or NULL when out of memory.
 */
struct be_session *be_session_new(const struct be_device *dev, unsigned int id);

/* Close every fd the session keeps and free it. NULL is a no-op. */
void be_session_free(struct be_session *s);

/* \return the connection number given at creation (for log lines). */
unsigned int be_session_id(const struct be_session *s);

/*
 * Handle one message (already validated by the engine). fds the session
 * keeps are taken out of msg->fds; the rest stay for the caller to close.
 * \return 0 (reply->present says whether to send reply), or a negative
 *         error when the connection must be closed: -EOPNOTSUPP for a
 *         request that is not implemented or not allowed yet, or the
 *         failure of a request that could not be reported with an ack.
 *         The reason has been logged.
 */
int be_session_handle(struct be_session *s, struct vhu_msg *msg, struct be_reply *reply);

#endif
