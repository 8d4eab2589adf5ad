/* SPDX-License-Identifier: MIT */
/*
 * A device's ports on other rings (reactors). The control ring (where the
 * connection lives) and a remote port's ring exchange three messages,
 * each embedded in the port, so nothing is allocated and at most one of
 * each is on its way:
 *  - fwd: a command (device_msg.c) goes to the port's ring, is applied
 *    there (parked while it waits for requests to come back: GET_BASE,
 *    RESET) and comes back with its result; the front-end's message is
 *    held meanwhile;
 *  - bye: the device is closing: the port stops popping, cancels its kick
 *    reads and calls, waits for its requests and operations, then sends
 *    bye back: from then on the control ring owns all of the port's state
 *    and frees it with the device;
 *  - close_req: the port found a fault (a guest's chain, a failed kick
 *    read): the control ring closes the device.
 * One inbox per ring keeps each sender's messages in order (xring.c), so
 * a port's answers to fwd always arrive before its bye, and a close_req
 * before the bye too.
 */
#define _GNU_SOURCE
#include <errno.h>

#include "device_internal.h"

static struct dev_xmsg *
xmsg_of(struct vhu__xmsg *x)
{
	return vhu_container_of(x, struct dev_xmsg, x);
}

/* Control ring: a forwarded command is back. */
static void
fwd_back(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_fwd *m = vhu_container_of(xmsg_of(x), struct dev_fwd, m);
	struct dev_port *p = m->m.port;
	struct vhu_dev *d = p->dev;
	uint8_t op = m->cmd.op;
	int rc = m->m.rc;

	p->fwd_out = false;
	vhu__cmd_release(&m->cmd);
	if (rc < 0 && d->xrc == 0) {
		d->xrc = rc;
	}
	if (op == OP_GET_BASE) {
		d->xnum = m->cmd.num;
	}
	/* The ports' memory views must agree: one that could not follow closes the device. */
	if (rc < 0 && rc != -ENOTCONN &&
	    (op == OP_MEM_TABLE || op == OP_MEM_ADD || op == OP_MEM_REM)) {
		vhu_dev_close(d, rc);
	}
	if (--d->xwait > 0) {
		return;
	}
	d->xdone = true;
	if (d->held && d->conn != NULL && !d->closing) {
		d->held = false;
		vhu_conn_resume_recv(d->conn);
	}
}

/* Port ring: send fwd back with its result. */
static void
fwd_answer(struct dev_port *p, int rc)
{
	p->parked = false;
	p->fwd.m.rc = rc;
	p->fwd.m.x.fn = fwd_back;
	vhu__xring_post(p->ring, p->dev->ring, &p->fwd.m.x);
}

/* Port ring: a command arrived. */
static void
fwd_at_home(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_port *p = xmsg_of(x)->port;
	int rc;

	if (p->closing) {
		fwd_answer(p, -ENOTCONN);
		return;
	}
	rc = vhu__port_apply(p, &p->fwd.cmd);
	if (rc == DEV_HOLD) {
		p->parked = true;
		return;
	}
	fwd_answer(p, rc);
}

int
vhu__port_forward(struct dev_port *p, struct dev_cmd *c)
{
	struct vhu_dev *d = p->dev;
	unsigned int i;

	p->fwd.m.port = p;
	p->fwd.m.rc = 0;
	if (c != &p->fwd.cmd) {
		p->fwd.cmd = *c;
		/* The fds travel with the command. */
		c->fd = -1;
		for (i = 0; i < VHU_MAX_MEM_REGIONS; i++) {
			c->fds[i] = -1;
		}
	}
	p->fwd.m.x.fn = fwd_at_home;
	p->fwd_out = true;
	d->xwait++;
	vhu__xring_post(d->ring, p->ring, &p->fwd.m.x);
	return DEV_HOLD;
}

/* Control ring: the port let go of everything. */
static void
bye_back(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_port *p = xmsg_of(x)->port;

	p->bye_out = false;
	p->released = true;
	vhu__dev_maybe_free(p->dev);
}

/*
 * Port ring: one of the port's requests or operations finished. A parked
 * command may be answered; a closing port with nothing left in flight
 * hands everything back to the control ring (and touches nothing after).
 */
void
vhu__port_event(struct dev_port *p)
{
	int rc;

	if (p->closing) {
		if (!p->release_sent && vhu__port_idle(p)) {
			p->release_sent = true;
			p->bye.x.fn = bye_back;
			vhu__xring_post(p->ring, p->dev->ring, &p->bye.x);
		}
		return;
	}
	if (p->parked) {
		rc = vhu__port_apply(p, &p->fwd.cmd);
		if (rc != DEV_HOLD) {
			fwd_answer(p, rc);
		}
	}
}

/* Port ring: the device is closing. */
static void
bye_at_home(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_port *p = xmsg_of(x)->port;
	struct vhu_dev *d = p->dev;
	unsigned int i;

	p->closing = true;
	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p) {
			vhu__dq_shutdown(&d->q[i]);
		}
	}
	if (p->parked) {
		fwd_answer(p, -ENOTCONN);
	}
	vhu__port_event(p);
}

void
vhu__port_shutdown(struct dev_port *p)
{
	if (!p->remote || p->nqueues == 0 || p->bye_out || p->released) {
		return;
	}
	p->bye_out = true;
	p->bye.port = p;
	p->bye.x.fn = bye_at_home;
	vhu__xring_post(p->dev->ring, p->ring, &p->bye.x);
}

/* Control ring: a port asks to close the device. */
static void
close_at_control(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_xmsg *m = xmsg_of(x);

	vhu_dev_close(m->port->dev, m->rc);
}

void
vhu__port_close_req(struct dev_port *p, int reason)
{
	if (p->close_sent || p->closing) {
		return;
	}
	p->close_sent = true;
	p->close_req.port = p;
	p->close_req.rc = reason;
	p->close_req.x.fn = close_at_control;
	vhu__xring_post(p->ring, p->dev->ring, &p->close_req.x);
}
