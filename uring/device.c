/* SPDX-License-Identifier: MIT */
/*
 * Device servers and the lifecycle of a device: created when a front-end
 * connects, closed with its connection, freed only once nothing of it is
 * in flight (the application's requests pushed or dropped, the kick and
 * call operations completed), so no mapping or fd goes while the kernel or
 * the application may still use it.
 *
 * With several rings (vhu_dev_server_create_multi), queue q of the device
 * numbered id lives on ring (id - 1 + q) mod nrings: its port there has
 * its own mapping of the guest's memory. The listener stays on rings[0]:
 * it numbers each accepted socket and hands it to ring (id - 1) mod
 * nrings (the fd number through that ring's inbox: the threads share the
 * fd table), which attaches it and runs the device's connection and
 * protocol there, its control ring; a device is freed there once every
 * remote port has handed its state back (device_remote.c). The server has
 * a part per ring (its devices there); vhu_dev_server_destroy() reaches
 * the other parts as messages, and the server is freed on rings[0] once
 * every part has let go.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device_internal.h"

#define LOAD(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ADD(p)		__atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)
#define SUB(p)		__atomic_sub_fetch((p), 1, __ATOMIC_ACQ_REL)

static void dev_on_close(struct vhu_conn *conn, int reason, void *ctx);

/* Unmap the guest's memory (every queue destroyed first: they hold their views' epochs). */
static void
dev_unmap(struct vhu_dev *d)
{
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		vhu_vq_destroy(d->q[i].vq);
		d->q[i].vq = NULL;
	}
	for (i = 1; i < d->nports; i++) {
		vhu_mem_destroy(d->ports[i].mem);
		d->ports[i].mem = NULL;
	}
	vhu_mem_destroy(d->mem);
	d->mem = NULL;
}

static void
dev_free(struct vhu_dev *d)
{
	dev_unmap(d);
	free(d->ports);
	free(d);
}

/* On the ring of part: a device numbered id, controlled there. */
static struct vhu_dev *
dev_new(struct vhu_dev_server *srv, struct dev_part *part, unsigned int id)
{
	unsigned int c = (unsigned int)(part - srv->parts);
	struct vhu_dev *d;
	unsigned int i, base;
	size_t size;

	size = sizeof(*d) + srv->o.num_queues * sizeof(d->q[0]);
	/* Aligned as its queues are (a size that is a multiple of the alignment). */
	d = aligned_alloc(DEV_CACHELINE,
			  (size + DEV_CACHELINE - 1) / DEV_CACHELINE * DEV_CACHELINE);
	if (d == NULL) {
		return NULL;
	}
	memset(d, 0, size);
	d->ports = calloc(srv->nrings, sizeof(d->ports[0]));
	if (d->ports == NULL || vhu_mem_create(&d->mem) < 0) {
		free(d->ports);
		free(d);
		return NULL;
	}
	d->srv = srv;
	d->part = part;
	d->ring = part->ring;
	d->id = id;
	d->backend_fd = -1;
	d->nq = srv->o.num_queues;
	d->nports = srv->nrings;
	/* Port i on the i-th ring after the control ring: ports[0] is local. */
	for (i = 0; i < d->nports; i++) {
		d->ports[i].dev = d;
		d->ports[i].ring = srv->rings[(c + i) % d->nports];
		d->ports[i].remote = i > 0;
	}
	d->ports[0].mem = d->mem;
	/*
	 * Devices take turns for the first queue's ring, (id - 1) mod nrings:
	 * single-queue front-ends spread too. As a port index: from c.
	 */
	base = ((d->id - 1) % d->nports + d->nports - c) % d->nports;
	for (i = 0; i < d->nq; i++) {
		struct dev_port *p = &d->ports[(base + i) % d->nports];

		p->nqueues++;
		vhu__dq_init(&d->q[i], d, p, i);
	}
	for (i = 1; i < d->nports; i++) {
		if (d->ports[i].nqueues > 0 && vhu_mem_create(&d->ports[i].mem) < 0) {
			dev_free(d);
			return NULL;
		}
	}
	for (i = 0; i < d->nq; i++) {
		if (vhu_vq_create(d->q[i].port->mem, &d->q[i].vq) < 0) {
			dev_free(d);
			return NULL;
		}
	}
	vlist_add_tail(&part->devs, &d->link);
	part->ndevs++;
	ADD(&srv->ndevs);
	return d;
}

/* rings[0]: free the server once it is destroyed and every part has let go. */
static void
server_maybe_free(struct vhu_dev_server *srv)
{
	if (srv->parts[0].destroyed && srv->parts[0].ndevs == 0 &&
	    srv->parts_gone == srv->nrings - 1) {
		void (*gone)(void *ctx) = srv->ops.server_gone;
		void *ctx = srv->o.ctx;

		free(srv->config);
		free(srv);
		if (gone != NULL) {
			gone(ctx);
		}
	}
}

/* rings[0]: a remote part let go of its last device after the destroy. */
static void
part_gone(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_part *part = vhu_container_of(x, struct dev_part, gone);
	struct vhu_dev_server *srv = part->srv;

	srv->parts_gone++;
	server_maybe_free(srv);
}

/* The part's ring: once destroyed and empty, let go (the server may be freed: touch nothing after). */
static void
part_maybe_gone(struct dev_part *part)
{
	struct vhu_dev_server *srv = part->srv;

	if (!part->destroyed || part->ndevs > 0) {
		return;
	}
	if (part == &srv->parts[0]) {
		server_maybe_free(srv);
	} else if (!part->gone_sent) {
		part->gone_sent = true;
		part->gone.fn = part_gone;
		vhu__xring_post(part->ring, srv->ring, &part->gone);
	}
}

/* The part's ring: close its devices, then let go once they are freed. */
static void
part_destroy(struct dev_part *part)
{
	struct vlist *n, *next;

	for (n = part->devs.next; n != &part->devs; n = next) {
		next = n->next;
		vhu_dev_close(vhu_container_of(n, struct vhu_dev, link), 0);
	}
	/* Set after the loop: a device freed inside it must not free the server under it. */
	part->destroyed = true;
	part_maybe_gone(part);
}

static void
part_destroy_msg(struct vhu_ring *r, struct vhu__xmsg *x)
{
	part_destroy(vhu_container_of(x, struct dev_part, destroy));
}

/* Control ring: the device closes (its local port pops no more). */
void
vhu__dev_set_closing(struct vhu_dev *d, int reason)
{
	if (d->closing) {
		return;
	}
	d->reason = reason;
	d->ports[0].closing = true;
	__atomic_store_n(&d->closing, true, __ATOMIC_RELAXED);
}

/*
 * Free a closed device once nothing of it is in flight: the local port
 * idle, every remote port's state handed back.
 */
void
vhu__dev_maybe_free(struct vhu_dev *d)
{
	struct vhu_dev_server *srv = d->srv;
	struct dev_part *part = d->part;
	unsigned int i;

	if (!d->closing || d->conn != NULL || !vhu__port_idle(&d->ports[0])) {
		return;
	}
	for (i = 1; i < d->nports; i++) {
		if (d->ports[i].nqueues > 0 && !d->ports[i].released) {
			return;
		}
	}
	for (i = 0; i < d->nq; i++) {
		vhu__dq_fini(&d->q[i]);
	}
	/* After the queues: a started queue would refuse to let its area go. */
	vhu__dev_inflight_release(d);
	if (d->backend_fd >= 0) {
		close(d->backend_fd);
	}
	dev_unmap(d);
	/*
	 * Uncounted before ops->close: once the application hears the device is
	 * gone, a new front-end fits in its place under max_conns.
	 */
	vlist_del(&d->link);
	part->ndevs--;
	SUB(&srv->ndevs);
	if (d->opened && srv->ops.close != NULL) {
		srv->ops.close(d, d->reason, srv->o.ctx);
	}
	dev_free(d);
	part_maybe_gone(part);
}

static void
dev_on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct vhu_dev *d = ctx;
	unsigned int i;

	if (d == NULL) {
		return;
	}
	d->conn = NULL;
	vhu__dev_set_closing(d, reason);
	for (i = 0; i < d->nq; i++) {
		if (!d->q[i].port->remote) {
			vhu__dq_shutdown(&d->q[i]);
		}
	}
	for (i = 1; i < d->nports; i++) {
		vhu__port_shutdown(&d->ports[i]);
	}
	vhu__dev_maybe_free(d);
}

static const struct vhu_conn_ops dev_conn_ops = {
	.on_message = vhu__dev_on_message,
	.on_close = dev_on_close,
};

/* A connection is attached on part's ring: give it a device, or close it. */
static struct vhu_dev *
dev_adopt(struct vhu_dev_server *srv, struct vhu_conn *conn, struct dev_part *part,
	  unsigned int id)
{
	struct vhu_dev *d = dev_new(srv, part, id);
	int rc;

	if (d == NULL) {
		vhu_conn_set_ctx(conn, NULL);
		vhu_conn_close_reason(conn, -ENOMEM);
		return NULL;
	}
	d->conn = conn;
	vhu_conn_set_ctx(conn, d);
	if (srv->ops.open != NULL) {
		rc = srv->ops.open(d, srv->o.ctx);
		if (rc < 0) {
			vhu_dev_close(d, rc);
			return NULL;
		}
	}
	d->opened = true;
	return d;
}

/* rings[0]: the next device's number (also read by other threads, hence atomic). */
static unsigned int
next_id(struct vhu_dev_server *srv)
{
	unsigned int id = srv->next_id + 1;

	STORE(&srv->next_id, id);
	return id;
}

/* One ring: the listener attached the connection. */
static void
on_accept(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx)
{
	struct vhu_dev_server *srv = ctx;

	dev_adopt(srv, conn, &srv->parts[0], next_id(srv));
}

static struct vhu_conn_opts
conn_opts(const struct vhu_dev_server *srv)
{
	struct vhu_conn_opts co;

	memset(&co, 0, sizeof(co));
	co.recv_mode = srv->o.recv_mode;
	co.msg_timeout_ms = srv->o.msg_timeout_ms;
	co.rules.channel = VHU_CHAN_FRONTEND;
	co.rules.expect = VHU_EXPECT_REQUEST;
	return co;
}

/* On part's ring: serve a front-end's socket there (fd taken in every case). */
static int
dev_attach_on(struct vhu_dev_server *srv, struct dev_part *part, int fd, unsigned int id,
	      struct vhu_dev **out)
{
	struct vhu_conn_opts co = conn_opts(srv);
	struct vhu_conn *conn;
	int rc;

	*out = NULL;
	rc = vhu_conn_attach(part->ring, fd, &co, &dev_conn_ops, NULL, &conn);
	if (rc < 0) {
		return rc;
	}
	*out = dev_adopt(srv, conn, part, id);
	return 0;
}

/* The chosen ring: a socket handed over by rings[0] arrived. */
static void
handoff_at_part(struct vhu_ring *r, struct vhu__xmsg *x)
{
	struct dev_handoff *h = vhu_container_of(x, struct dev_handoff, x);
	struct vhu_dev_server *srv = h->srv;
	struct dev_part *part = &srv->parts[h->part];
	struct vhu_dev *d;
	unsigned int id = h->id;
	int fd = h->fd;

	free(h);
	/* The destroy follows (rings[0] posts it after every handoff): the part is still here. */
	if (part->destroyed || LOAD(&srv->destroyed)) {
		close(fd);
	} else {
		(void)dev_attach_on(srv, part, fd, id, &d);
	}
	/* After the device counts: max_conns never sees the front-end missing. */
	SUB(&srv->handoffs);
}

/*
 * Several rings, on rings[0]: an accepted socket goes to ring (id - 1) mod
 * nrings, where the device's queue 0 lives, so a single-queue front-end
 * is served by one thread alone.
 */
static void
on_accept_fd(struct vhu_ulistener *l, int fd, void *ctx)
{
	struct vhu_dev_server *srv = ctx;
	struct dev_handoff *h;
	unsigned int id, c;
	struct vhu_dev *d;

	/* Only this thread adds to either count: the sum cannot grow under the test. */
	if (srv->o.max_conns > 0 &&
	    LOAD(&srv->ndevs) + LOAD(&srv->handoffs) >= srv->o.max_conns) {
		close(fd);
		return;
	}
	id = next_id(srv);
	c = (id - 1) % srv->nrings;
	if (c == 0) {
		(void)dev_attach_on(srv, &srv->parts[0], fd, id, &d);
		return;
	}
	h = malloc(sizeof(*h));
	if (h == NULL) {
		close(fd);
		return;
	}
	h->srv = srv;
	h->fd = fd;
	h->id = id;
	h->part = c;
	h->x.fn = handoff_at_part;
	ADD(&srv->handoffs);
	vhu__xring_post(srv->ring, srv->rings[c], &h->x);
}

int
vhu_dev_server_create(struct vhu_ring *ring, const struct vhu_dev_opts *opts,
		      struct vhu_dev_server **out)
{
	return vhu_dev_server_create_multi(&ring, 1, opts, out);
}

int
vhu_dev_server_create_multi(struct vhu_ring *const *rings, unsigned int nrings,
			    const struct vhu_dev_opts *opts, struct vhu_dev_server **out)
{
	struct vhu_dev_server *srv;
	const uint64_t refused = (1ull << VHU_F_LOG_ALL) | (1ull << VHU_F_RING_PACKED);
	struct vhu_ring *ring;
	unsigned int i, j;
	int rc;

	*out = NULL;
	if (rings == NULL || nrings == 0 || nrings > VHU_DEV_MAX_RINGS) {
		return -EINVAL;
	}
	for (i = 0; i < nrings; i++) {
		if (rings[i] == NULL) {
			return -EINVAL;
		}
		for (j = 0; j < i; j++) {
			if (rings[j] == rings[i]) {
				return -EINVAL;
			}
		}
	}
	ring = rings[0];
	if (opts == NULL || opts->ops == NULL || opts->ops->queue_work == NULL ||
	    opts->num_queues == 0 || opts->num_queues > VHU_DEV_MAX_QUEUES ||
	    (opts->features & refused) != 0 || opts->config_size > VHU_CONFIG_SPACE_SIZE ||
	    opts->max_mem_slots > VHU_MEM_MAX_SLOTS ||
	    (opts->config_size > 0 && opts->config == NULL)) {
		return -EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		return -ENOMEM;
	}
	srv->ring = ring;
	memcpy(srv->rings, rings, nrings * sizeof(rings[0]));
	srv->nrings = nrings;
	srv->o = *opts;
	srv->ops = *opts->ops;
	srv->o.ops = &srv->ops;
	srv->o.path = NULL;
	for (i = 0; i < nrings; i++) {
		srv->parts[i].srv = srv;
		srv->parts[i].ring = rings[i];
		vlist_init(&srv->parts[i].devs);
	}
	if (opts->config_size > 0) {
		srv->config = malloc(opts->config_size);
		if (srv->config == NULL) {
			free(srv);
			return -ENOMEM;
		}
		memcpy(srv->config, opts->config, opts->config_size);
	}
	srv->o.config = srv->config;
	if (opts->path != NULL) {
		struct vhu_ulistener_opts lo;

		memset(&lo, 0, sizeof(lo));
		lo.path = opts->path;
		lo.unlink_stale = opts->unlink_stale;
		/* Several rings: each ring attaches its own; max_conns is on_accept_fd's. */
		lo.max_conns = nrings == 1 ? opts->max_conns : 0;
		lo.conn = conn_opts(srv);
		lo.ops = dev_conn_ops;
		/* Each connection's ctx is the server until on_accept makes it its device. */
		lo.ctx = srv;
		lo.on_accept = on_accept;
		rc = vhu_ring_listen(ring, &lo, &srv->lis);
		if (rc < 0) {
			free(srv->config);
			free(srv);
			return rc;
		}
		if (nrings > 1) {
			vhu__ulistener_take_fds(srv->lis, on_accept_fd);
		}
	}
	*out = srv;
	return 0;
}

int
vhu_dev_server_attach(struct vhu_dev_server *srv, int fd, struct vhu_dev **out)
{
	return dev_attach_on(srv, &srv->parts[0], fd, next_id(srv), out);
}

void
vhu_dev_server_destroy(struct vhu_dev_server *srv)
{
	unsigned int i;

	if (srv == NULL) {
		return;
	}
	if (srv->lis != NULL) {
		/* No socket is handed over after this: the destroys below come after every handoff. */
		vhu_ulistener_close(srv->lis);
		srv->lis = NULL;
	}
	STORE(&srv->destroyed, true);
	for (i = 1; i < srv->nrings; i++) {
		srv->parts[i].destroy.fn = part_destroy_msg;
		vhu__xring_post(srv->ring, srv->rings[i], &srv->parts[i].destroy);
	}
	/* Last: with one ring this may free the server. */
	part_destroy(&srv->parts[0]);
}

unsigned int
vhu_dev_server_count(const struct vhu_dev_server *srv)
{
	return LOAD(&srv->ndevs);
}

void *
vhu_dev_ctx(const struct vhu_dev *d)
{
	return d->ctx;
}

void
vhu_dev_set_ctx(struct vhu_dev *d, void *ctx)
{
	d->ctx = ctx;
}

unsigned int
vhu_dev_id(const struct vhu_dev *d)
{
	return d->id;
}

struct vhu_ring *
vhu_dev_ring(const struct vhu_dev *d)
{
	return d->ring;
}

struct vhu_ring *
vhu_dev_queue_ring(const struct vhu_dev *d, unsigned int q)
{
	return q < d->nq ? d->q[q].port->ring : NULL;
}

uint64_t
vhu_dev_features(const struct vhu_dev *d)
{
	return d->features;
}

unsigned int
vhu_dev_num_queues(const struct vhu_dev *d)
{
	return d->nq;
}

struct vhu_vq *
vhu_dev_vq(struct vhu_dev *d, unsigned int q)
{
	return q < d->nq ? d->q[q].vq : NULL;
}

void
vhu_dev_close(struct vhu_dev *d, int reason)
{
	struct vhu_ring *cur = vhu__ring_current();
	unsigned int i;

	/* From a callback on a queue's home ring: the control ring does it. */
	if (cur != NULL && cur != d->ring) {
		for (i = 1; i < d->nports; i++) {
			if (d->ports[i].ring == cur && d->ports[i].nqueues > 0) {
				vhu__port_close_req(&d->ports[i], reason);
				return;
			}
		}
	}
	vhu__dev_set_closing(d, reason);
	if (d->conn != NULL) {
		vhu_conn_close_reason(d->conn, reason);
	}
}

bool
vhu_dev_closing(const struct vhu_dev *d)
{
	return __atomic_load_n(&d->closing, __ATOMIC_RELAXED);
}
