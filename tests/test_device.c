/* SPDX-License-Identifier: MIT */
/*
 * The device layer (<vhu/device.h>) with vhu-blk's request handling
 * (tools/blk/) on a ring in this process, driven by an in-process fake
 * front-end: a blocking endpoint on the other end of a socketpair sends
 * what QEMU sends, and a fake guest (memfd RAM, fake_guest.c) writes
 * virtio-blk chains. Handshake and REPLY_ACK, a write and a read through
 * a small backing file, calls, GET_VRING_BASE, and a hostile chain that
 * breaks only its own device and leaves no fd and no mapping behind.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "fake_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
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

static void
fx_init(struct fx *f)
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
	cr_assert_eq(blk_target_open(&f->t, t_path("disk.img"), false, 0, 1), 0);
	cr_assert_eq(vhu_ring_create(&ro, &f->ring), 0);
	blk_dev_opts(&f->t, f->config, &o);
	ops = blk_dev_ops;
	ops.close = on_close;
	o.ops = &ops;
	cr_assert_eq(vhu_dev_server_create(f->ring, &o, &f->srv), 0);
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

/* Drive the ring until the endpoint has something to read (or it hung up). */
static void
fx_run_until_readable(struct fx *f, struct fe *e)
{
	struct pollfd p = { .fd = vhu_endpoint_fd(e->ep), .events = POLLIN };
	int i;

	for (i = 0; i < ROUNDS; i++) {
		cr_assert_geq(vhu_ring_wait(f->ring, 5), 0);
		if (poll(&p, 1, 0) == 1) {
			return;
		}
	}
	cr_assert_fail("no reply from the device");
}

/* Send a request; with want != NULL, read the reply's body into it. \return body bytes. */
static size_t
fe_call(struct fx *f, struct fe *e, uint32_t req, const void *body, size_t len,
	const int *fds, unsigned int nfds, bool need_reply, void *want, size_t want_len)
{
	struct vhu_hdr h = vhu_hdr_request(req, (uint32_t)len, need_reply);
	struct vhu_fds rfds;
	int rc;

	cr_assert_eq(vhu_endpoint_send_message(e->ep, &h, body, len, fds, nfds), 0);
	if (want == NULL) {
		return 0;
	}
	fx_run_until_readable(f, e);
	vhu_fds_init(&rfds);
	rc = vhu_endpoint_recv_body(e->ep, &h, want, want_len, &rfds);
	cr_assert_eq(rc, 0, "reply to %s: %s", vhu_req_name(VHU_CHAN_FRONTEND, req),
		     vhu_strerror(rc));
	cr_assert_eq(h.request, req);
	vhu_fds_close(&rfds);
	return h.size;
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
	v = F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | F(BLK_F_FLUSH);
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

Test(device, hostile_chain_breaks_only_its_device)
{
	struct fx f;
	struct fe bad, good;
	uint32_t used;
	int maps_before = fg_map_count();
	int fds_before = t_fd_count();

	fx_init(&f);
	fe_connect(&f, &bad);
	fe_connect(&f, &good);
	fe_handshake(&f, &bad);
	fe_handshake(&f, &good);
	/* A chain whose buffer lies outside guest memory. */
	fg_desc(&bad.q, 0, 0x7fff0000ull, 512, VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&bad.q, 1, STATUS_GPA, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&bad.q, 0);
	cr_assert_eq(eventfd_write(bad.kick, 1), 0);
	run_until_closed(&f, 1);
	cr_assert_eq(f.reason, -VHU_EGUESTADDR, "closed with the fault: %s",
		     vhu_strerror(f.reason));
	cr_assert_eq(vhu_dev_server_count(f.srv), 1);

	/* The other device still serves. */
	memset(fg_ptr(&good.g, DATA_GPA, 512), 0x5a, 512);
	fe_blk(&good, BLK_T_OUT, 0, 512);
	cr_assert_eq(fe_blk_wait(&f, &good, &used), BLK_S_OK);

	fe_fini(&bad);
	fe_fini(&good);
	run_until_closed(&f, 2);
	fx_fini(&f);
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}
