/* SPDX-License-Identifier: MIT */
/*
 * The device layer over two rings, each driven by its own thread
 * (vhu_dev_server_create_multi): a 2-queue vhu-blk device whose queue 0
 * lives on the control ring and queue 1 on the other. The front-end is a
 * blocking endpoint on this thread (what QEMU sends) with a fake guest
 * (memfd RAM, fake_guest.c) writing virtio-blk chains on both queues.
 *
 * Covered: data written through one queue reads back through the other,
 * each queue's work runs on its home ring's thread; GET_VRING_BASE and
 * RESET_DEVICE on the remote queue wait for its requests in flight and
 * report the index after them; a region added while the remote queue runs
 * is usable there, a removed one is unmapped from every ring's view;
 * closing the connection under I/O frees the device once; a guest fault
 * on the remote queue closes only its device, and so does vhu_dev_close()
 * called on the remote ring; bad ring lists are refused. Connections:
 * each front-end's connection runs on ring (id - 1) mod 2 (its open and
 * its queue 0 on that ring's thread), two front-ends on different rings
 * each serve data and close alone; destroy frees devices on both rings
 * once; max_conns counts the front-ends of every ring; one handed to a
 * ring after the server was destroyed is closed.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "uring_helpers.h"
#include "fake_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vhu/device.h>
#include <vhu/inflight.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "blk/blkdev.h"
#include "blk/target.h"

TestSuite(reactors, .init = t_setup, .fini = t_teardown, .timeout = 60);

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)
#define MiB		(1024ull * 1024ull)
#define NRINGS		2u
#define NQ		2u
#define QNUM		16u
#define DISK_BYTES	(1 * MiB)
#define WAIT_MS		5000
#define HOLD_MAX	8u
#define MAX_DEVS	8u

/* Queue q's areas in region 0: rings, then header, data and status. */
#define Q_BASE(q)	(0x80000ull * (q))
#define DESC_GPA(q)	(Q_BASE(q) + 0x0)
#define AVAIL_GPA(q)	(Q_BASE(q) + 0x1000)
#define USED_GPA(q)	(Q_BASE(q) + 0x2000)
#define HDR_GPA(q)	(Q_BASE(q) + 0x10000)
#define DATA_GPA(q)	(Q_BASE(q) + 0x20000)
#define STATUS_GPA(q)	(Q_BASE(q) + 0x30000)
/* A second region, added at run time. */
#define R1_GPA		0x200000ull

static const struct fg_layout layout[] = {
	{ .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 },
	{ .gpa = R1_GPA, .size = 1 * MiB, .mmap_offset = 0 },
};

/* The server's rings and their threads. */
struct reactor {
	pthread_t th;
	unsigned int idx;
	struct vhu_ring *ring;
};

static struct {
	struct reactor r[NRINGS];
	struct vhu_dev_server *srv;
	struct blk_target t;
	uint8_t config[BLK_CONFIG_SIZE];
	struct vhu_dev_ops ops;
	unsigned int created;		/* rings created (atomic) */
	bool serving;			/* the server exists (atomic) */
	bool stop;			/* the test is done: destroy the server (atomic) */
	bool gone;			/* ops->server_gone ran (atomic) */
	unsigned int opened;		/* atomic */
	unsigned int closed;		/* atomic */
	int reason;
	struct vhu_dev *dev;		/* the last device opened */
	pthread_t work_thread[NQ];	/* where each queue's work last ran */
	bool worked[NQ];
	struct vhu_dev *devs[MAX_DEVS];	/* by id */
	pthread_t open_thread[MAX_DEVS];
	pthread_t dev_work_thread[MAX_DEVS][NQ];
	bool pause1;			/* ring 1's thread stops driving its ring (atomic) */
	bool paused1;			/* and has stopped (atomic) */
} g;

/* vhu_dev_opts.max_conns of the next rx_start() (0: the ring's limit). */
static unsigned int g_max_conns;

#define LOAD(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

/*
 * Written (after the store) whenever a counter or flag the test thread
 * waits for changes on another thread: wait_until() sleeps on it, not on
 * the clock.
 */
static int g_changed = -1;

static void
changed(void)
{
	(void)eventfd_write(g_changed, 1);
}

/* An application that holds what it pops until the test writes release_fd. */
static struct {
	bool on;
	struct vhu_dev *dev;
	struct vhu_vq_req req[NQ][HOLD_MAX];
	struct iovec iov[NQ][HOLD_MAX][8];
	unsigned int n[NQ];		/* held (atomic) */
	struct vhu_op release[NQ];
	uint64_t buf[NQ];
	int release_fd[NQ];
	uint32_t push_len;
} g_hold;

static int
app_open(struct vhu_dev *dev, void *ctx)
{
	int rc = blk_dev_ops.open(dev, ctx);
	unsigned int id = vhu_dev_id(dev);

	if (id < MAX_DEVS) {
		g.devs[id] = dev;
		g.open_thread[id] = pthread_self();
	}
	STORE(&g.dev, dev);
	__atomic_add_fetch(&g.opened, 1, __ATOMIC_ACQ_REL);
	changed();
	return rc;
}

static void
app_close(struct vhu_dev *dev, int reason, void *ctx)
{
	blk_dev_ops.close(dev, reason, ctx);
	g.reason = reason;
	__atomic_add_fetch(&g.closed, 1, __ATOMIC_ACQ_REL);
	changed();
}

static void
app_gone(void *ctx)
{
	STORE(&g.gone, true);
	changed();
}

/* Release: push (or on a closing device drop) what the queue holds; runs on its home ring. */
static void
release_done(struct vhu_op *op, int res, uint32_t flags)
{
	unsigned int q = (unsigned int)(op - g_hold.release);
	struct vhu_dev *dev = g_hold.dev;
	unsigned int i, n = LOAD(&g_hold.n[q]);

	STORE(&g_hold.n[q], 0);
	changed();
	for (i = 0; i < n; i++) {
		/* The last one may free a closing device: nothing touches dev after. */
		(void)vhu_dev_push(dev, q, &g_hold.req[q][i], g_hold.push_len);
	}
}

static void
hold_work(struct vhu_dev *dev, unsigned int q)
{
	unsigned int n = LOAD(&g_hold.n[q]);
	struct io_uring_sqe *sqe;

	g_hold.dev = dev;
	while (n < HOLD_MAX && vhu_dev_pop(dev, q, &g_hold.req[q][n], g_hold.iov[q][n], 8) == 1) {
		n++;
	}
	STORE(&g_hold.n[q], n);
	changed();
	if (n > 0 && !vhu_op_busy(&g_hold.release[q])) {
		g_hold.release[q].done = release_done;
		sqe = vhu_op_sqe(vhu_dev_queue_ring(dev, q), &g_hold.release[q]);
		cr_assert_not_null(sqe);
		io_uring_prep_read(sqe, g_hold.release_fd[q], &g_hold.buf[q], 8, 0);
	}
}

/* The application closes the device from queue 1's work, on ring 1 (-ECONNABORTED). */
static bool g_close_from_q1;

static void
app_queue_work(struct vhu_dev *dev, unsigned int q, void *ctx)
{
	unsigned int id = vhu_dev_id(dev);

	g.work_thread[q] = pthread_self();
	if (id < MAX_DEVS) {
		g.dev_work_thread[id][q] = pthread_self();
	}
	STORE(&g.worked[q], true);
	if (q == 1 && LOAD(&g_close_from_q1)) {
		vhu_dev_close(dev, -ECONNABORTED);
		return;
	}
	if (g_hold.on) {
		hold_work(dev, q);
		return;
	}
	blk_dev_ops.queue_work(dev, q, ctx);
}

static void *
reactor_main(void *arg)
{
	struct reactor *r = arg;
	struct vhu_ring_opts ro = { .max_conns = 8, .max_ops = 4 * (2 + QNUM) + 8 };
	int rc;

	cr_assert_eq(vhu_ring_create(&ro, &r->ring), 0);
	__atomic_add_fetch(&g.created, 1, __ATOMIC_ACQ_REL);
	if (r->idx == 0) {
		struct vhu_ring *rings[NRINGS];
		struct vhu_dev_opts o;
		unsigned int i;

		while (LOAD(&g.created) < NRINGS) {
			sched_yield();
		}
		for (i = 0; i < NRINGS; i++) {
			rings[i] = g.r[i].ring;
		}
		blk_dev_opts(&g.t, g.config, &o);
		g.ops = blk_dev_ops;
		g.ops.open = app_open;
		g.ops.close = app_close;
		g.ops.queue_work = app_queue_work;
		g.ops.server_gone = app_gone;
		o.ops = &g.ops;
		o.path = t_path("sock");
		o.max_conns = g_max_conns;
		cr_assert_eq(vhu_dev_server_create_multi(rings, NRINGS, &o, &g.srv), 0);
		STORE(&g.serving, true);
		changed();
	}
	while (!LOAD(&g.gone)) {
		if (r->idx == 1 && LOAD(&g.pause1)) {
			/* Not driving the ring: what is posted to it waits in its inbox. */
			if (!LOAD(&g.paused1)) {
				STORE(&g.paused1, true);
				changed();
			}
			sched_yield();
			continue;
		}
		STORE(&g.paused1, false);
		if (r->idx == 0 && g.srv != NULL && LOAD(&g.stop)) {
			vhu_dev_server_destroy(g.srv);
			g.srv = NULL;
		}
		rc = vhu_ring_wait(r->ring, 20);
		cr_assert(rc >= 0 || rc == -EINTR || rc == -ETIME, "ring: %s", vhu_strerror(rc));
	}
	vhu_ring_destroy(r->ring);
	return NULL;
}

/* Until cond(arg) holds, sleeping on g_changed; WAIT_MS without it fails the test. */
static void
wait_for(bool (*cond)(const void *arg), const void *arg, const char *what)
{
	struct timespec t0, t;
	long left = WAIT_MS;
	uint64_t v;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!cond(arg) && left > 0) {
		struct pollfd p = { .fd = g_changed, .events = POLLIN };

		if (poll(&p, 1, (int)left) == 1) {
			(void)eventfd_read(g_changed, &v);
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = WAIT_MS - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
	}
	cr_assert(cond(arg), "%s", what);
}

struct count_want {
	const unsigned int *counter;
	unsigned int want;
};

static bool
count_reached(const void *arg)
{
	const struct count_want *w = arg;

	return LOAD(w->counter) == w->want;
}

static void
wait_until(const unsigned int *counter, unsigned int want, const char *what)
{
	struct count_want w = { counter, want };

	/* The other threads get there by themselves; the deadline only guards a hang. */
	wait_for(count_reached, &w, what);
	cr_assert_eq(LOAD(counter), want, "%s", what);
}

static bool
flag_set(const void *arg)
{
	return LOAD((const bool *)arg);
}

static void
wait_until_true(const bool *flag, const char *what)
{
	wait_for(flag_set, flag, what);
}

static void
rx_start(bool hold)
{
	unsigned int i;
	int fd;

	memset(&g, 0, sizeof(g));
	memset(&g_hold, 0, sizeof(g_hold));
	g_changed = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_geq(g_changed, 0);
	g_hold.on = hold;
	g_close_from_q1 = false;
	for (i = 0; i < NQ; i++) {
		g_hold.release_fd[i] = eventfd(0, EFD_CLOEXEC);
	}
	fd = open(t_path("disk.img"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	cr_assert_eq(blk_target_open(&g.t, t_path("disk.img"), false, 0, NQ), 0);
	for (i = 0; i < NRINGS; i++) {
		g.r[i].idx = i;
		cr_assert_eq(pthread_create(&g.r[i].th, NULL, reactor_main, &g.r[i]), 0);
	}
	wait_until_true(&g.serving, "the server is created");
}

/* Destroy the server, wait until every ring let go, join the threads. */
static void
rx_stop(void)
{
	unsigned int i;

	STORE(&g.stop, true);
	for (i = 0; i < NRINGS; i++) {
		cr_assert_eq(pthread_join(g.r[i].th, NULL), 0);
	}
	cr_assert_eq(LOAD(&g.closed), LOAD(&g.opened), "every device closed once");
	blk_target_close(&g.t);
	for (i = 0; i < NQ; i++) {
		close(g_hold.release_fd[i]);
	}
	close(g_changed);
	g_changed = -1;
}

/* Front-end ---------------------------------------------------------------- */

struct fe {
	struct vhu_endpoint *ep;
	void *ifl;			/* the inflight region (GET_INFLIGHT_FD), or NULL */
	size_t ifl_len;
	struct fake_guest g;
	struct fg_vq q[NQ];
	int kick[NQ];
	int call[NQ];
};

static void
fe_connect(struct fe *e, unsigned int nregions)
{
	static const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
	};
	unsigned int q;

	memset(e, 0, sizeof(*e));
	cr_assert_eq(vhu_endpoint_connect_timeout(t_path("sock"), &rules, WAIT_MS, &e->ep), 0);
	cr_assert_eq(vhu_endpoint_set_timeout(e->ep, WAIT_MS), 0);
	cr_assert_eq(fg_init(&e->g, layout, nregions), 0);
	for (q = 0; q < NQ; q++) {
		cr_assert_eq(fg_vq_init(&e->q[q], &e->g, QNUM, DESC_GPA(q), AVAIL_GPA(q),
					USED_GPA(q)), 0);
		e->kick[q] = eventfd(0, EFD_CLOEXEC);
		e->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
}

static void
fe_fini(struct fe *e)
{
	unsigned int q;

	vhu_endpoint_destroy(e->ep);
	e->ep = NULL;
	fg_fini(&e->g);
	if (e->ifl != NULL) {
		munmap(e->ifl, e->ifl_len);
	}
	for (q = 0; q < NQ; q++) {
		close(e->kick[q]);
		close(e->call[q]);
	}
}

static bool
fe_readable(struct fe *e, int timeout_ms)
{
	struct pollfd p = { .fd = vhu_endpoint_fd(e->ep), .events = POLLIN };

	return poll(&p, 1, timeout_ms) == 1;
}

/* Send a request; with want != NULL, read the reply's body (and with fd, its fd). */
static void
fe_call_fd(struct fe *e, uint32_t req, const void *body, size_t len, const int *fds,
	   unsigned int nfds, bool need_reply, void *want, size_t want_len, int *fd)
{
	/* The rings run on their threads: the reply is only waited for. */
	th_call(NULL, e->ep, req, body, len, fds, nfds, need_reply, want, want_len, fd);
}

static void
fe_call(struct fe *e, uint32_t req, const void *body, size_t len, const int *fds,
	unsigned int nfds, bool need_reply, void *want, size_t want_len)
{
	fe_call_fd(e, req, body, len, fds, nfds, need_reply, want, want_len, NULL);
}

static uint64_t
fe_get_u64(struct fe *e, uint32_t req)
{
	uint64_t v = 0;

	fe_call(e, req, NULL, 0, NULL, 0, false, &v, sizeof(v));
	return v;
}

/* A request acked under REPLY_ACK: \return the ack (0 success). */
static uint64_t
fe_ack(struct fe *e, uint32_t req, const void *body, size_t len, const int *fds,
       unsigned int nfds)
{
	uint64_t v = 99;

	fe_call(e, req, body, len, fds, nfds, true, &v, sizeof(v));
	return v;
}

static void
fe_add_region(struct fe *e, unsigned int i)
{
	struct vhu_single_region sr;
	int fd = dup(e->g.r[i].fd);

	memset(&sr, 0, sizeof(sr));
	sr.region = fg_region_desc(&e->g, i);
	cr_assert_eq(fe_ack(e, VHU_REQ_ADD_MEM_REG, &sr, sizeof(sr), &fd, 1), 0);
	close(fd);
}

/* QEMU with reconnect: the inflight region from GET_INFLIGHT_FD, handed back by SET_INFLIGHT_FD. */
static void
fe_inflight(struct fe *e)
{
	struct vhu_inflight in = { 0, 0, NQ, QNUM, 0 }, got;
	int fd = -1;

	fe_call_fd(e, VHU_REQ_GET_INFLIGHT_FD, &in, sizeof(in), NULL, 0, false, &got, sizeof(got),
		   &fd);
	cr_assert_eq(got.mmap_size, vhu_inflight_region_size(NQ, QNUM));
	e->ifl_len = got.mmap_size;
	e->ifl = mmap(NULL, e->ifl_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(e->ifl, MAP_FAILED);
	cr_assert_eq(fe_ack(e, VHU_REQ_SET_INFLIGHT_FD, &got, sizeof(got), &fd, 1), 0);
	close(fd);
}

/* What QEMU does for a 2-queue vhost-user-blk device: both queues started. */
static void
fe_setup_with(struct fe *e, bool owner, bool inflight)
{
	struct vhu_vring_state st;
	struct vhu_vring_addr a;
	uint64_t v;
	unsigned int q;

	cr_assert(fe_get_u64(e, VHU_REQ_GET_FEATURES) & F(VHU_F_PROTOCOL_FEATURES));
	v = fe_get_u64(e, VHU_REQ_GET_PROTOCOL_FEATURES);
	cr_assert_eq(v & (PF(REPLY_ACK) | PF(MQ) | PF(CONFIGURE_MEM_SLOTS)),
		     PF(REPLY_ACK) | PF(MQ) | PF(CONFIGURE_MEM_SLOTS));
	v &= PF(REPLY_ACK) | PF(MQ) | PF(CONFIGURE_MEM_SLOTS) | PF(CONFIG) | PF(RESET_DEVICE) |
	     (inflight ? PF(INFLIGHT_SHMFD) : 0);
	cr_assert_eq(fe_ack(e, VHU_REQ_SET_PROTOCOL_FEATURES, &v, 8, NULL, 0), 0);
	cr_assert_eq(fe_get_u64(e, VHU_REQ_GET_QUEUE_NUM), NQ);
	if (owner) {
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	}
	v = F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | F(BLK_F_FLUSH) | F(BLK_F_MQ);
	cr_assert_eq(fe_ack(e, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0), 0);
	if (inflight) {
		fe_inflight(e);
	}
	fe_add_region(e, 0);
	for (q = 0; q < NQ; q++) {
		st.index = q;
		st.num = 3;
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 1,
			     "queue %u: not a power of two", q);
		st.num = QNUM;
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 0);
		st.num = 0;
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_BASE, &st, sizeof(st), NULL, 0), 0);
		a = fg_vq_addr(&e->q[q]);
		a.index = q;
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
		v = q;
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_CALL, &v, 8, &e->call[q], 1), 0);
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_KICK, &v, 8, &e->kick[q], 1), 0);
		st.num = 1;
		cr_assert_eq(fe_ack(e, VHU_REQ_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0), 0);
	}
}

static void
fe_setup(struct fe *e, bool owner)
{
	fe_setup_with(e, owner, false);
}

static void
fe_handshake(struct fe *e)
{
	fe_setup(e, true);
}

/* One virtio-blk request on queue q: header, len bytes at data_gpa, status; then a kick. */
static void
fe_blk_at(struct fe *e, unsigned int q, uint32_t type, uint64_t sector, uint64_t data_gpa,
	  uint32_t len)
{
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} hdr = { type, 0, sector };
	struct fg_vq *vq = &e->q[q];
	uint16_t head = (uint16_t)((vq->avail_idx % (QNUM / 4)) * 4), n = head;

	memcpy(fg_ptr(&e->g, HDR_GPA(q) + head * 16u, sizeof(hdr)), &hdr, sizeof(hdr));
	*(uint8_t *)fg_ptr(&e->g, STATUS_GPA(q) + head, 1) = 0xff;
	fg_desc(vq, n, HDR_GPA(q) + head * 16u, sizeof(hdr), VHU_VIRTQ_DESC_F_NEXT,
		(uint16_t)(n + 1));
	n++;
	if (len > 0) {
		fg_desc(vq, n, data_gpa, len,
			VHU_VIRTQ_DESC_F_NEXT | (type == BLK_T_IN ? VHU_VIRTQ_DESC_F_WRITE : 0),
			(uint16_t)(n + 1));
		n++;
	}
	fg_desc(vq, n, STATUS_GPA(q) + head, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(vq, head);
	cr_assert_eq(eventfd_write(e->kick[q], 1), 0);
}

static void
fe_blk(struct fe *e, unsigned int q, uint32_t type, uint64_t sector, uint32_t len)
{
	fe_blk_at(e, q, type, sector, DATA_GPA(q), len);
}

/* Wait (on the call eventfd) until queue q's next request is used; \return its status. */
static uint8_t
fe_blk_wait(struct fe *e, unsigned int q)
{
	struct pollfd p = { .fd = e->call[q], .events = POLLIN };
	uint64_t calls;
	uint32_t id, len;
	int i;

	for (i = 0; i < 100; i++) {
		if (fg_used(&e->q[q], &id, &len)) {
			return *(uint8_t *)fg_ptr(&e->g, STATUS_GPA(q) + id, 1);
		}
		cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "queue %u: no call", q);
		(void)eventfd_read(e->call[q], &calls);
	}
	cr_assert_fail("queue %u: the request was never used", q);
	return 0xff;
}

static bool
same_thread(pthread_t a, pthread_t b)
{
	return pthread_equal(a, b) != 0;
}

/* Tests ---------------------------------------------------------------------- */

Test(reactors, each_queue_on_its_ring_data_crosses_queues)
{
	uint8_t *d0, *d1, want[4096];
	struct fe e;
	int fd;

	rx_start(false);
	fe_connect(&e, 1);
	fe_handshake(&e);
	d0 = fg_ptr(&e.g, DATA_GPA(0), 4096);
	d1 = fg_ptr(&e.g, DATA_GPA(1), 4096);
	/* Written through queue 0 at sector 0, through queue 1 at sector 8. */
	memset(d0, 0xa0, 4096);
	fe_blk(&e, 0, BLK_T_OUT, 0, 4096);
	memset(d1, 0xb1, 4096);
	fe_blk(&e, 1, BLK_T_OUT, 8, 4096);
	cr_assert_eq(fe_blk_wait(&e, 0), BLK_S_OK);
	cr_assert_eq(fe_blk_wait(&e, 1), BLK_S_OK);
	/* Read back crossed: queue 1 reads what queue 0 wrote, and back. */
	memset(d0, 0, 4096);
	memset(d1, 0, 4096);
	fe_blk(&e, 1, BLK_T_IN, 0, 4096);
	fe_blk(&e, 0, BLK_T_IN, 8, 4096);
	cr_assert_eq(fe_blk_wait(&e, 1), BLK_S_OK);
	cr_assert_eq(fe_blk_wait(&e, 0), BLK_S_OK);
	memset(want, 0xa0, sizeof(want));
	cr_assert_eq(memcmp(d1, want, 4096), 0, "queue 1 reads queue 0's write");
	memset(want, 0xb1, sizeof(want));
	cr_assert_eq(memcmp(d0, want, 4096), 0, "queue 0 reads queue 1's write");
	/* And the disk has both. */
	fd = open(t_path("disk.img"), O_RDONLY | O_CLOEXEC);
	cr_assert_eq(pread(fd, want, 4096, 8 * 512), 4096);
	cr_assert_eq(want[0], 0xb1);
	cr_assert_eq(want[4095], 0xb1);
	close(fd);
	/* Each queue's work ran on its home ring's thread. */
	cr_assert(LOAD(&g.worked[0]) && LOAD(&g.worked[1]));
	cr_assert(same_thread(g.work_thread[0], g.r[0].th), "queue 0 on ring 0");
	cr_assert(same_thread(g.work_thread[1], g.r[1].th), "queue 1 on ring 1");
	cr_assert_eq(vhu_dev_queue_ring(g.dev, 0), g.r[0].ring);
	cr_assert_eq(vhu_dev_queue_ring(g.dev, 1), g.r[1].ring);
	fe_fini(&e);
	wait_until(&g.closed, 1, "the device closes with its connection");
	cr_assert_eq(g.reason, -VHU_EDISCONNECT);
	rx_stop();
}

Test(reactors, get_vring_base_on_the_remote_queue_waits_for_its_requests)
{
	struct vhu_vring_state st = { 1, 0 }, got;
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_VRING_BASE, sizeof(st), false);
	struct fe e;
	uint32_t id, len;

	rx_start(true);
	fe_connect(&e, 1);
	fe_handshake(&e);
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	wait_until(&g_hold.n[1], 2, "queue 1 holds both requests");
	cr_assert_eq(vhu_endpoint_send_message(e.ep, &h, &st, sizeof(st), NULL, 0), 0);
	cr_assert_not(fe_readable(&e, 100), "replied with requests in flight");
	/* Queue 0 is not stopped by it: but the message is held, so nothing else is answered. */
	g_hold.push_len = 1;
	cr_assert_eq(eventfd_write(g_hold.release_fd[1], 1), 0);
	cr_assert_eq(vhu_endpoint_recv_body(e.ep, &h, &got, sizeof(got), NULL), 0);
	cr_assert_eq(h.request, VHU_REQ_GET_VRING_BASE);
	cr_assert_eq(got.index, 1);
	cr_assert_eq(got.num, 2, "base %u: the index after both requests", got.num);
	cr_assert(fg_used(&e.q[1], &id, &len), "the used ring has the first request");
	cr_assert(fg_used(&e.q[1], &id, &len), "and the second");
	/* Restarted from that base, the queue serves again. */
	st.num = got.num;
	cr_assert_eq(fe_ack(&e, VHU_REQ_SET_VRING_BASE, &st, sizeof(st), NULL, 0), 0);
	{
		uint64_t v = 1;
		int kick = dup(e.kick[1]);

		cr_assert_eq(fe_ack(&e, VHU_REQ_SET_VRING_KICK, &v, 8, &kick, 1), 0);
		close(kick);
	}
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	wait_until(&g_hold.n[1], 1, "queue 1 pops again after the restart");
	cr_assert_eq(eventfd_write(g_hold.release_fd[1], 1), 0);
	cr_assert_eq(fe_blk_wait(&e, 1), 0xff, "held requests are pushed as they are");
	fe_fini(&e);
	wait_until(&g.closed, 1, "the device closes");
	rx_stop();
}

Test(reactors, reset_device_waits_for_both_rings)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_RESET_DEVICE, 0, true);
	uint64_t ack = 99;
	struct fe e;

	rx_start(true);
	fe_connect(&e, 1);
	fe_handshake(&e);
	fe_blk(&e, 0, BLK_T_FLUSH, 0, 0);
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	wait_until(&g_hold.n[0], 1, "queue 0 holds its request");
	wait_until(&g_hold.n[1], 1, "queue 1 holds its request");
	cr_assert_eq(vhu_endpoint_send_message(e.ep, &h, NULL, 0, NULL, 0), 0);
	cr_assert_eq(eventfd_write(g_hold.release_fd[0], 1), 0);
	cr_assert_not(fe_readable(&e, 100), "acked with a request in flight on ring 1");
	cr_assert_eq(eventfd_write(g_hold.release_fd[1], 1), 0);
	cr_assert_eq(vhu_endpoint_recv_body(e.ep, &h, &ack, sizeof(ack), NULL), 0);
	cr_assert_eq(h.request, VHU_REQ_RESET_DEVICE);
	cr_assert_eq(ack, 0);
	/* The connection goes on: the guest resets its rings, the set-up runs again. */
	for (unsigned int q = 0; q < NQ; q++) {
		cr_assert_eq(fg_vq_init(&e.q[q], &e.g, QNUM, DESC_GPA(q), AVAIL_GPA(q),
					USED_GPA(q)), 0);
	}
	fe_setup(&e, false);
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	wait_until(&g_hold.n[1], 1, "queue 1 serves after the reset");
	cr_assert_eq(eventfd_write(g_hold.release_fd[1], 1), 0);
	fe_fini(&e);
	wait_until(&g.closed, 1, "the device closes");
	rx_stop();
}

Test(reactors, region_added_and_removed_while_the_remote_queue_runs)
{
	struct vhu_single_region sr;
	uint8_t *buf;
	struct fe e;
	int maps;

	rx_start(false);
	fe_connect(&e, 2);
	fe_handshake(&e);
	/* Queue 1 works before the region exists ... */
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	cr_assert_eq(fe_blk_wait(&e, 1), BLK_S_OK);
	maps = fg_map_count();
	fe_add_region(&e, 1);
	cr_assert_eq(fg_map_count(), maps + 2, "one mapping per ring with queues");
	/* ... and its data may live in it once ADD_MEM_REG is acked. */
	buf = fg_ptr(&e.g, R1_GPA, 4096);
	memset(buf, 0x5e, 4096);
	fe_blk_at(&e, 1, BLK_T_OUT, 16, R1_GPA, 4096);
	cr_assert_eq(fe_blk_wait(&e, 1), BLK_S_OK);
	memset(buf, 0, 4096);
	fe_blk_at(&e, 0, BLK_T_IN, 16, R1_GPA, 4096);
	cr_assert_eq(fe_blk_wait(&e, 0), BLK_S_OK);
	cr_assert_eq(buf[0], 0x5e);
	cr_assert_eq(buf[4095], 0x5e);
	/* Removed: unmapped from every ring's view; the queues go on in region 0. */
	memset(&sr, 0, sizeof(sr));
	sr.region = fg_region_desc(&e.g, 1);
	cr_assert_eq(fe_ack(&e, VHU_REQ_REM_MEM_REG, &sr, sizeof(sr), NULL, 0), 0);
	cr_assert_eq(fg_map_count(), maps, "the region is unmapped on both rings");
	fe_blk(&e, 1, BLK_T_IN, 16, 4096);
	cr_assert_eq(fe_blk_wait(&e, 1), BLK_S_OK);
	cr_assert_eq(((uint8_t *)fg_ptr(&e.g, DATA_GPA(1), 1))[0], 0x5e);
	fe_fini(&e);
	wait_until(&g.closed, 1, "the device closes");
	rx_stop();
}

Test(reactors, close_under_io_frees_the_device_once)
{
	struct fe e;
	unsigned int i;
	int fds;

	rx_start(true);
	fds = t_fd_count();
	fe_connect(&e, 1);
	fe_handshake(&e);
	for (i = 0; i < 3; i++) {
		fe_blk(&e, 0, BLK_T_FLUSH, 0, 0);
		fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	}
	wait_until(&g_hold.n[0], 3, "queue 0 holds its requests");
	wait_until(&g_hold.n[1], 3, "queue 1 holds its requests");
	/* The front-end goes away with requests held on both rings. */
	fe_fini(&e);
	cr_assert_not(LOAD(&g.closed), "closed with requests in flight");
	cr_assert_eq(eventfd_write(g_hold.release_fd[1], 1), 0);
	cr_assert_eq(eventfd_write(g_hold.release_fd[0], 1), 0);
	wait_until(&g.closed, 1, "freed once both rings' requests are back");
	cr_assert_eq(g.reason, -VHU_EDISCONNECT);
	cr_assert_eq(t_fd_count(), fds, "no fd of the device is left");
	rx_stop();
}

Test(reactors, guest_fault_on_the_remote_queue_closes_its_device)
{
	struct fe e, ok;

	rx_start(false);
	fe_connect(&e, 1);
	fe_handshake(&e);
	fe_connect(&ok, 1);
	fe_handshake(&ok);
	/* Device 2's queue 1 lives on ring 0, its queue 0 on ring 1: fault device 1's queue 1. */
	fg_desc(&e.q[1], 0, 0x10000000ull, 16, 0, 0);
	fg_avail(&e.q[1], 0);
	cr_assert_eq(eventfd_write(e.kick[1], 1), 0);
	wait_until(&g.closed, 1, "the faulty device closes");
	cr_assert(vhu_err_is_guest_fault(g.reason), "reason %s", vhu_strerror(g.reason));
	/* The other device goes on, on both rings. */
	fe_blk(&ok, 0, BLK_T_FLUSH, 0, 0);
	cr_assert_eq(fe_blk_wait(&ok, 0), BLK_S_OK);
	fe_blk(&ok, 1, BLK_T_FLUSH, 0, 0);
	cr_assert_eq(fe_blk_wait(&ok, 1), BLK_S_OK);
	fe_fini(&e);
	fe_fini(&ok);
	wait_until(&g.closed, 2, "both devices close");
	rx_stop();
}

Test(reactors, vhu_dev_close_from_the_remote_ring)
{
	struct fe e;

	rx_start(false);
	fe_connect(&e, 1);
	fe_handshake(&e);
	STORE(&g_close_from_q1, true);
	/* Queue 1's work (on ring 1) closes the device: the control ring does it. */
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	wait_until(&g.closed, 1, "the device closes");
	cr_assert_eq(g.reason, -ECONNABORTED);
	cr_assert(fe_readable(&e, WAIT_MS), "the connection is closed");
	fe_fini(&e);
	rx_stop();
}

Test(reactors, create_multi_refuses_bad_ring_lists)
{
	struct vhu_ring *r = NULL;
	struct vhu_ring *twice[2];
	struct vhu_ring *many[VHU_DEV_MAX_RINGS + 1];
	struct vhu_dev_server *srv = (void *)1;
	struct vhu_dev_opts o;
	unsigned int i;

	memset(&g, 0, sizeof(g));
	cr_assert_eq(blk_target_open(&g.t, NULL, false, DISK_BYTES, NQ), 0);
	cr_assert_eq(vhu_ring_create(NULL, &r), 0);
	blk_dev_opts(&g.t, g.config, &o);
	twice[0] = twice[1] = r;
	for (i = 0; i <= VHU_DEV_MAX_RINGS; i++) {
		many[i] = r;
	}
	cr_assert_eq(vhu_dev_server_create_multi(twice, 0, &o, &srv), -EINVAL, "no ring");
	cr_assert_null(srv);
	cr_assert_eq(vhu_dev_server_create_multi(twice, 2, &o, &srv), -EINVAL, "a ring twice");
	cr_assert_eq(vhu_dev_server_create_multi(many, VHU_DEV_MAX_RINGS + 1, &o, &srv), -EINVAL,
		     "too many rings");
	cr_assert_eq(vhu_dev_server_create_multi(twice, 1, &o, &srv), 0, "one ring is fine");
	vhu_dev_server_destroy(srv);
	vhu_ring_destroy(r);
	blk_target_close(&g.t);
}

Test(reactors, inflight_areas_are_kept_by_each_queues_ring)
{
	struct vhu_inflight_queue *a0, *a1;
	struct fe e;

	rx_start(true);
	fe_connect(&e, 1);
	fe_setup_with(&e, true, true);
	a0 = vhu_inflight_queue_at(e.ifl, QNUM, 0);
	a1 = vhu_inflight_queue_at(e.ifl, QNUM, 1);
	/* A request held on queue 1 (ring 1) is marked in queue 1's area only. */
	fe_blk(&e, 1, BLK_T_FLUSH, 0, 0);
	wait_until(&g_hold.n[1], 1, "queue 1 holds its request");
	cr_assert_eq(__atomic_load_n(&a1->desc[0].inflight, __ATOMIC_ACQUIRE), 1,
		     "ring 1 marks it in queue 1's area");
	cr_assert_eq(a0->desc[0].inflight, 0);
	/* Pushed: cleared. */
	g_hold.push_len = 1;
	cr_assert_eq(eventfd_write(g_hold.release_fd[1], 1), 0);
	(void)fe_blk_wait(&e, 1);
	cr_assert_eq(__atomic_load_n(&a1->desc[0].inflight, __ATOMIC_ACQUIRE), 0,
		     "cleared when pushed");
	/* And queue 0 (ring 0) has its own. */
	fe_blk(&e, 0, BLK_T_FLUSH, 0, 0);
	wait_until(&g_hold.n[0], 1, "queue 0 holds its request");
	cr_assert_eq(__atomic_load_n(&a0->desc[0].inflight, __ATOMIC_ACQUIRE), 1);
	cr_assert_eq(eventfd_write(g_hold.release_fd[0], 1), 0);
	(void)fe_blk_wait(&e, 0);
	fe_fini(&e);
	wait_until(&g.closed, 1, "the device closes");
	rx_stop();
}

/* Connections on their rings --------------------------------------------- */

/* Write pattern through queue 0 at sector, read it back through queue 1. */
static void
fe_rw(struct fe *e, uint64_t sector, uint8_t pattern)
{
	uint8_t *d0 = fg_ptr(&e->g, DATA_GPA(0), 4096), *d1 = fg_ptr(&e->g, DATA_GPA(1), 4096);
	unsigned int i;

	memset(d0, pattern, 4096);
	fe_blk(e, 0, BLK_T_OUT, sector, 4096);
	cr_assert_eq(fe_blk_wait(e, 0), BLK_S_OK);
	memset(d1, 0, 4096);
	fe_blk(e, 1, BLK_T_IN, sector, 4096);
	cr_assert_eq(fe_blk_wait(e, 1), BLK_S_OK);
	for (i = 0; i < 4096; i++) {
		cr_assert_eq(d1[i], pattern, "byte %u read back", i);
	}
}

/* The server closed this front-end without serving it. */
static void
fe_refused(struct fe *e)
{
	struct vhu_hdr h;
	uint64_t v;

	cr_assert(fe_readable(e, WAIT_MS), "the connection is closed");
	cr_assert_lt(vhu_endpoint_recv_body(e->ep, &h, &v, sizeof(v), NULL), 0, "and got nothing");
}

Test(reactors, two_front_ends_each_on_its_own_ring)
{
	struct fe e1, e2;
	int fds;

	rx_start(false);
	fds = t_fd_count();
	fe_connect(&e1, 1);
	fe_handshake(&e1);
	fe_connect(&e2, 1);
	fe_handshake(&e2);
	cr_assert_eq(LOAD(&g.opened), 2);
	/* Device 1's connection on ring 0, device 2's on ring 1: each opened there. */
	cr_assert(same_thread(g.open_thread[1], g.r[0].th), "device 1 opened on ring 0");
	cr_assert(same_thread(g.open_thread[2], g.r[1].th), "device 2 opened on ring 1");
	cr_assert_eq(vhu_dev_ring(g.devs[1]), g.r[0].ring);
	cr_assert_eq(vhu_dev_ring(g.devs[2]), g.r[1].ring);
	/* Queue 0 with its connection, queue 1 on the next ring. */
	cr_assert_eq(vhu_dev_queue_ring(g.devs[2], 0), g.r[1].ring);
	cr_assert_eq(vhu_dev_queue_ring(g.devs[2], 1), g.r[0].ring);
	fe_rw(&e1, 0, 0x11);
	fe_rw(&e2, 64, 0x22);
	cr_assert(same_thread(g.dev_work_thread[1][0], g.r[0].th));
	cr_assert(same_thread(g.dev_work_thread[2][0], g.r[1].th), "device 2's queue 0 on ring 1");
	cr_assert(same_thread(g.dev_work_thread[2][1], g.r[0].th));
	/* Closing one leaves the other untouched, on either ring. */
	fe_fini(&e2);
	wait_until(&g.closed, 1, "device 2 closes");
	cr_assert_eq(g.reason, -VHU_EDISCONNECT);
	fe_rw(&e1, 128, 0x33);
	fe_connect(&e2, 1);
	fe_handshake(&e2);
	cr_assert(same_thread(g.open_thread[3], g.r[0].th), "device 3 on ring 0");
	fe_rw(&e2, 192, 0x44);
	fe_fini(&e1);
	wait_until(&g.closed, 2, "device 1 closes");
	fe_rw(&e2, 256, 0x55);
	fe_fini(&e2);
	wait_until(&g.closed, 3, "device 3 closes");
	cr_assert_eq(t_fd_count(), fds, "no fd of the devices is left");
	rx_stop();
}

Test(reactors, destroy_frees_the_devices_of_both_rings_once)
{
	struct fe e1, e2;
	int fds, maps;

	fds = t_fd_count();
	maps = fg_map_count();
	rx_start(false);
	fe_connect(&e1, 1);
	fe_handshake(&e1);
	fe_connect(&e2, 1);
	fe_handshake(&e2);
	fe_rw(&e1, 0, 0x61);
	fe_rw(&e2, 64, 0x62);
	/* Destroyed with both connected: each ring closes its own, server_gone once all let go. */
	rx_stop();
	cr_assert_eq(LOAD(&g.opened), 2);
	cr_assert_eq(LOAD(&g.closed), 2);
	cr_assert(fe_readable(&e1, WAIT_MS) && fe_readable(&e2, WAIT_MS), "both are closed");
	fe_fini(&e1);
	fe_fini(&e2);
	cr_assert_eq(t_fd_count(), fds, "no fd left");
	cr_assert_eq(fg_map_count(), maps, "no mapping left");
}

Test(reactors, max_conns_counts_the_front_ends_of_every_ring)
{
	struct fe e1, e2, e3;

	g_max_conns = 2;
	rx_start(false);
	g_max_conns = 0;
	fe_connect(&e1, 1);
	fe_handshake(&e1);
	fe_connect(&e2, 1);
	fe_handshake(&e2);
	cr_assert(same_thread(g.open_thread[2], g.r[1].th), "one on each ring");
	/* A third is closed at once, whichever ring it would go to. */
	fe_connect(&e3, 1);
	fe_refused(&e3);
	fe_fini(&e3);
	cr_assert_eq(LOAD(&g.opened), 2);
	/* Room again once one goes. */
	fe_fini(&e2);
	wait_until(&g.closed, 1, "device 2 closes");
	fe_connect(&e3, 1);
	fe_handshake(&e3);
	fe_rw(&e3, 0, 0x71);
	fe_fini(&e3);
	fe_fini(&e1);
	wait_until(&g.closed, 3, "every device closes");
	rx_stop();
}

Test(reactors, a_front_end_handed_over_after_the_destroy_is_closed)
{
	struct fe e1, e2, e3;
	int fds;

	fds = t_fd_count();
	rx_start(false);
	/* Ring 1 stops taking messages: device 2's socket waits in its inbox. */
	STORE(&g.pause1, true);
	wait_until_true(&g.paused1, "ring 1 stops driving its ring");
	fe_connect(&e1, 1);
	fe_connect(&e2, 1);
	fe_connect(&e3, 1);
	/* Accepted in order: device 3 open on ring 0 means device 2's socket was handed over. */
	wait_until(&g.opened, 2, "devices 1 and 3 open on ring 0");
	STORE(&g.stop, true);
	/* Their devices wait for ring 1 to hand their queue 1 back, but the connections go. */
	cr_assert(fe_readable(&e1, WAIT_MS) && fe_readable(&e3, WAIT_MS),
		  "the destroy closes ring 0's connections");
	cr_assert_not(fe_readable(&e2, 100), "device 2's socket is still in ring 1's inbox");
	STORE(&g.pause1, false);
	fe_refused(&e2);
	rx_stop();
	cr_assert_eq(LOAD(&g.opened), 2, "the late one was never opened");
	fe_fini(&e1);
	fe_fini(&e2);
	fe_fini(&e3);
	cr_assert_eq(t_fd_count(), fds, "no fd left");
}
