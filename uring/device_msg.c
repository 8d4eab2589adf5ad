/* SPDX-License-Identifier: MIT */
/*
 * The back-end's side of the vhost-user protocol for a device: one handler
 * per request, and one place (vhu__dev_on_message) that decides whether to
 * reply, ack, hold or close.
 *
 * Security model: the front-end is one step away from a guest that may have
 * escaped. The engine has validated layout and fd counts and fd kinds
 * already; every field is still range-checked here, bodies are copied out
 * before use, no value from the wire indexes an array unchecked, and memory
 * and queue state go through <vhu/guest_mem.h> and <vhu/vq.h>, which
 * check again. A request the layer does not implement closes the
 * connection instead of being half-handled.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "device_internal.h"

#define BIT(n)		(1ull << (n))
#define PF(name)	BIT(VHU_PROTOCOL_F_##name)

/* What the layer implements, and so offers: never a bit without its handler. */
#define DEV_PROTOCOL_FEATURES	(PF(MQ) | PF(REPLY_ACK) | PF(BACKEND_REQ) | PF(CONFIG) | \
				 PF(CONFIGURE_MEM_SLOTS) | PF(STATUS) | PF(RESET_DEVICE))

/* Besides those, what the application opted in to. */
static uint64_t
protocol_offered(const struct vhu_dev *d)
{
	return DEV_PROTOCOL_FEATURES | (d->srv->o.inflight ? PF(INFLIGHT_SHMFD) : 0);
}

/* A reply body: GET_CONFIG's is the largest. */
struct reply {
	bool present;
	uint32_t len;
	uint8_t body[VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD];
	int fd;			/* sent with the reply (GET_INFLIGHT_FD), or -1 */
};

/* Handler results besides 0 and -errno. */
#define HOLD	1		/* requests in flight: deliver this message again once drained */

typedef int handler_fn(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r);

struct handler {
	handler_fn *fn;
	uint64_t gate;		/* protocol features that must have been acked */
	bool replies;		/* answers with a body of its own: never an extra ack */
};

static uint64_t
offered(const struct vhu_dev *d)
{
	return d->srv->o.features | BIT(VHU_F_PROTOCOL_FEATURES);
}

static void
reply_body(struct reply *r, const void *body, uint32_t len)
{
	r->present = true;
	r->len = len;
	if (len > 0) {
		memcpy(r->body, body, len);
	}
}

static void
reply_u64(struct reply *r, uint64_t v)
{
	reply_body(r, &v, sizeof(v));
}

static int
body_get(const struct vhu_msg *msg, void *dst, size_t len)
{
	if (msg->hdr.size != len || (len > 0 && msg->body == NULL)) {
		return -VHU_EBODYSIZE;
	}
	memcpy(dst, msg->body, len);
	return 0;
}

static struct dev_queue *
queue_at(struct vhu_dev *d, uint64_t index)
{
	return index < d->nq ? &d->q[index] : NULL;
}

static int
fd_take_one(struct vhu_msg *msg)
{
	if (msg->fds.n != 1) {
		return -VHU_EFDS;
	}
	return vhu_fds_take(&msg->fds, 0);
}

/* After a memory-table change: move every ring to the new table now. */
static void
queues_refresh(struct vhu_dev *d)
{
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		(void)vhu_vq_refresh(d->q[i].vq);
	}
}

/* Negotiation ------------------------------------------------------- */

static int
get_features(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	reply_u64(r, offered(d));
	return 0;
}

static int
set_features(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	uint64_t v;
	unsigned int i;
	int rc = body_get(msg, &v, sizeof(v));

	if (rc < 0) {
		return rc;
	}
	if ((v & ~offered(d)) != 0) {
		return -EINVAL;
	}
	d->features = v;
	for (i = 0; i < d->nq; i++) {
		vhu_vq_set_features(d->q[i].vq, v);
	}
	return 0;
}

static int
get_protocol_features(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	reply_u64(r, protocol_offered(d));
	return 0;
}

static int
set_protocol_features(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	uint64_t v;
	int rc = body_get(msg, &v, sizeof(v));

	if (rc < 0) {
		return rc;
	}
	if ((v & ~protocol_offered(d)) != 0) {
		return -EINVAL;
	}
	d->protocol_features = v;
	d->protocol_set = true;
	return 0;
}

static int
get_queue_num(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	reply_u64(r, d->nq);
	return 0;
}

static unsigned int
mem_slots(const struct vhu_dev *d)
{
	return d->srv->o.max_mem_slots != 0 ? d->srv->o.max_mem_slots : VHU_MEM_MAX_SLOTS;
}

static int
get_max_mem_slots(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	reply_u64(r, mem_slots(d));
	return 0;
}

static int
set_backend_req_fd(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	int fd = fd_take_one(msg);

	if (fd < 0) {
		return fd;
	}
	/* The channel is kept for its lifetime; nothing is sent on it yet. */
	if (d->backend_fd >= 0) {
		close(d->backend_fd);
	}
	d->backend_fd = fd;
	return 0;
}

static int
set_owner(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	if (d->owner) {
		return -EBUSY;
	}
	d->owner = true;
	return 0;
}

/* Stop every queue; HOLD while the application still has requests. */
static int
stop_all(struct vhu_dev *d)
{
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		(void)vhu_vq_get_base(d->q[i].vq);
		vhu__dq_stop(&d->q[i]);
	}
	return vhu__dev_inflight(d) > 0 ? HOLD : 0;
}

void
vhu__dev_reset_state(struct vhu_dev *d)
{
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		struct dev_queue *q = &d->q[i];

		vhu_vq_reset(q->vq);
		vhu__dq_set_call(q, -1);
		if (q->err_fd >= 0) {
			close(q->err_fd);
			q->err_fd = -1;
		}
	}
	vhu__dev_inflight_release(d);
	(void)vhu_mem_reset(d->mem);
	d->features = 0;
	d->status = 0;
}

static int
reset_owner(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	int rc = stop_all(d);

	if (rc != 0) {
		return rc;
	}
	vhu__dev_reset_state(d);
	d->owner = false;
	return 0;
}

static int
reset_device(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	int rc = stop_all(d);

	if (rc != 0) {
		return rc;
	}
	vhu__dev_reset_state(d);
	return 0;
}

/* Memory -------------------------------------------------------------- */

static int
set_mem_table(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS];
	unsigned int i, n;
	int rc;

	if (msg->hdr.size < VHU_MEM_TABLE_SIZE(0) || msg->body == NULL) {
		return -VHU_EBODYSIZE;
	}
	memcpy(&t, msg->body, VHU_MEM_TABLE_SIZE(0));
	n = t.nregions;
	if (n == 0 || n > VHU_MAX_MEM_REGIONS || msg->hdr.size != VHU_MEM_TABLE_SIZE(n)) {
		return -VHU_EBODY;
	}
	if (msg->fds.n != n) {
		return -VHU_EFDS;
	}
	memcpy(&t, msg->body, VHU_MEM_TABLE_SIZE(n));
	for (i = 0; i < n; i++) {
		fds[i] = vhu_fds_take(&msg->fds, i);
	}
	/* vhu_mem owns the fds from here, success or not. */
	rc = vhu_mem_set_table(d->mem, &t, fds, n);
	queues_refresh(d);
	return rc;
}

static int
add_mem_reg(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_single_region sr;
	int rc = body_get(msg, &sr, sizeof(sr));
	int fd;

	if (rc < 0) {
		return rc;
	}
	fd = fd_take_one(msg);
	if (fd < 0) {
		return fd;
	}
	if (vhu_mem_nregions(d->mem) >= mem_slots(d)) {
		close(fd);
		return -VHU_EMEMSLOTS;
	}
	return vhu_mem_add_region(d->mem, &sr.region, fd);
}

static int
rem_mem_reg(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_single_region sr;
	int rc = body_get(msg, &sr, sizeof(sr));

	if (rc < 0) {
		return rc;
	}
	rc = vhu_mem_remove_region(d->mem, &sr.region);
	queues_refresh(d);
	return rc;
}

/* Vrings ------------------------------------------------------------ */

static int
vring_state(struct vhu_dev *d, struct vhu_msg *msg, struct vhu_vring_state *st,
	    struct dev_queue **q)
{
	int rc = body_get(msg, st, sizeof(*st));

	if (rc < 0) {
		return rc;
	}
	*q = queue_at(d, st->index);
	return *q == NULL ? -ERANGE : 0;
}

static int
set_vring_num(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_state st;
	struct dev_queue *q;
	int rc = vring_state(d, msg, &st, &q);

	return rc < 0 ? rc : vhu_vq_set_num(q->vq, st.num);
}

static int
set_vring_base(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_state st;
	struct dev_queue *q;
	int rc = vring_state(d, msg, &st, &q);

	return rc < 0 ? rc : vhu_vq_set_base(q->vq, st.num);
}

static int
get_vring_base(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_state st;
	struct dev_queue *q;
	int rc = vring_state(d, msg, &st, &q);

	if (rc < 0) {
		return rc;
	}
	/* Stop first (again, if this is the held message coming back): no more pops. */
	st.num = vhu_vq_get_base(q->vq);
	vhu__dq_stop(q);
	/* The cancelled kick read too: its fd is closed by the time the reply leaves. */
	if (vhu_vq_inflight(q->vq) > 0 || !vhu__dq_kick_idle(q)) {
		return HOLD;
	}
	reply_body(r, &st, sizeof(st));
	return 0;
}

static int
set_vring_addr(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_addr a;
	struct dev_queue *q;
	int rc = body_get(msg, &a, sizeof(a));

	if (rc < 0) {
		return rc;
	}
	q = queue_at(d, a.index);
	if (q == NULL) {
		return -ERANGE;
	}
	/* Dirty logging needs LOG_ALL and SET_LOG_BASE, neither offered. */
	if (a.flags != 0) {
		return -EINVAL;
	}
	return vhu_vq_set_addr(q->vq, &a);
}

static int
set_vring_enable(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_state st;
	struct dev_queue *q;
	int rc = vring_state(d, msg, &st, &q);

	if (rc < 0) {
		return rc;
	}
	rc = vhu_vq_set_enable(q->vq, st.num);
	if (rc == 0 && st.num == 1) {
		vhu__dq_work(q);
	}
	return rc;
}

enum vring_file { VRING_KICK, VRING_CALL, VRING_ERR };

static int
set_vring_file(struct vhu_dev *d, struct vhu_msg *msg, enum vring_file which)
{
	struct dev_queue *q;
	uint64_t v;
	int fd = -1;
	int rc = body_get(msg, &v, sizeof(v));

	if (rc < 0) {
		return rc;
	}
	if ((v & ~(VHU_VRING_IDX_MASK | VHU_VRING_NOFD)) != 0) {
		return -VHU_EBODY;
	}
	q = queue_at(d, v & VHU_VRING_IDX_MASK);
	if (q == NULL) {
		return -ERANGE;
	}
	if ((v & VHU_VRING_NOFD) == 0) {
		fd = fd_take_one(msg);
		if (fd < 0) {
			return fd;
		}
	}
	switch (which) {
	case VRING_KICK:
		/* With NOFD the front-end promises to poll: the queue starts either way. */
		vhu__dq_set_kick(q, fd);
		rc = vhu_vq_start(q->vq);
		if (rc == -EINVAL) {
			/*
			 * No size or addresses yet: the fd is kept and the ring
			 * waits (the spec starts a ring on a kick, and libvhost-user
			 * takes a kick fd at any time); a kick fd sent once it is
			 * configured starts it.
			 */
			return 0;
		}
		if (rc == -VHU_EINFLIGHT) {
			/* The front-end's inflight region is refused: this device ends. */
			vhu_dev_close(d, rc);
		}
		if (rc == 0) {
			/* Requests to submit again, if any, are popped now: no kick comes for them. */
			vhu__dq_work(q);
		}
		return rc;
	case VRING_CALL:
		vhu__dq_set_call(q, fd);
		return 0;
	case VRING_ERR:
		if (q->err_fd >= 0) {
			close(q->err_fd);
		}
		q->err_fd = fd;
		return 0;
	}
	return 0;
}

static int
set_vring_kick(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return set_vring_file(d, msg, VRING_KICK);
}

static int
set_vring_call(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return set_vring_file(d, msg, VRING_CALL);
}

static int
set_vring_err(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return set_vring_file(d, msg, VRING_ERR);
}

/* Inflight region ----------------------------------------------------- */

static int
get_inflight_fd(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_inflight b;
	int rc = body_get(msg, &b, sizeof(b));

	if (rc < 0) {
		return rc;
	}
	rc = vhu__dev_inflight_create(d, &b, &r->fd);
	if (rc < 0) {
		return rc;
	}
	reply_body(r, &b, sizeof(b));
	return 0;
}

static int
set_inflight_fd(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_inflight b;
	int fd, rc = body_get(msg, &b, sizeof(b));

	if (rc < 0) {
		return rc;
	}
	fd = fd_take_one(msg);
	if (fd < 0) {
		return fd;
	}
	return vhu__dev_inflight_set(d, &b, fd);
}

/* Config and status ------------------------------------------------- */

static int
get_config(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	const struct vhu_dev_server *srv = d->srv;
	struct vhu_config c;
	int rc = 0;

	if (msg->hdr.size < VHU_CONFIG_HDR_SIZE || msg->body == NULL) {
		return -VHU_EBODYSIZE;
	}
	memcpy(&c, msg->body, VHU_CONFIG_HDR_SIZE);
	if (msg->hdr.size != VHU_CONFIG_HDR_SIZE + (uint64_t)c.size ||
	    c.size > VHU_CONFIG_MAX_PAYLOAD) {
		return -VHU_EBODYSIZE;
	}
	if (srv->ops.get_config != NULL) {
		rc = srv->ops.get_config(d, c.offset, r->body + VHU_CONFIG_HDR_SIZE, c.size,
					 srv->o.ctx);
	} else if ((uint64_t)c.offset + c.size > srv->o.config_size) {
		rc = -ERANGE;
	} else {
		memcpy(r->body + VHU_CONFIG_HDR_SIZE, srv->config + c.offset, c.size);
	}
	/* A failure is answered, not fatal: an empty reply is the error answer front-ends know. */
	if (rc < 0) {
		reply_body(r, NULL, 0);
		return 0;
	}
	memcpy(r->body, &c, VHU_CONFIG_HDR_SIZE);
	r->present = true;
	r->len = VHU_CONFIG_HDR_SIZE + c.size;
	return 0;
}

static int
set_config(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	/* The config space is the application's; writes are accepted and dropped. */
	return 0;
}

static int
set_status(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	uint64_t v;
	int rc = body_get(msg, &v, sizeof(v));

	if (rc < 0) {
		return rc;
	}
	if (v > 0xff) {
		return -EINVAL;
	}
	d->status = (uint8_t)v;
	return 0;
}

static int
get_status(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	reply_u64(r, d->status);
	return 0;
}

/* Dispatch ---------------------------------------------------------- */

static const struct handler handlers[VHU_REQ_MAX + 1] = {
	[VHU_REQ_GET_FEATURES] = { get_features, 0, true },
	[VHU_REQ_SET_FEATURES] = { set_features, 0, false },
	[VHU_REQ_SET_OWNER] = { set_owner, 0, false },
	[VHU_REQ_RESET_OWNER] = { reset_owner, 0, false },
	[VHU_REQ_SET_MEM_TABLE] = { set_mem_table, 0, false },
	[VHU_REQ_SET_VRING_NUM] = { set_vring_num, 0, false },
	[VHU_REQ_SET_VRING_ADDR] = { set_vring_addr, 0, false },
	[VHU_REQ_SET_VRING_BASE] = { set_vring_base, 0, false },
	[VHU_REQ_GET_VRING_BASE] = { get_vring_base, 0, true },
	[VHU_REQ_SET_VRING_KICK] = { set_vring_kick, 0, false },
	[VHU_REQ_SET_VRING_CALL] = { set_vring_call, 0, false },
	[VHU_REQ_SET_VRING_ERR] = { set_vring_err, 0, false },
	[VHU_REQ_GET_PROTOCOL_FEATURES] = { get_protocol_features, 0, true },
	[VHU_REQ_SET_PROTOCOL_FEATURES] = { set_protocol_features, 0, false },
	[VHU_REQ_GET_QUEUE_NUM] = { get_queue_num, PF(MQ), true },
	[VHU_REQ_SET_VRING_ENABLE] = { set_vring_enable, 0, false },
	[VHU_REQ_SET_BACKEND_REQ_FD] = { set_backend_req_fd, PF(BACKEND_REQ), false },
	[VHU_REQ_GET_CONFIG] = { get_config, PF(CONFIG), true },
	[VHU_REQ_SET_CONFIG] = { set_config, PF(CONFIG), false },
	[VHU_REQ_RESET_DEVICE] = { reset_device, PF(RESET_DEVICE), false },
	[VHU_REQ_GET_MAX_MEM_SLOTS] = { get_max_mem_slots, PF(CONFIGURE_MEM_SLOTS), true },
	[VHU_REQ_ADD_MEM_REG] = { add_mem_reg, PF(CONFIGURE_MEM_SLOTS), false },
	[VHU_REQ_REM_MEM_REG] = { rem_mem_reg, PF(CONFIGURE_MEM_SLOTS), false },
	[VHU_REQ_SET_STATUS] = { set_status, PF(STATUS), false },
	[VHU_REQ_GET_STATUS] = { get_status, PF(STATUS), true },
	[VHU_REQ_GET_INFLIGHT_FD] = { get_inflight_fd, PF(INFLIGHT_SHMFD), true },
	[VHU_REQ_SET_INFLIGHT_FD] = { set_inflight_fd, PF(INFLIGHT_SHMFD), false },
};

/* Tell the application (ops->request_failed) what failed and what is done about it. */
static void
failed(struct vhu_dev *d, uint32_t req, int err, uint64_t missing, bool nacked)
{
	struct vhu_dev_failure f;

	if (d->srv->ops.request_failed == NULL) {
		return;
	}
	f.request = req;
	f.error = err;
	f.missing_protocol_features = missing;
	f.nacked = nacked;
	d->srv->ops.request_failed(d, &f, d->srv->o.ctx);
}

int
vhu__dev_on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct vhu_dev *d = ctx;
	uint32_t req = msg->hdr.request;
	const struct handler *h = req <= VHU_REQ_MAX ? &handlers[req] : NULL;
	uint64_t acking;
	struct reply r;
	struct vhu_hdr hdr;
	int rc;

	if (d == NULL || d->closing) {
		return -ENOTCONN;
	}
	if (h == NULL || h->fn == NULL || (h->gate & ~d->protocol_features) != 0) {
		failed(d, req, -EOPNOTSUPP, h != NULL ? h->gate & ~d->protocol_features : 0,
		       false);
		return -EOPNOTSUPP;
	}
	/*
	 * SET_PROTOCOL_FEATURES is acked by the rule it sets: a front-end that
	 * offers REPLY_ACK in it waits for the answer.
	 */
	acking = d->protocol_features;
	if (req == VHU_REQ_SET_PROTOCOL_FEATURES &&
	    body_get(msg, &acking, sizeof(acking)) < 0) {
		acking = 0;
	}
	r.present = false;
	r.len = 0;
	r.fd = -1;
	rc = h->fn(d, msg, &r);
	if (rc == HOLD) {
		/* Delivered again (fds intact) once the requests in flight are done. */
		d->held = true;
		return VHU_MSG_HOLD;
	}
	if (!h->replies && (acking & PF(REPLY_ACK)) != 0 &&
	    (msg->hdr.flags & VHU_FLAG_NEED_REPLY) != 0) {
		if (rc < 0) {
			failed(d, req, rc, 0, true);
		}
		reply_u64(&r, rc < 0 ? 1 : 0);
		rc = 0;
	}
	if (rc < 0) {
		failed(d, req, rc, 0, false);
		return rc;	/* nothing to report it with: closing is the only signal left */
	}
	if (!r.present) {
		return 0;
	}
	hdr = vhu_hdr_reply(req, r.len);
	/* The engine delivers a request only with room for its reply. */
	rc = vhu_conn_send(conn, &hdr, r.body, r.len, NULL, 0, r.fd >= 0 ? &r.fd : NULL,
			   r.fd >= 0 ? 1 : 0);
	if (rc < 0 && r.fd >= 0) {
		close(r.fd);
	}
	return rc;
}
