/* SPDX-License-Identifier: MIT */
/*
 * The device layer (<vhu/device.h>) with vhu-blk's request handling
 * (tools/blk/) on a ring in this process, driven by an in-process fake
 * front-end: a blocking endpoint on the other end of a socketpair sends
 * what QEMU sends, and a fake guest (memfd RAM, fake_guest.c) writes
 * virtio-blk chains. Handshake and REPLY_ACK, a write and a read through
 * a small backing file, calls, GET_VRING_BASE and RESET_DEVICE with a
 * request in flight (an application that pops and holds), REM_MEM_REG,
 * kick and call fds replaced while their operations are in flight,
 * read-only and null disks, discard and write-zeroes, and a hostile chain
 * per class (out of bounds, loop, nested indirect) that breaks only its
 * own device and leaves no fd and no mapping behind; guest memory shrunk
 * under the mapping (the SIGBUS guard), found at a pop or at a push, closes
 * only its device with VHU_EMEMLOST.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "uring_helpers.h"
#include "fake_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/device.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "blk/blkdev.h"
#include "blk/target.h"

TestSuite(device, .init = t_setup, .fini = t_teardown, .timeout = 60);

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)
#define MiB		(1024ull * 1024ull)
#define QNUM		16u
#define DESC_GPA	0x0ull
#define AVAIL_GPA	0x1000ull
#define USED_GPA	0x2000ull
#define HDR_GPA		0x10000ull
#define DATA_GPA	0x20000ull
#define STATUS_GPA	0x30000ull
#define DISK_BYTES	(1 * MiB)
#define ROUNDS		2000

static const struct fg_layout layout[] = { { .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 } };

/* One front-end: endpoint, guest, queue 0's driver side and its eventfds. */
struct fe {
	struct vhu_endpoint *ep;
	struct vhu_dev *dev;
	struct fake_guest g;
	struct fg_vq q;
	int kick;
	int call;
};

struct fx {
	struct vhu_ring *ring;
	struct vhu_dev_server *srv;
	struct blk_target t;
	uint8_t config[BLK_CONFIG_SIZE];
	unsigned int closed;
	int reason;
};

static struct fx *g_fx;

static void
on_close(struct vhu_dev *dev, int reason, void *ctx)
{
	blk_dev_ops.close(dev, reason, ctx);
	g_fx->closed++;
	g_fx->reason = reason;
}

static struct vhu_dev_ops ops;

/* The disk served: a writable file, the same file read-only, or a null disk. */
enum disk { DISK_FILE, DISK_RO, DISK_NULL };

/* Virtio features the handshake acks besides VERSION_1, PROTOCOL_FEATURES and FLUSH. */
static uint64_t g_extra_features;

/* A server for disk; with app != NULL its queue_work (and open) replace vhu-blk's. */
static void
fx_init_with(struct fx *f, enum disk disk, const struct vhu_dev_ops *app)
{
	struct vhu_ring_opts ro = { .max_conns = 8, .max_ops = 64 };
	struct vhu_dev_opts o;
	int fd;

	memset(f, 0, sizeof(*f));
	g_fx = f;
	fd = open(t_path("disk.img"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	if (disk == DISK_NULL) {
		cr_assert_eq(blk_target_open(&f->t, NULL, false, DISK_BYTES, 1), 0);
	} else {
		cr_assert_eq(blk_target_open(&f->t, t_path("disk.img"), disk == DISK_RO, 0, 1),
			     0);
	}
	cr_assert_eq(vhu_ring_create(&ro, &f->ring), 0);
	blk_dev_opts(&f->t, f->config, &o);
	ops = blk_dev_ops;
	ops.close = on_close;
	if (app != NULL) {
		ops.open = app->open;
		ops.queue_work = app->queue_work;
	}
	o.ops = &ops;
	cr_assert_eq(vhu_dev_server_create(f->ring, &o, &f->srv), 0);
}

static void
fx_init(struct fx *f)
{
	fx_init_with(f, DISK_FILE, NULL);
}

static void
fx_fini(struct fx *f)
{
	vhu_dev_server_destroy(f->srv);
	vhu_ring_destroy(f->ring);
	blk_target_close(&f->t);
}

static void
fe_connect(struct fx *f, struct fe *e)
{
	static const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
	};
	int sv[2];

	memset(e, 0, sizeof(*e));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_from_fd(sv[0], &rules, &e->ep), 0);
	cr_assert_eq(vhu_dev_server_attach(f->srv, sv[1], &e->dev), 0);
	cr_assert_not_null(e->dev);
	cr_assert_eq(fg_init(&e->g, layout, 1), 0);
	cr_assert_eq(fg_vq_init(&e->q, &e->g, QNUM, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
	e->kick = eventfd(0, EFD_CLOEXEC);
	e->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

static void
fe_fini(struct fe *e)
{
	vhu_endpoint_destroy(e->ep);
	fg_fini(&e->g);
	close(e->kick);
	close(e->call);
}

/* Send a request; with want != NULL, read the reply's body into it. \return body bytes. */
static size_t
fe_call(struct fx *f, struct fe *e, uint32_t req, const void *body, size_t len,
	const int *fds, unsigned int nfds, bool need_reply, void *want, size_t want_len)
{
	return th_call(f->ring, e->ep, req, body, len, fds, nfds, need_reply, want, want_len,
		       NULL);
}

/* Drive the ring until the endpoint has something to read (or it hung up). */
static void
fx_run_until_readable(struct fx *f, struct fe *e)
{
	int fd = vhu_endpoint_fd(e->ep);

	th_run_until(f->ring, th_done_readable, &fd, "the device's reply");
}

static uint64_t
fe_get_u64(struct fx *f, struct fe *e, uint32_t req)
{
	uint64_t v = 0;

	cr_assert_eq(fe_call(f, e, req, NULL, 0, NULL, 0, false, &v, sizeof(v)), 8);
	return v;
}

/* A request acked under REPLY_ACK: \return the ack (0 success). */
static uint64_t
fe_ack(struct fx *f, struct fe *e, uint32_t req, const void *body, size_t len, const int *fds,
       unsigned int nfds)
{
	uint64_t v = 99;

	cr_assert_eq(fe_call(f, e, req, body, len, fds, nfds, true, &v, sizeof(v)), 8);
	return v;
}

/* What QEMU does at device init and guest boot, queue 0 only. */
static void
fe_handshake(struct fx *f, struct fe *e)
{
	uint64_t feat, pf, v;
	struct vhu_single_region sr;
	struct vhu_vring_state st;
	struct vhu_vring_addr a;
	int fd;

	feat = fe_get_u64(f, e, VHU_REQ_GET_FEATURES);
	cr_assert(feat & F(VHU_F_PROTOCOL_FEATURES));
	cr_assert(feat & F(VHU_F_VERSION_1));
	cr_assert(feat & F(BLK_F_MQ));
	pf = fe_get_u64(f, e, VHU_REQ_GET_PROTOCOL_FEATURES);
	cr_assert_eq(pf & (PF(REPLY_ACK) | PF(CONFIG) | PF(CONFIGURE_MEM_SLOTS) | PF(MQ)),
		     PF(REPLY_ACK) | PF(CONFIG) | PF(CONFIGURE_MEM_SLOTS) | PF(MQ));
	v = pf;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_PROTOCOL_FEATURES, &v, 8, NULL, 0), 0);
	cr_assert_eq(fe_get_u64(f, e, VHU_REQ_GET_QUEUE_NUM), 1);
	cr_assert_eq(fe_get_u64(f, e, VHU_REQ_GET_MAX_MEM_SLOTS), 509);
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 1, "a second owner fails");
	{
		struct {
			struct vhu_config c;
			uint8_t space[BLK_CONFIG_SIZE];
		} __attribute__((packed)) cfg = { .c = { 0, BLK_CONFIG_SIZE, 0 } }, got;
		uint64_t cap;

		cr_assert_eq(fe_call(f, e, VHU_REQ_GET_CONFIG, &cfg, sizeof(cfg), NULL, 0, false,
				     &got, sizeof(got)), sizeof(got));
		memcpy(&cap, got.space, 8);
		cr_assert_eq(cap, DISK_BYTES / 512);
	}
	v = F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | F(BLK_F_FLUSH) | g_extra_features;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0), 0);
	v = F(63);
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0), 1, "not offered");
	memset(&sr, 0, sizeof(sr));
	sr.region = fg_region_desc(&e->g, 0);
	fd = dup(e->g.r[0].fd);
	cr_assert_eq(fe_ack(f, e, VHU_REQ_ADD_MEM_REG, &sr, sizeof(sr), &fd, 1), 0);
	close(fd);
	st.index = 0;
	st.num = 3;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 1,
		     "not a power of two");
	st.num = QNUM;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 0);
	st.num = 0;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_BASE, &st, sizeof(st), NULL, 0), 0);
	a = fg_vq_addr(&e->q);
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	v = 0;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_CALL, &v, 8, &e->call, 1), 0);
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_KICK, &v, 8, &e->kick, 1), 0);
	st.num = 1;
	cr_assert_eq(fe_ack(f, e, VHU_REQ_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0), 0);
}

/* One virtio-blk request: header, data (len bytes at DATA_GPA), status. */
static void
fe_blk(struct fe *e, uint32_t type, uint64_t sector, uint32_t len)
{
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} hdr = { type, 0, sector };
	bool in = type == BLK_T_IN || type == BLK_T_GET_ID;
	uint16_t n = 0;

	memcpy(fg_ptr(&e->g, HDR_GPA, sizeof(hdr)), &hdr, sizeof(hdr));
	*(uint8_t *)fg_ptr(&e->g, STATUS_GPA, 1) = 0xff;
	fg_desc(&e->q, n, HDR_GPA, sizeof(hdr), VHU_VIRTQ_DESC_F_NEXT, (uint16_t)(n + 1));
	n++;
	if (len > 0) {
		fg_desc(&e->q, n, DATA_GPA, len,
			VHU_VIRTQ_DESC_F_NEXT | (in ? VHU_VIRTQ_DESC_F_WRITE : 0), (uint16_t)(n + 1));
		n++;
	}
	fg_desc(&e->q, n, STATUS_GPA, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&e->q, 0);
	cr_assert_eq(eventfd_write(e->kick, 1), 0);
}

/* Run the ring until the request is used; \return its status byte. */
static uint8_t
fe_blk_wait(struct fx *f, struct fe *e, uint32_t *used_len)
{
	uint32_t id, len;
	int i;

	for (i = 0; i < ROUNDS; i++) {
		if (fg_used(&e->q, &id, &len)) {
			*used_len = len;
			return *(uint8_t *)fg_ptr(&e->g, STATUS_GPA, 1);
		}
		cr_assert_geq(vhu_ring_wait(f->ring, 5), 0);
	}
	cr_assert_fail("the request was never used");
	return 0xff;
}

static void
run_until_closed(struct fx *f, unsigned int n)
{
	int i;

	for (i = 0; i < ROUNDS && f->closed < n; i++) {
		cr_assert_geq(vhu_ring_wait(f->ring, 5), 0);
	}
	cr_assert_eq(f->closed, n);
}

Test(device, handshake_and_reply_ack)
{
	struct fx f;
	struct fe e;
	struct vhu_vring_state st = { 0, 0 }, got;

	fx_init(&f);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	cr_assert_eq(vhu_dev_server_count(f.srv), 1);
	/* GET_VRING_BASE: stops the queue and reports where it stopped. */
	cr_assert_eq(fe_call(&f, &e, VHU_REQ_GET_VRING_BASE, &st, sizeof(st), NULL, 0, false, &got,
			     sizeof(got)), sizeof(got));
	cr_assert_eq(got.num, 0);
	cr_assert_not(vhu_vq_started(vhu_dev_vq(e.dev, 0)));
	/* An unimplemented request closes the connection. */
	fe_call(&f, &e, VHU_REQ_SET_LOG_BASE, NULL, 0, NULL, 0, false, NULL, 0);
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, blk_write_read_flush_round_trip)
{
	struct fx f;
	struct fe e;
	uint8_t *data, disk[4096];
	uint32_t used;
	uint64_t calls = 0;
	int fd, i;

	fx_init(&f);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	data = fg_ptr(&e.g, DATA_GPA, 4096);
	memset(data, 0xa5, 4096);
	memcpy(data, "vhu-blk round trip", 18);
	fe_blk(&e, BLK_T_OUT, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	cr_assert_eq(used, 1, "a write writes only the status byte");
	/* The call is written on the ring at the end of the pass that pushed. */
	for (i = 0; i < ROUNDS && eventfd_read(e.call, &calls) != 0; i++) {
		cr_assert_geq(vhu_ring_wait(f.ring, 5), 0);
	}
	cr_assert_geq(calls, 1, "the guest was called");

	fd = open(t_path("disk.img"), O_RDONLY | O_CLOEXEC);
	cr_assert_eq(pread(fd, disk, sizeof(disk), 8 * 512), 4096);
	close(fd);
	cr_assert_eq(memcmp(disk, data, 4096), 0, "the bytes are in the backing file");

	memset(data, 0, 4096);
	fe_blk(&e, BLK_T_IN, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	cr_assert_eq(used, 4097);
	cr_assert_eq(memcmp(data, disk, 4096), 0, "read back what was written");

	fe_blk(&e, BLK_T_FLUSH, 0, 0);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	fe_blk(&e, BLK_T_IN, DISK_BYTES / 512 - 1, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_IOERR, "beyond the capacity");
	fe_blk(&e, 77, 0, 0);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_UNSUPP);
	memset(data, 0, 20);
	fe_blk(&e, BLK_T_GET_ID, 0, 20);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	cr_assert_eq(used, 21);
	cr_assert_str_eq((char *)data, "vhu-blk");
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

/* Hostile chains, one per class of fault -------------------------------- */

enum hostile { H_OUT_OF_BOUNDS, H_LOOP, H_INDIRECT_NESTED };

#define TABLE_GPA	0x40000ull
#define TABLE2_GPA	0x50000ull

/* Write bad's chain of the class into its queue 0 and kick it. */
static void
hostile_chain(struct fe *bad, enum hostile h)
{
	switch (h) {
	case H_OUT_OF_BOUNDS:
		/* A buffer outside guest memory. */
		fg_desc(&bad->q, 0, 0x7fff0000ull, 512, VHU_VIRTQ_DESC_F_NEXT, 1);
		fg_desc(&bad->q, 1, STATUS_GPA, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
		break;
	case H_LOOP:
		/* 0 -> 1 -> 0 -> ... */
		fg_desc(&bad->q, 0, HDR_GPA, 16, VHU_VIRTQ_DESC_F_NEXT, 1);
		fg_desc(&bad->q, 1, DATA_GPA, 512, VHU_VIRTQ_DESC_F_NEXT, 0);
		break;
	case H_INDIRECT_NESTED:
		/* An indirect table whose entry is itself indirect. */
		fg_desc(&bad->q, 0, TABLE_GPA, 2 * 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
		cr_assert(fg_indirect_desc(&bad->g, TABLE_GPA, 0, HDR_GPA, 16,
					   VHU_VIRTQ_DESC_F_NEXT, 1));
		cr_assert(fg_indirect_desc(&bad->g, TABLE_GPA, 1, TABLE2_GPA, 16,
					   VHU_VIRTQ_DESC_F_INDIRECT, 0));
		break;
	}
	fg_avail(&bad->q, 0);
	cr_assert_eq(eventfd_write(bad->kick, 1), 0);
}

static void
hostile_closes_only_its_device(enum hostile h, int want)
{
	struct fx f;
	struct fe bad, good;
	uint32_t used;
	int maps_before = fg_map_count();
	int fds_before = t_fd_count();

	g_extra_features = F(VHU_F_RING_INDIRECT_DESC);
	fx_init(&f);
	fe_connect(&f, &bad);
	fe_connect(&f, &good);
	fe_handshake(&f, &bad);
	fe_handshake(&f, &good);
	hostile_chain(&bad, h);
	run_until_closed(&f, 1);
	cr_assert_eq(f.reason, want, "closed with %s, expected %s", vhu_strerror(f.reason),
		     vhu_strerror(want));
	cr_assert_eq(vhu_dev_server_count(f.srv), 1);

	/* The other device still serves. */
	memset(fg_ptr(&good.g, DATA_GPA, 512), 0x5a, 512);
	fe_blk(&good, BLK_T_OUT, 0, 512);
	cr_assert_eq(fe_blk_wait(&f, &good, &used), BLK_S_OK);

	fe_fini(&bad);
	fe_fini(&good);
	run_until_closed(&f, 2);
	fx_fini(&f);
	g_extra_features = 0;
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}

Test(device, hostile_chain_breaks_only_its_device)
{
	hostile_closes_only_its_device(H_OUT_OF_BOUNDS, -VHU_EGUESTADDR);
}

Test(device, hostile_loop_breaks_only_its_device)
{
	hostile_closes_only_its_device(H_LOOP, -VHU_EVQLOOP);
}

Test(device, hostile_nested_indirect_breaks_only_its_device)
{
	hostile_closes_only_its_device(H_INDIRECT_NESTED, -VHU_EVQINDIRECT);
}

/* An application that pops and holds: requests in flight on demand ------ */

#define HOLD_MAX	4u

static struct {
	struct vhu_vq_req req[HOLD_MAX];
	struct iovec iov[HOLD_MAX][8];
	unsigned int n;
} g_hold;

static void
hold_work(struct vhu_dev *dev, unsigned int q, void *ctx)
{
	while (g_hold.n < HOLD_MAX &&
	       vhu_dev_pop(dev, q, &g_hold.req[g_hold.n], g_hold.iov[g_hold.n], 8) == 1) {
		g_hold.n++;
	}
}

static const struct vhu_dev_ops hold_ops = { .queue_work = hold_work };

/* Run the ring for a while; \return whether the endpoint became readable. */
static bool
fx_run_a_while(struct fx *f, struct fe *e)
{
	struct pollfd p = { .fd = vhu_endpoint_fd(e->ep), .events = POLLIN };
	int i;

	for (i = 0; i < 20; i++) {
		cr_assert_geq(vhu_ring_wait(f->ring, 2), 0);
		if (poll(&p, 1, 0) == 1) {
			return true;
		}
	}
	return false;
}

/* A request popped and held: avail it and run until the application has it. */
static void
hold_one(struct fx *f, struct fe *e)
{
	unsigned int before = g_hold.n;
	int i;

	fe_blk(e, BLK_T_FLUSH, 0, 0);
	for (i = 0; i < ROUNDS && g_hold.n == before; i++) {
		cr_assert_geq(vhu_ring_wait(f->ring, 5), 0);
	}
	cr_assert_eq(g_hold.n, before + 1, "the request was not popped");
}

Test(device, get_vring_base_waits_for_requests_in_flight)
{
	struct vhu_vring_state st = { 0, 0 }, got;
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_VRING_BASE, sizeof(st), false);
	struct fx f;
	struct fe e;
	uint32_t id, len;

	memset(&g_hold, 0, sizeof(g_hold));
	fx_init_with(&f, DISK_FILE, &hold_ops);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	hold_one(&f, &e);
	cr_assert_eq(vhu_endpoint_send_message(e.ep, &h, &st, sizeof(st), NULL, 0), 0);
	cr_assert_not(fx_run_a_while(&f, &e), "replied with a request in flight");
	cr_assert_not(vhu_vq_started(vhu_dev_vq(e.dev, 0)), "the queue is stopped at once");
	/* Pushed: the reply follows, with the index after the request. */
	cr_assert_eq(vhu_dev_push(e.dev, 0, &g_hold.req[0], 1), 0);
	fx_run_until_readable(&f, &e);
	cr_assert_eq(vhu_endpoint_recv_body(e.ep, &h, &got, sizeof(got), NULL), 0);
	cr_assert_eq(h.request, VHU_REQ_GET_VRING_BASE);
	cr_assert_eq(got.index, 0);
	cr_assert_eq(got.num, 1, "base %u", got.num);
	cr_assert(fg_used(&e.q, &id, &len), "the used ring has the request");
	cr_assert_eq(id, 0);
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, reset_device_waits_and_resets)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_RESET_DEVICE, 0, true);
	struct fx f;
	struct fe e;
	uint64_t ack = 99;

	memset(&g_hold, 0, sizeof(g_hold));
	fx_init_with(&f, DISK_FILE, &hold_ops);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	hold_one(&f, &e);
	cr_assert_eq(vhu_endpoint_send_message(e.ep, &h, NULL, 0, NULL, 0), 0);
	cr_assert_not(fx_run_a_while(&f, &e), "acked with a request in flight");
	vhu_dev_drop(e.dev, 0, &g_hold.req[0]);
	fx_run_until_readable(&f, &e);
	cr_assert_eq(vhu_endpoint_recv_body(e.ep, &h, &ack, sizeof(ack), NULL), 0);
	cr_assert_eq(h.request, VHU_REQ_RESET_DEVICE);
	cr_assert_eq(ack, 0);
	cr_assert_eq(vhu_dev_features(e.dev), 0, "features reset");
	cr_assert_not(vhu_vq_started(vhu_dev_vq(e.dev, 0)));
	cr_assert_eq(vhu_vq_num(vhu_dev_vq(e.dev, 0)), 0, "queue state reset");
	/* The connection goes on: the handshake can run again. */
	cr_assert_eq(fe_get_u64(&f, &e, VHU_REQ_GET_QUEUE_NUM), 1);
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, rem_mem_reg_unmaps_the_region)
{
	struct vhu_single_region sr;
	struct fx f;
	struct fe e;
	int maps;

	fx_init(&f);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	maps = fg_map_count();
	memset(&sr, 0, sizeof(sr));
	sr.region = fg_region_desc(&e.g, 0);
	cr_assert_eq(fe_ack(&f, &e, VHU_REQ_REM_MEM_REG, &sr, sizeof(sr), NULL, 0), 0);
	cr_assert_lt(fg_map_count(), maps, "the region is still mapped");
	cr_assert_neq(fe_ack(&f, &e, VHU_REQ_REM_MEM_REG, &sr, sizeof(sr), NULL, 0), 0,
		      "removed twice");
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, kick_and_call_fds_replaced_while_in_flight)
{
	struct fx f;
	struct fe e;
	uint64_t v = 0, calls = 0;
	uint32_t used;
	int kick2 = eventfd(0, EFD_CLOEXEC), call2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int fds, i;

	fx_init(&f);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	fds = t_fd_count();
	/* The kick read on the old fd is in flight: replaced, cancelled, closed when back. */
	cr_assert_eq(fe_ack(&f, &e, VHU_REQ_SET_VRING_KICK, &v, 8, &kick2, 1), 0);
	cr_assert_eq(fe_ack(&f, &e, VHU_REQ_SET_VRING_CALL, &v, 8, &call2, 1), 0);
	for (i = 0; i < 20; i++) {
		cr_assert_geq(vhu_ring_wait(f.ring, 2), 0);
	}
	cr_assert_eq(t_fd_count(), fds, "the old kick and call fds are closed");
	/* A kick on the new fd is served, and the call goes to the new call fd only. */
	close(e.kick);
	e.kick = kick2;
	fe_blk(&e, BLK_T_FLUSH, 0, 0);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	for (i = 0; i < ROUNDS && eventfd_read(call2, &calls) != 0; i++) {
		cr_assert_geq(vhu_ring_wait(f.ring, 5), 0);
	}
	cr_assert_geq(calls, 1, "the new call fd is called");
	cr_assert_neq(eventfd_read(e.call, &calls), 0, "the old call fd is not");
	close(call2);
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

/* vhu-blk's disks and requests ------------------------------------------- */

static void
disk_bytes(uint64_t off, void *buf, size_t len)
{
	int fd = open(t_path("disk.img"), O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

Test(device, read_only_disk_fails_writes_and_changes_nothing)
{
	uint8_t before[4096], after[4096];
	struct fx f;
	struct fe e;
	uint32_t used;

	fx_init_with(&f, DISK_RO, NULL);
	cr_assert(blk_target_features(&f.t) & F(BLK_F_RO));
	cr_assert_not(blk_target_features(&f.t) & (F(BLK_F_DISCARD) | F(BLK_F_WRITE_ZEROES)));
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	disk_bytes(0, before, sizeof(before));
	memset(fg_ptr(&e.g, DATA_GPA, 4096), 0xee, 4096);
	fe_blk(&e, BLK_T_OUT, 0, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_IOERR);
	disk_bytes(0, after, sizeof(after));
	cr_assert_eq(memcmp(before, after, sizeof(before)), 0, "a byte changed");
	fe_blk(&e, BLK_T_IN, 0, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK, "reads still work");
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, null_disk_reads_zeroes_and_takes_writes)
{
	uint8_t *data;
	struct fx f;
	struct fe e;
	uint32_t used;

	fx_init_with(&f, DISK_NULL, NULL);
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	data = fg_ptr(&e.g, DATA_GPA, 4096);
	memset(data, 0x77, 4096);
	fe_blk(&e, BLK_T_OUT, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	fe_blk(&e, BLK_T_IN, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	cr_assert_eq(used, 4097);
	for (unsigned int i = 0; i < 4096; i++) {
		cr_assert_eq(data[i], 0, "byte %u", i);
	}
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

/* DISCARD or WRITE_ZEROES of 8 sectors at sector 8 (flags: WRITE_ZEROES' UNMAP). */
static void
fe_blk_range(struct fe *e, uint32_t type, uint32_t flags)
{
	struct {
		uint64_t sector;
		uint32_t num;
		uint32_t flags;
	} seg = { 8, 8, flags };

	memcpy(fg_ptr(&e->g, DATA_GPA, sizeof(seg)), &seg, sizeof(seg));
	fe_blk(e, type, 0, sizeof(seg));
}

static void
zeroed_range(uint32_t type, uint32_t flags)
{
	uint8_t buf[4096], zero[4096] = { 0 };
	struct fx f;
	struct fe e;
	uint32_t used;

	fx_init(&f);
	if (type == BLK_T_DISCARD && !f.t.discard) {
		fx_fini(&f);
		cr_skip_test("the file system under the test directory punches no holes");
	}
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	memset(fg_ptr(&e.g, DATA_GPA, 4096), 0xc3, 4096);
	fe_blk(&e, BLK_T_OUT, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	disk_bytes(8 * 512, buf, sizeof(buf));
	cr_assert_eq(buf[0], 0xc3);
	fe_blk_range(&e, type, flags);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	disk_bytes(8 * 512, buf, sizeof(buf));
	cr_assert_eq(memcmp(buf, zero, sizeof(buf)), 0, "the range reads back as zeroes");
	/* And through the device. */
	memset(fg_ptr(&e.g, DATA_GPA, 4096), 0xff, 4096);
	fe_blk(&e, BLK_T_IN, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	cr_assert_eq(memcmp(fg_ptr(&e.g, DATA_GPA, 4096), zero, 4096), 0);
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, discard_reads_back_zeroes)
{
	zeroed_range(BLK_T_DISCARD, 0);
}

Test(device, write_zeroes_reads_back_zeroes)
{
	zeroed_range(BLK_T_WRITE_ZEROES, 0);
}

Test(device, write_zeroes_with_unmap_reads_back_zeroes)
{
	zeroed_range(BLK_T_WRITE_ZEROES, 1);
}

/* Without ZERO_RANGE (as if the file system refused it) zeroes are written. */
Test(device, write_zeroes_falls_back_to_writing_zeroes)
{
	uint8_t buf[4096], zero[4096] = { 0 };
	struct fx f;
	struct fe e;
	uint32_t used;

	fx_init(&f);
	f.t.zero_range = false;
	fe_connect(&f, &e);
	fe_handshake(&f, &e);
	memset(fg_ptr(&e.g, DATA_GPA, 4096), 0x3c, 4096);
	fe_blk(&e, BLK_T_OUT, 8, 4096);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	fe_blk_range(&e, BLK_T_WRITE_ZEROES, 0);
	cr_assert_eq(fe_blk_wait(&f, &e, &used), BLK_S_OK);
	disk_bytes(8 * 512, buf, sizeof(buf));
	cr_assert_eq(memcmp(buf, zero, sizeof(buf)), 0);
	fe_fini(&e);
	run_until_closed(&f, 1);
	fx_fini(&f);
}

Test(device, write_zeroes_may_unmap_only_where_holes_punch)
{
	uint8_t cfg[BLK_CONFIG_SIZE];
	struct blk_target t;
	int fd = open(t_path("d2.img"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	cr_assert_eq(blk_target_open(&t, t_path("d2.img"), false, 0, 1), 0);
	cr_assert(blk_target_features(&t) & F(BLK_F_WRITE_ZEROES));
	blk_target_config(&t, cfg);
	cr_assert_eq(cfg[56], t.punch ? 1 : 0);
	t.punch = false;
	t.discard = false;
	blk_target_config(&t, cfg);
	cr_assert_eq(cfg[56], 0, "may_unmap without hole punching");
	cr_assert_not(blk_target_features(&t) & F(BLK_F_DISCARD));
	blk_target_close(&t);
}

/* A front-end shrinks its guest memory under the mapping (the SIGBUS guard) ------ */

Test(device, shrunk_memory_closes_only_its_device)
{
	struct fx f;
	struct fe bad, good;
	uint32_t used;
	int maps_before = fg_map_count();
	int fds_before = t_fd_count();

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	fx_init(&f);
	fe_connect(&f, &bad);
	fe_connect(&f, &good);
	fe_handshake(&f, &bad);
	fe_handshake(&f, &good);
	memset(fg_ptr(&good.g, DATA_GPA, 512), 0x5a, 512);
	fe_blk(&good, BLK_T_OUT, 0, 512);
	cr_assert_eq(fe_blk_wait(&f, &good, &used), BLK_S_OK);

	/* The memfd it never sealed, truncated; then a kick: the ring is read. */
	cr_assert_eq(ftruncate(bad.g.r[0].fd, 0), 0);
	cr_assert_eq(eventfd_write(bad.kick, 1), 0);
	run_until_closed(&f, 1);
	cr_assert_eq(f.reason, -VHU_EMEMLOST, "closed with %s", vhu_strerror(f.reason));
	cr_assert_eq(vhu_dev_server_count(f.srv), 1);

	/* The other device still serves: it reads back what it wrote. */
	memset(fg_ptr(&good.g, DATA_GPA, 512), 0, 512);
	fe_blk(&good, BLK_T_IN, 0, 512);
	cr_assert_eq(fe_blk_wait(&f, &good, &used), BLK_S_OK);
	cr_assert_eq(((uint8_t *)fg_ptr(&good.g, DATA_GPA, 512))[511], 0x5a);

	fe_fini(&bad);
	fe_fini(&good);
	run_until_closed(&f, 2);
	fx_fini(&f);
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}

Test(device, memory_shrunk_under_a_request_closes_its_device_at_push)
{
	struct fx f;
	struct fe bad, good;
	uint32_t id, len;
	int maps_before = fg_map_count();
	int fds_before = t_fd_count();

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	memset(&g_hold, 0, sizeof(g_hold));
	fx_init_with(&f, DISK_FILE, &hold_ops);
	fe_connect(&f, &bad);
	fe_connect(&f, &good);
	fe_handshake(&f, &bad);
	fe_handshake(&f, &good);
	hold_one(&f, &bad);

	/* Shrunk while the application holds the request: its status write survives. */
	cr_assert_eq(ftruncate(bad.g.r[0].fd, 0), 0);
	*(uint8_t *)g_hold.iov[0][g_hold.req[0].nread].iov_base = BLK_S_OK;
	cr_assert_eq(vhu_dev_push(bad.dev, 0, &g_hold.req[0], 1), -VHU_EMEMLOST);
	run_until_closed(&f, 1);
	cr_assert_eq(f.reason, -VHU_EMEMLOST, "closed with %s", vhu_strerror(f.reason));

	hold_one(&f, &good);
	cr_assert_eq(vhu_dev_push(good.dev, 0, &g_hold.req[1], 1), 0);
	cr_assert(fg_used(&good.q, &id, &len), "the other device completes");

	fe_fini(&bad);
	fe_fini(&good);
	run_until_closed(&f, 2);
	fx_fini(&f);
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}
