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
 *
 * What a request does to queues and guest memory is a command (struct
 * dev_cmd) applied to a port (vhu__port_apply): at once for the local
 * port, on its own ring for a remote one (the message is held until every
 * port answered, then delivered again and the answers collected).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

#define HOLD	DEV_HOLD

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

/*
 * Fd i of a message, for a command: taken, or a copy when the command goes
 * to another ring (the message is held meanwhile, and a held message keeps
 * its fds; the engine closes them once it is done). \return the fd or -errno.
 */
static int
fd_for_cmd(struct vhu_msg *msg, unsigned int i, bool forwarded)
{
	int fd;

	if (!forwarded) {
		return vhu_fds_take(&msg->fds, i);
	}
	fd = fcntl(msg->fds.fd[i], F_DUPFD_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

/* Whether device-wide commands go to other rings too. */
static bool
has_remote(const struct vhu_dev *d)
{
	unsigned int i;

	for (i = 1; i < d->nports; i++) {
		if (d->ports[i].nqueues > 0) {
			return true;
		}
	}
	return false;
}

/* Commands ---------------------------------------------------------- */

static void
cmd_init(struct dev_cmd *c, uint8_t op)
{
	unsigned int i;

	memset(c, 0, sizeof(*c));
	c->op = op;
	c->fd = -1;
	for (i = 0; i < VHU_MAX_MEM_REGIONS; i++) {
		c->fds[i] = -1;
	}
}

/* Close the fds a command still carries (not applied, or applied elsewhere). */
void
vhu__cmd_release(struct dev_cmd *c)
{
	unsigned int i;

	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	for (i = 0; i < VHU_MAX_MEM_REGIONS; i++) {
		if (c->fds[i] >= 0) {
			close(c->fds[i]);
			c->fds[i] = -1;
		}
	}
}

/* A copy of c for another port, with its own fds. \return 0, or -errno of dup. */
static int
cmd_copy(struct dev_cmd *dst, const struct dev_cmd *c)
{
	unsigned int i;

	*dst = *c;
	dst->fd = -1;
	for (i = 0; i < VHU_MAX_MEM_REGIONS; i++) {
		dst->fds[i] = -1;
	}
	if (c->fd >= 0 && (dst->fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		return -errno;
	}
	for (i = 0; i < VHU_MAX_MEM_REGIONS; i++) {
		if (c->fds[i] >= 0 && (dst->fds[i] = fcntl(c->fds[i], F_DUPFD_CLOEXEC, 0)) < 0) {
			int rc = -errno;

			vhu__cmd_release(dst);
			return rc;
		}
	}
	return 0;
}

/* After a memory-table change: move the port's rings to the new table now. */
static void
port_refresh(struct dev_port *p)
{
	struct vhu_dev *d = p->dev;
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p) {
			(void)vhu_vq_refresh(d->q[i].vq);
		}
	}
}

/* Stop the port's queues; HOLD while the application still has requests of them. */
static int
port_stop(struct dev_port *p)
{
	struct vhu_dev *d = p->dev;
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p) {
			(void)vhu_vq_get_base(d->q[i].vq);
			vhu__dq_stop(&d->q[i]);
		}
	}
	return vhu__port_inflight(p) > 0 ? HOLD : 0;
}

static void
port_reset(struct dev_port *p)
{
	struct vhu_dev *d = p->dev;
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		struct dev_queue *q = &d->q[i];

		if (q->port != p) {
			continue;
		}
		vhu_vq_reset(q->vq);
		vhu__dq_set_call(q, -1);
		if (q->err_fd >= 0) {
			close(q->err_fd);
			q->err_fd = -1;
		}
	}
	/* The control ring unmaps the inflight region once every ring has let go. */
	vhu__port_inflight_detach(p);
	(void)vhu_mem_reset(p->mem);
}

static int
take_fd(int *fd)
{
	int v = *fd;

	*fd = -1;
	return v;
}

/*
 * Apply c to port p, on p's ring. Queue commands name a queue homed on p.
 * Consumes the fds it uses. \return 0, -errno, or HOLD (GET_BASE and
 * RESET while requests are in flight: applied again once they are back).
 */
int
vhu__port_apply(struct dev_port *p, struct dev_cmd *c)
{
	struct vhu_dev *d = p->dev;
	struct dev_queue *q = c->q < d->nq ? &d->q[c->q] : &d->q[0];
	unsigned int i;
	int rc;

	switch (c->op) {
	case OP_NUM:
		return vhu_vq_set_num(q->vq, c->num);
	case OP_ADDR:
		return vhu_vq_set_addr(q->vq, &c->addr);
	case OP_BASE:
		return vhu_vq_set_base(q->vq, c->num);
	case OP_GET_BASE:
		/* Stop first (again, if this is the held command coming back): no more pops. */
		c->num = vhu_vq_get_base(q->vq);
		vhu__dq_stop(q);
		/* The cancelled kick read too: its fd is closed by the time the reply leaves. */
		return vhu_vq_inflight(q->vq) > 0 || !vhu__dq_kick_idle(q) ? HOLD : 0;
	case OP_ENABLE:
		rc = vhu_vq_set_enable(q->vq, c->num);
		if (rc == 0 && c->num == 1) {
			vhu__dq_work(q);
		}
		return rc;
	case OP_KICK:
		/* With NOFD the front-end promises to poll: the queue starts either way. */
		vhu__dq_set_kick(q, take_fd(&c->fd));
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
			vhu__dq_fault(q, rc);
		}
		if (rc == 0) {
			/* Requests to submit again, if any, are popped now: no kick comes for them. */
			vhu__dq_work(q);
		}
		return rc;
	case OP_CALL:
		vhu__dq_set_call(q, take_fd(&c->fd));
		return 0;
	case OP_ERR:
		if (q->err_fd >= 0) {
			close(q->err_fd);
		}
		q->err_fd = take_fd(&c->fd);
		return 0;
	case OP_FEATURES:
		for (i = 0; i < d->nq; i++) {
			if (d->q[i].port == p) {
				vhu_vq_set_features(d->q[i].vq, c->features);
			}
		}
		return 0;
	case OP_MEM_TABLE:
		/* vhu_mem owns the fds from here, success or not. */
		rc = vhu_mem_set_table(p->mem, &c->table, c->fds, c->table.nregions);
		for (i = 0; i < VHU_MAX_MEM_REGIONS; i++) {
			c->fds[i] = -1;
		}
		port_refresh(p);
		return rc;
	case OP_MEM_ADD:
		return vhu_mem_add_region(p->mem, &c->region, take_fd(&c->fd));
	case OP_MEM_REM:
		rc = vhu_mem_remove_region(p->mem, &c->region);
		port_refresh(p);
		return rc;
	case OP_RESET:
		rc = port_stop(p);
		if (rc != 0) {
			return rc;
		}
		port_reset(p);
		return 0;
	case OP_INFLIGHT:
		return vhu__port_inflight_attach(p, c->ifl_base, c->ifl_queues, c->ifl_queue_size);
	}
	return -EINVAL;
}

/*
 * The answers of the remote ports to the command this message forwarded,
 * if they are all back (the message's second delivery). \return true
 * with *rc their first error, or 0.
 */
static bool
collected(struct vhu_dev *d, int *rc)
{
	if (!d->xdone) {
		return false;
	}
	d->xdone = false;
	*rc = d->xrc;
	d->xrc = 0;
	return true;
}

/* A queue command: applied now on the control ring, or forwarded to the queue's home. */
static int
run_queue(struct vhu_dev *d, struct dev_queue *q, struct dev_cmd *c)
{
	c->q = q->idx;
	if (!q->port->remote) {
		return vhu__port_apply(q->port, c);
	}
	return vhu__port_forward(q->port, c);
}

/*
 * A device-wide command: the local port first (HOLD until it is done),
 * then a copy (own fds) to every remote port with queues; HOLD until they
 * answered. Consumes c's fds.
 */
static int
run_all(struct vhu_dev *d, struct dev_cmd *c)
{
	unsigned int i, n = 0;
	int rc;

	/* Each remote port's copy (own fds) waits in its fwd until the local port took c. */
	for (i = 1; i < d->nports; i++) {
		if (d->ports[i].nqueues == 0) {
			continue;
		}
		rc = cmd_copy(&d->ports[i].fwd.cmd, c);
		if (rc < 0) {
			while (i-- > 1) {
				vhu__cmd_release(&d->ports[i].fwd.cmd);
			}
			vhu__cmd_release(c);
			return rc;
		}
		n++;
	}
	rc = vhu__port_apply(&d->ports[0], c);
	vhu__cmd_release(c);
	for (i = 1; i < d->nports; i++) {
		struct dev_port *p = &d->ports[i];

		if (p->nqueues == 0) {
			continue;
		}
		if (rc != 0) {
			vhu__cmd_release(&p->fwd.cmd);
		} else {
			(void)vhu__port_forward(p, &p->fwd.cmd);
		}
	}
	if (rc != 0) {
		return rc;
	}
	return n > 0 ? HOLD : 0;
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
	struct dev_cmd c;
	uint64_t v;
	int rc;

	if (collected(d, &rc)) {
		return rc;
	}
	rc = body_get(msg, &v, sizeof(v));
	if (rc < 0) {
		return rc;
	}
	if ((v & ~offered(d)) != 0) {
		return -EINVAL;
	}
	d->features = v;
	cmd_init(&c, OP_FEATURES);
	c.features = v;
	return run_all(d, &c);
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

/*
 * Stop every queue, wait for its requests (HOLD), then reset queues and
 * memory, on every port.
 */
static int
reset_all(struct vhu_dev *d)
{
	struct dev_cmd c;
	int rc;

	if (!collected(d, &rc)) {
		cmd_init(&c, OP_RESET);
		rc = run_all(d, &c);
	}
	if (rc != 0) {
		return rc;
	}
	vhu__dev_inflight_release(d);
	d->features = 0;
	d->status = 0;
	return 0;
}

static int
reset_owner(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	int rc = reset_all(d);

	if (rc != 0) {
		return rc;
	}
	d->owner = false;
	return 0;
}

static int
reset_device(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return reset_all(d);
}

/* Memory -------------------------------------------------------------- */

static int
set_mem_table(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_mem_table t;
	struct dev_cmd c;
	unsigned int i, n;
	int rc;

	if (collected(d, &rc)) {
		return rc;
	}
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
	cmd_init(&c, OP_MEM_TABLE);
	memcpy(&c.table, msg->body, VHU_MEM_TABLE_SIZE(n));
	for (i = 0; i < n; i++) {
		c.fds[i] = fd_for_cmd(msg, i, has_remote(d));
		if (c.fds[i] < 0) {
			rc = c.fds[i];
			c.fds[i] = -1;
			vhu__cmd_release(&c);
			return rc;
		}
	}
	return run_all(d, &c);
}

static int
add_mem_reg(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_single_region sr;
	struct dev_cmd c;
	int rc, fd;

	if (collected(d, &rc)) {
		return rc;
	}
	rc = body_get(msg, &sr, sizeof(sr));
	if (rc < 0) {
		return rc;
	}
	if (msg->fds.n != 1) {
		return -VHU_EFDS;
	}
	if (vhu_mem_nregions(d->mem) >= mem_slots(d)) {
		return -VHU_EMEMSLOTS;
	}
	fd = fd_for_cmd(msg, 0, has_remote(d));
	if (fd < 0) {
		return fd;
	}
	cmd_init(&c, OP_MEM_ADD);
	c.region = sr.region;
	c.fd = fd;
	return run_all(d, &c);
}

static int
rem_mem_reg(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_single_region sr;
	struct dev_cmd c;
	int rc;

	if (collected(d, &rc)) {
		return rc;
	}
	rc = body_get(msg, &sr, sizeof(sr));
	if (rc < 0) {
		return rc;
	}
	cmd_init(&c, OP_MEM_REM);
	c.region = sr.region;
	return run_all(d, &c);
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

/* SET_VRING_NUM, _BASE, _ENABLE: a number for one queue. */
static int
vring_num_cmd(struct vhu_dev *d, struct vhu_msg *msg, uint8_t op)
{
	struct vhu_vring_state st;
	struct dev_queue *q;
	struct dev_cmd c;
	int rc;

	if (collected(d, &rc)) {
		return rc;
	}
	rc = vring_state(d, msg, &st, &q);
	if (rc < 0) {
		return rc;
	}
	cmd_init(&c, op);
	c.num = st.num;
	return run_queue(d, q, &c);
}

static int
set_vring_num(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return vring_num_cmd(d, msg, OP_NUM);
}

static int
set_vring_base(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return vring_num_cmd(d, msg, OP_BASE);
}

static int
get_vring_base(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_state st;
	struct dev_queue *q;
	struct dev_cmd c;
	int rc = vring_state(d, msg, &st, &q);

	if (rc < 0) {
		return rc;
	}
	if (collected(d, &rc)) {
		c.num = d->xnum;
	} else {
		cmd_init(&c, OP_GET_BASE);
		rc = run_queue(d, q, &c);
	}
	if (rc != 0) {
		return rc;
	}
	st.num = c.num;
	reply_body(r, &st, sizeof(st));
	return 0;
}

static int
set_vring_addr(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_vring_addr a;
	struct dev_queue *q;
	struct dev_cmd c;
	int rc;

	if (collected(d, &rc)) {
		return rc;
	}
	rc = body_get(msg, &a, sizeof(a));
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
	cmd_init(&c, OP_ADDR);
	c.addr = a;
	return run_queue(d, q, &c);
}

static int
set_vring_enable(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	return vring_num_cmd(d, msg, OP_ENABLE);
}

enum vring_file { VRING_KICK, VRING_CALL, VRING_ERR };

static int
set_vring_file(struct vhu_dev *d, struct vhu_msg *msg, enum vring_file which)
{
	static const uint8_t ops[] = { [VRING_KICK] = OP_KICK, [VRING_CALL] = OP_CALL,
				       [VRING_ERR] = OP_ERR };
	struct dev_queue *q;
	struct dev_cmd c;
	uint64_t v;
	int fd = -1;
	int rc;

	if (collected(d, &rc)) {
		return rc;
	}
	rc = body_get(msg, &v, sizeof(v));
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
		if (msg->fds.n != 1) {
			return -VHU_EFDS;
		}
		fd = fd_for_cmd(msg, 0, q->port->remote);
		if (fd < 0) {
			return fd;
		}
	}
	cmd_init(&c, ops[which]);
	c.fd = fd;
	rc = run_queue(d, q, &c);
	vhu__cmd_release(&c);
	return rc;
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
	if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -ENOSPC) {
		/*
		 * Our own shortage, not the front-end's fault: no region (size 0,
		 * no fd), which QEMU takes as "no inflight tracking" and goes on.
		 */
		b.mmap_size = 0;
		b.mmap_offset = 0;
		b.padding = 0;
		rc = 0;
	}
	if (rc < 0) {
		return rc;
	}
	reply_body(r, &b, sizeof(b));
	return 0;
}

/*
 * The region is mapped here, then every ring attaches its queues' areas
 * (the local port first: a refusal there changes nothing anywhere).
 */
static int
set_inflight_fd(struct vhu_dev *d, struct vhu_msg *msg, struct reply *r)
{
	struct vhu_inflight b;
	struct dev_cmd c;
	uint8_t *base;
	int fd, rc;

	if (collected(d, &rc)) {
		/* A ring refused after the first had attached: they would disagree. */
		vhu__dev_inflight_commit(d, rc, true);
		if (rc < 0) {
			vhu_dev_close(d, rc);
		}
		return rc;
	}
	rc = body_get(msg, &b, sizeof(b));
	if (rc < 0) {
		return rc;
	}
	if (msg->fds.n != 1) {
		return -VHU_EFDS;
	}
	/* Mapped now, not kept: a copy when the message may be held (it keeps its fds). */
	fd = fd_for_cmd(msg, 0, has_remote(d));
	if (fd < 0) {
		return fd;
	}
	rc = vhu__dev_inflight_map(d, &b, fd, &base);
	if (rc < 0) {
		return rc;
	}
	cmd_init(&c, OP_INFLIGHT);
	c.ifl_base = base;
	c.ifl_queues = b.num_queues;
	c.ifl_queue_size = b.queue_size;
	rc = run_all(d, &c);
	if (rc != HOLD) {
		vhu__dev_inflight_commit(d, rc, false);
	}
	return rc;
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
	/* Delivered again before the remote ports answered (a local event resumed it). */
	if (d->xwait > 0) {
		d->held = true;
		return VHU_MSG_HOLD;
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
