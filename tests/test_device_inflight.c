/* SPDX-License-Identifier: MIT */
/*
 * Inflight tracking through the device layer (INFLIGHT_SHMFD): a fake
 * front-end that behaves as QEMU's vhost-user-blk with reconnect, on a
 * fake guest that outlives the back-end. The first back-end negotiates
 * the feature, gets the region (GET_INFLIGHT_FD), takes requests and dies
 * with some of them in flight (its ring and server are torn down, the
 * front-end keeps the region's fd and the guest); the next back-end gets
 * the same fd back (SET_INFLIGHT_FD) and SET_VRING_BASE at the used index
 * (GET_VRING_BASE failed on the dead one) and must see exactly the
 * requests in flight, in the order they were taken, once. Also: a death
 * between the used index store and the flag clear, hostile regions, the
 * fds and mappings left, and vhu-blk's own request path completing writes
 * a dead back-end had taken into the backing file.
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
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/device.h>
#include <vhu/inflight.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "blk/blkdev.h"
#include "blk/target.h"

TestSuite(device_inflight, .init = t_setup, .fini = t_teardown, .timeout = 60);

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)
#define MiB		(1024ull * 1024ull)
#define QNUM		16u
#define DESC_GPA	0x0ull
#define AVAIL_GPA	0x1000ull
#define USED_GPA	0x2000ull
#define HDR_GPA		0x10000ull	/* request k's header at + 0x100 k */
#define DATA_GPA	0x20000ull	/* request k's data at + 0x1000 k */
#define STATUS_GPA	0x30000ull	/* request k's status byte at + k */
#define DISK_BYTES	(1 * MiB)
#define ROUNDS		2000
#define NREQ		5u		/* requests per test, 3 descriptors each */

static const struct fg_layout layout[] = { { .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 } };

/* The front-end side that survives the back-end: guest, queue 0, region fd. */
struct vm {
	struct fake_guest g;
	struct fg_vq q;
	int region_fd;
	struct vhu_inflight_queue *area;	/* the front-end's own mapping */
	size_t region_size;
};

/* One back-end instance: ring, server, and the connection to it. */
struct be {
	struct vhu_ring *ring;
	struct vhu_dev_server *srv;
	struct blk_target t;
	uint8_t config[BLK_CONFIG_SIZE];
	struct vhu_endpoint *ep;
	struct vhu_dev *dev;
	int kick;
	int call;
	unsigned int closed;
	int reason;
};

static struct be *g_be;

/* An application that pops and holds, completing on the test's word. */
static struct {
	struct vhu_vq_req req[QNUM];
	struct iovec iov[QNUM][8];
	unsigned int n;
} g_hold;

static void
hold_work(struct vhu_dev *dev, unsigned int q, void *ctx)
{
	while (g_hold.n < QNUM &&
	       vhu_dev_pop(dev, q, &g_hold.req[g_hold.n], g_hold.iov[g_hold.n], 8) == 1) {
		g_hold.n++;
	}
}

static void
on_close(struct vhu_dev *dev, int reason, void *ctx)
{
	blk_dev_ops.close(dev, reason, ctx);
	g_be->closed++;
	g_be->reason = reason;
}

static struct vhu_dev_ops ops;

/* A back-end: vhu-blk's device over disk.img, with hold_work instead if hold. */
static void
be_start(struct be *b, bool hold)
{
	struct vhu_ring_opts ro = { .max_conns = 4, .max_ops = 64 };
	struct vhu_dev_opts o;
	int sv[2];
	static const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
	};

	memset(b, 0, sizeof(*b));
	g_be = b;
	memset(&g_hold, 0, sizeof(g_hold));
	cr_assert_eq(blk_target_open(&b->t, t_path("disk.img"), false, 0, 1), 0);
	cr_assert_eq(vhu_ring_create(&ro, &b->ring), 0);
	blk_dev_opts(&b->t, b->config, &o);
	cr_assert(o.inflight, "vhu-blk opts in");
	ops = blk_dev_ops;
	ops.close = on_close;
	if (hold) {
		ops.queue_work = hold_work;
	}
	o.ops = &ops;
	cr_assert_eq(vhu_dev_server_create(b->ring, &o, &b->srv), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_from_fd(sv[0], &rules, &b->ep), 0);
	cr_assert_eq(vhu_dev_server_attach(b->srv, sv[1], &b->dev), 0);
	cr_assert_not_null(b->dev);
	b->kick = eventfd(0, EFD_CLOEXEC);
	b->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/*
 * The back-end dies: what it held is gone without a completion (dropped,
 * which leaves it marked in flight), its server and ring go, the
 * front-end's end of the socket closes.
 */
static void
be_kill(struct be *b)
{
	int i;

	if (b->closed == 0 && !vhu_dev_closing(b->dev)) {
		for (unsigned int k = 0; k < g_hold.n; k++) {
			if (g_hold.req[k].epoch != NULL) {
				vhu_dev_drop(b->dev, 0, &g_hold.req[k]);
			}
		}
	}
	vhu_endpoint_destroy(b->ep);
	for (i = 0; i < ROUNDS && b->closed == 0; i++) {
		cr_assert_geq(vhu_ring_wait(b->ring, 5), 0);
	}
	cr_assert_eq(b->closed, 1);
	vhu_dev_server_destroy(b->srv);
	vhu_ring_destroy(b->ring);
	blk_target_close(&b->t);
	close(b->kick);
	close(b->call);
}

static void
be_run_until_readable(struct be *b)
{
	int fd = vhu_endpoint_fd(b->ep);

	th_run_until(b->ring, th_done_readable, &fd, "the device's reply");
}

/* A request and its reply body; *fd gets the reply's fd if fd != NULL. */
static size_t
call(struct be *b, uint32_t req, const void *body, size_t len, const int *fds,
     unsigned int nfds, bool need_reply, void *want, size_t want_len, int *fd)
{
	return th_call(b->ring, b->ep, req, body, len, fds, nfds, need_reply, want, want_len, fd);
}

static uint64_t
get_u64(struct be *b, uint32_t req)
{
	uint64_t v = 0;

	cr_assert_eq(call(b, req, NULL, 0, NULL, 0, false, &v, sizeof(v), NULL), 8);
	return v;
}

static uint64_t
ack(struct be *b, uint32_t req, const void *body, size_t len, const int *fds, unsigned int nfds)
{
	uint64_t v = 99;

	cr_assert_eq(call(b, req, body, len, fds, nfds, true, &v, sizeof(v), NULL), 8);
	return v;
}

static void
vm_init(struct vm *vm)
{
	int fd;

	memset(vm, 0, sizeof(*vm));
	vm->region_fd = -1;
	cr_assert_eq(fg_init(&vm->g, layout, 1), 0);
	cr_assert_eq(fg_vq_init(&vm->q, &vm->g, QNUM, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
	fd = open(t_path("disk.img"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
}

static void
vm_fini(struct vm *vm)
{
	if (vm->area != NULL) {
		munmap(vm->area, vm->region_size);
	}
	if (vm->region_fd >= 0) {
		close(vm->region_fd);
	}
	fg_fini(&vm->g);
}

/* QEMU's handshake; the region comes from GET_INFLIGHT_FD the first time only. */
static void
handshake_to(struct be *b, struct vm *vm, uint16_t base, bool kick)
{
	struct vhu_inflight in = { 0, 0, 1, QNUM, 0 }, got;
	struct vhu_single_region sr;
	struct vhu_vring_state st;
	struct vhu_vring_addr a;
	uint64_t pf, v;
	int fd;

	(void)get_u64(b, VHU_REQ_GET_FEATURES);
	pf = get_u64(b, VHU_REQ_GET_PROTOCOL_FEATURES);
	cr_assert(pf & PF(INFLIGHT_SHMFD), "offered on opt-in");
	cr_assert_eq(ack(b, VHU_REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0), 0);
	cr_assert_eq(ack(b, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0), 0);
	if (vm->region_fd < 0) {
		cr_assert_eq(call(b, VHU_REQ_GET_INFLIGHT_FD, &in, sizeof(in), NULL, 0, false, &got,
				  sizeof(got), &vm->region_fd), sizeof(got));
		cr_assert_eq(got.mmap_size, vhu_inflight_region_size(1, QNUM));
		cr_assert_eq(got.mmap_offset, 0);
		cr_assert_eq(got.num_queues, 1);
		cr_assert_eq(got.queue_size, QNUM);
		cr_assert_neq(fcntl(vm->region_fd, F_GET_SEALS) & F_SEAL_SHRINK, 0, "sealed");
		vm->region_size = got.mmap_size;
		vm->area = mmap(NULL, vm->region_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				vm->region_fd, 0);
		cr_assert_neq(vm->area, MAP_FAILED);
		cr_assert_eq(vm->area->desc_num, QNUM);
	}
	in.mmap_size = vm->region_size;
	cr_assert_eq(ack(b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &vm->region_fd, 1), 0);
	v = F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | F(BLK_F_FLUSH);
	cr_assert_eq(ack(b, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0), 0);
	memset(&sr, 0, sizeof(sr));
	sr.region = fg_region_desc(&vm->g, 0);
	fd = dup(vm->g.r[0].fd);
	cr_assert_eq(ack(b, VHU_REQ_ADD_MEM_REG, &sr, sizeof(sr), &fd, 1), 0);
	close(fd);
	st.index = 0;
	st.num = QNUM;
	cr_assert_eq(ack(b, VHU_REQ_SET_VRING_NUM, &st, sizeof(st), NULL, 0), 0);
	st.num = base;
	cr_assert_eq(ack(b, VHU_REQ_SET_VRING_BASE, &st, sizeof(st), NULL, 0), 0);
	a = fg_vq_addr(&vm->q);
	cr_assert_eq(ack(b, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0);
	v = 0;
	cr_assert_eq(ack(b, VHU_REQ_SET_VRING_CALL, &v, 8, &b->call, 1), 0);
	st.num = 1;
	cr_assert_eq(ack(b, VHU_REQ_SET_VRING_ENABLE, &st, sizeof(st), NULL, 0), 0);
	if (kick) {
		cr_assert_eq(ack(b, VHU_REQ_SET_VRING_KICK, &v, 8, &b->kick, 1), 0);
	}
}

static void
handshake(struct be *b, struct vm *vm, uint16_t base)
{
	handshake_to(b, vm, base, true);
}

/* Request k: header, 4 KiB of data, status; heads 3k, 3k + 1, 3k + 2. */
static uint16_t
submit(struct be *b, struct vm *vm, unsigned int k, uint32_t type, uint64_t sector)
{
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} hdr = { type, 0, sector };
	uint16_t h = (uint16_t)(3 * k);
	bool in = type == BLK_T_IN, flush = type == BLK_T_FLUSH;

	memcpy(fg_ptr(&vm->g, HDR_GPA + 0x100 * k, sizeof(hdr)), &hdr, sizeof(hdr));
	*(uint8_t *)fg_ptr(&vm->g, STATUS_GPA + k, 1) = 0xff;
	/* A flush has no data: header, then status. */
	fg_desc(&vm->q, h, HDR_GPA + 0x100 * k, sizeof(hdr), VHU_VIRTQ_DESC_F_NEXT,
		(uint16_t)(h + (flush ? 2 : 1)));
	fg_desc(&vm->q, h + 1u, DATA_GPA + 0x1000 * k, 4096,
		VHU_VIRTQ_DESC_F_NEXT | (in ? VHU_VIRTQ_DESC_F_WRITE : 0), (uint16_t)(h + 2));
	fg_desc(&vm->q, h + 2u, STATUS_GPA + k, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&vm->q, h);
	if (b != NULL) {
		cr_assert_eq(eventfd_write(b->kick, 1), 0);
	}
	return h;
}

static void
run_until_held(struct be *b, unsigned int n)
{
	int i;

	for (i = 0; i < ROUNDS && g_hold.n < n; i++) {
		cr_assert_geq(vhu_ring_wait(b->ring, 5), 0);
	}
	cr_assert_eq(g_hold.n, n, "held %u, expected %u", g_hold.n, n);
}

/* The application completes held request i (status OK). */
static void
complete(struct be *b, unsigned int i)
{
	struct vhu_vq_req *r = &g_hold.req[i];

	*(uint8_t *)r->iov[r->nread + r->nwrite - 1].iov_base = BLK_S_OK;
	cr_assert_eq(vhu_dev_push(b->dev, 0, r, 1), 0);
}

static void
run_a_while(struct be *b)
{
	for (int i = 0; i < 20; i++) {
		cr_assert_geq(vhu_ring_wait(b->ring, 1), 0);
	}
}

/*
 * Lines of /proc/self/maps backed by a file (as test_device.c counts them),
 * or, with name, by that memfd only.
 */
static int
maps_of(const char *name)
{
	FILE *m = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	cr_assert_not_null(m);
	while (fgets(line, sizeof(line), m) != NULL) {
		char path[256] = "";

		if (sscanf(line, "%*s %*s %*s %*s %*s %255s", path) == 1 && path[0] != '[' &&
		    (name == NULL || strstr(path, name) != NULL)) {
			n++;
		}
	}
	fclose(m);
	return n;
}

static void
used_expect(struct vm *vm, const uint16_t *heads, unsigned int n)
{
	uint32_t id, len;

	for (unsigned int i = 0; i < n; i++) {
		cr_assert(fg_used(&vm->q, &id, &len), "used element %u missing", i);
		cr_assert_eq(id, heads[i], "used element %u: head %u, expected %u", i, id, heads[i]);
	}
	cr_assert_not(fg_used(&vm->q, &id, &len), "a request was used twice");
}

/* The next n used elements are heads[0, n) in any order, each once; then, if last, none. */
static void
used_expect_any(struct vm *vm, const uint16_t *heads, unsigned int n, bool last)
{
	bool seen[QNUM] = { false };
	uint32_t id, len;

	for (unsigned int i = 0; i < n; i++) {
		bool known = false;

		cr_assert(fg_used(&vm->q, &id, &len), "used element %u missing", i);
		for (unsigned int k = 0; k < n; k++) {
			known |= id == heads[k];
		}
		cr_assert(known && id < QNUM && !seen[id], "used element %u: head %u", i, id);
		seen[id] = true;
	}
	if (last) {
		cr_assert_not(fg_used(&vm->q, &id, &len), "a request was used twice");
	}
}

static void
area_clear(const struct vm *vm)
{
	for (unsigned int i = 0; i < QNUM; i++) {
		cr_assert_eq(vm->area->desc[i].inflight, 0, "desc %u still marked", i);
	}
	cr_assert_eq(vm->area->used_idx, vm->q.used->idx);
}

Test(device_inflight, held_requests_resubmitted_in_order_once_after_a_restart)
{
	int fds_before = t_fd_count(), maps_before = fg_map_count();
	uint16_t h[NREQ], done_first[] = { 0 };
	struct be b;
	struct vm vm;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	for (unsigned int k = 0; k < 4; k++) {
		h[k] = submit(&b, &vm, k, k == 3 ? BLK_T_FLUSH : BLK_T_OUT, k * 8);
	}
	run_until_held(&b, 4);
	for (unsigned int k = 0; k < 4; k++) {
		cr_assert_eq(g_hold.req[k].head, h[k]);
		cr_assert_eq(vm.area->desc[h[k]].inflight, 1, "popped is marked");
	}
	/* The second completes; the others are in flight when the back-end dies. */
	complete(&b, 1);
	done_first[0] = h[1];
	cr_assert_eq(vm.area->desc[h[1]].inflight, 0);
	be_kill(&b);
	used_expect(&vm, done_first, 1);

	/* QEMU reconnects: same region, base = the used index (1). */
	be_start(&b, true);
	handshake(&b, &vm, vm.q.used->idx);
	run_until_held(&b, 3);
	run_a_while(&b);
	cr_assert_eq(g_hold.n, 3, "exactly the requests in flight");
	cr_assert_eq(g_hold.req[0].head, h[0]);
	cr_assert_eq(g_hold.req[1].head, h[2]);
	cr_assert_eq(g_hold.req[2].head, h[3]);
	cr_assert_eq(g_hold.req[0].nread, 2, "the chain is walked again");
	cr_assert_eq(g_hold.req[2].nwrite, 1);
	for (unsigned int i = 0; i < 3; i++) {
		complete(&b, i);
	}
	{
		uint16_t want[] = { h[0], h[2], h[3] };

		used_expect(&vm, want, 3);
	}
	area_clear(&vm);
	/* New requests flow after them. */
	h[4] = submit(&b, &vm, 4, BLK_T_OUT, 64);
	run_until_held(&b, 4);
	cr_assert_eq(g_hold.req[3].head, h[4]);
	complete(&b, 3);
	used_expect(&vm, &h[4], 1);
	area_clear(&vm);
	be_kill(&b);
	vm_fini(&vm);
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}

Test(device_inflight, death_between_used_index_and_flag_clear)
{
	uint16_t h[3];
	struct be b;
	struct vm vm;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	for (unsigned int k = 0; k < 3; k++) {
		h[k] = submit(&b, &vm, k, BLK_T_OUT, k * 8);
	}
	run_until_held(&b, 3);
	complete(&b, 0);
	/*
	 * The push stored the used index and died before its last two writes:
	 * put them back as they were.
	 */
	cr_assert_eq(vm.area->last_batch_head, h[0]);
	vm.area->desc[h[0]].inflight = 1;
	vm.area->used_idx = 0;
	be_kill(&b);

	be_start(&b, true);
	handshake(&b, &vm, vm.q.used->idx);
	run_until_held(&b, 2);
	run_a_while(&b);
	cr_assert_eq(g_hold.n, 2, "the used request is not resubmitted");
	cr_assert_eq(g_hold.req[0].head, h[1]);
	cr_assert_eq(g_hold.req[1].head, h[2]);
	complete(&b, 0);
	complete(&b, 1);
	used_expect(&vm, h, 3);
	area_clear(&vm);
	be_kill(&b);
	vm_fini(&vm);
}

Test(device_inflight, vhu_blk_completes_writes_a_dead_back_end_took)
{
	uint8_t disk[4096], *data;
	uint16_t h[4], rest[3];
	struct be b;
	struct vm vm;
	uint64_t calls = 0;
	int fd, i;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	for (unsigned int k = 0; k < 4; k++) {
		data = fg_ptr(&vm.g, DATA_GPA + 0x1000 * k, 4096);
		memset(data, 0x30 + (int)k, 4096);
		h[k] = submit(&b, &vm, k, k == 3 ? BLK_T_FLUSH : BLK_T_OUT, 16 + k * 8);
	}
	run_until_held(&b, 4);
	/*
	 * The second is answered out of order (without touching the disk), the
	 * others are in flight at the death: the used index (1) is no avail
	 * position to resume from.
	 */
	complete(&b, 1);
	be_kill(&b);
	cr_assert_eq(vm.q.used->idx, 1);

	/* vhu-blk's real request path this time. */
	be_start(&b, false);
	handshake(&b, &vm, vm.q.used->idx);
	for (i = 0; i < ROUNDS && vm.q.used->idx < 4; i++) {
		cr_assert_geq(vhu_ring_wait(b.ring, 5), 0);
	}
	/*
	 * The one answered before the death, then the three resubmitted, each
	 * once: vhu-blk submits them in order but completes them as the disk
	 * does (the held tests check the order they are popped in).
	 */
	used_expect_any(&vm, &h[1], 1, false);
	rest[0] = h[0];
	rest[1] = h[2];
	rest[2] = h[3];
	used_expect_any(&vm, rest, 3, true);
	for (unsigned int k = 0; k < 4; k++) {
		cr_assert_eq(*(uint8_t *)fg_ptr(&vm.g, STATUS_GPA + k, 1), BLK_S_OK);
	}
	fd = open(t_path("disk.img"), O_RDONLY | O_CLOEXEC);
	for (unsigned int k = 0; k < 3; k++) {
		cr_assert_eq(pread(fd, disk, sizeof(disk), (off_t)(16 + k * 8) * 512), 4096);
		if (k == 1) {
			cr_assert_eq(disk[0], 0, "the completed one is not submitted again");
			continue;
		}
		cr_assert_eq(memcmp(disk, fg_ptr(&vm.g, DATA_GPA + 0x1000 * k, 4096), 4096), 0,
			     "write %u is in the file", k);
	}
	close(fd);
	for (i = 0; i < ROUNDS && eventfd_read(b.call, &calls) != 0; i++) {
		cr_assert_geq(vhu_ring_wait(b.ring, 5), 0);
	}
	cr_assert_geq(calls, 1, "the guest is called for them");
	area_clear(&vm);
	/* Then a read of what a resubmitted write wrote. */
	data = fg_ptr(&vm.g, DATA_GPA + 0x1000 * 4, 4096);
	memset(data, 0, 4096);
	h[0] = submit(&b, &vm, 4, BLK_T_IN, 16 + 2 * 8);
	for (i = 0; i < ROUNDS && vm.q.used->idx < 5; i++) {
		cr_assert_geq(vhu_ring_wait(b.ring, 5), 0);
	}
	used_expect(&vm, h, 1);
	cr_assert_eq(data[0], 0x32);
	area_clear(&vm);
	be_kill(&b);
	vm_fini(&vm);
}

/* Hostile regions ------------------------------------------------------ */

Test(device_inflight, hostile_region_closes_only_its_device_at_start)
{
	int fds_before = t_fd_count(), maps_before = fg_map_count();
	struct be b;
	struct vm vm;
	uint64_t v = 0;
	int i;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	be_kill(&b);
	vm.area->desc[5].inflight = 7;
	be_start(&b, true);
	handshake_to(&b, &vm, 0, false);
	/* The kick starts the queue: the recovery refuses the region, the device ends. */
	(void)call(&b, VHU_REQ_SET_VRING_KICK, &v, 8, &b.kick, 1, false, NULL, 0, NULL);
	for (i = 0; i < ROUNDS && b.closed == 0; i++) {
		cr_assert_geq(vhu_ring_wait(b.ring, 5), 0);
	}
	cr_assert_eq(b.closed, 1);
	cr_assert_eq(b.reason, -VHU_EINFLIGHT, "closed with %s", vhu_strerror(b.reason));
	cr_assert_eq(g_hold.n, 0, "nothing popped");
	be_kill(&b);
	vm_fini(&vm);
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}

/* A memfd of len bytes sealed against shrinking (as a front-end hands back a region). */
static int
sealed_memfd(off_t len)
{
	int fd = memfd_create("region", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, len), 0);
	cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	return fd;
}

Test(device_inflight, set_inflight_fd_refuses_bad_geometry)
{
	int fds_before = t_fd_count(), maps_before = fg_map_count();
	struct vhu_inflight in = { 0, 0, 1, QNUM, 0 };
	struct be b;
	struct vm vm;
	int small, big, unsealed, maps;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	maps = fg_map_count();
	/* Queues are started: the region cannot change under them. */
	in.mmap_size = vm.region_size;
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &vm.region_fd, 1), 1);
	{
		struct vhu_vring_state st = { 0, 0 }, got;

		cr_assert_eq(call(&b, VHU_REQ_GET_VRING_BASE, &st, sizeof(st), NULL, 0, false, &got,
				  sizeof(got), NULL), sizeof(got));
	}
	/* A file smaller than the size it claims. */
	small = sealed_memfd(64);
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &small, 1), 1);
	/* A size below what the queues need. */
	in.mmap_size = 64;
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &vm.region_fd, 1), 1);
	/* More queues than the device has; a queue size not a power of two. */
	in.mmap_size = vm.region_size;
	in.num_queues = 2;
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &vm.region_fd, 1), 1);
	in.num_queues = 1;
	in.queue_size = 12;
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &vm.region_fd, 1), 1);
	/* An offset that breaks the areas' alignment. */
	in.queue_size = QNUM;
	in.mmap_offset = 8;
	big = sealed_memfd(2 * (off_t)vm.region_size);
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &big, 1), 1);
	close(big);
	/*
	 * A region of the right size the front-end could still shrink (and so
	 * raise SIGBUS in the back-end): refused; sealed, the same file is taken.
	 */
	in.mmap_offset = 0;
	unsealed = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cr_assert_geq(unsealed, 0);
	cr_assert_eq(ftruncate(unsealed, (off_t)vm.region_size), 0);
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &unsealed, 1), 1);
	cr_assert_eq(fcntl(unsealed, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &unsealed, 1), 0);
	close(unsealed);
	/* The region again while stopped: the old mapping goes, the new one stays. */
	cr_assert_eq(ack(&b, VHU_REQ_SET_INFLIGHT_FD, &in, sizeof(in), &vm.region_fd, 1), 0);
	cr_assert_eq(fg_map_count(), maps, "one mapping");
	close(small);
	be_kill(&b);
	vm_fini(&vm);
	cr_assert_eq(t_fd_count(), fds_before, "every fd released");
	cr_assert_eq(fg_map_count(), maps_before, "every mapping released");
}

Test(device_inflight, not_offered_without_opt_in_and_reset_unmaps)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_RESET_DEVICE, 0, true);
	struct be b;
	struct vm vm;
	uint64_t v = 99;
	int maps;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	/* RESET_DEVICE drops the region (QEMU gets a new one after a reset). */
	maps = maps_of("vhu-inflight");
	cr_assert_eq(maps, 2, "the front-end's mapping and the device's");
	cr_assert_eq(vhu_endpoint_send_message(b.ep, &h, NULL, 0, NULL, 0), 0);
	be_run_until_readable(&b);
	cr_assert_eq(vhu_endpoint_recv_body(b.ep, &h, &v, sizeof(v), NULL), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(maps_of("vhu-inflight"), 1, "the device's mapping is gone");
	be_kill(&b);

	/* Without the opt-in: no bit, and the requests are refused. */
	{
		struct vhu_ring_opts ro = { .max_conns = 4, .max_ops = 64 };
		static const struct vhu_rules rules = {
			.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
		};
		struct vhu_dev_opts o;
		int sv[2];

		memset(&b, 0, sizeof(b));
		g_be = &b;
		cr_assert_eq(blk_target_open(&b.t, t_path("disk.img"), false, 0, 1), 0);
		cr_assert_eq(vhu_ring_create(&ro, &b.ring), 0);
		blk_dev_opts(&b.t, b.config, &o);
		o.inflight = false;
		ops = blk_dev_ops;
		ops.close = on_close;
		o.ops = &ops;
		cr_assert_eq(vhu_dev_server_create(b.ring, &o, &b.srv), 0);
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		cr_assert_eq(vhu_endpoint_from_fd(sv[0], &rules, &b.ep), 0);
		cr_assert_eq(vhu_dev_server_attach(b.srv, sv[1], &b.dev), 0);
		b.kick = eventfd(0, EFD_CLOEXEC);
		b.call = eventfd(0, EFD_CLOEXEC);
		cr_assert_eq(get_u64(&b, VHU_REQ_GET_PROTOCOL_FEATURES) & PF(INFLIGHT_SHMFD), 0);
		v = PF(REPLY_ACK) | PF(INFLIGHT_SHMFD);
		cr_assert_eq(ack(&b, VHU_REQ_SET_PROTOCOL_FEATURES, &v, 8, NULL, 0), 1);
		be_kill(&b);
	}
	vm_fini(&vm);
}

Test(device_inflight, set_inflight_fd_of_the_wrong_kind_closes_the_device)
{
	struct vhu_inflight in = { 0, 0, 1, QNUM, 0 };
	struct vhu_hdr h;
	struct be b;
	struct vm vm;
	int efd = eventfd(0, EFD_CLOEXEC), i;

	vm_init(&vm);
	be_start(&b, true);
	handshake(&b, &vm, 0);
	(void)call(&b, VHU_REQ_GET_VRING_BASE, &(struct vhu_vring_state){ 0, 0 }, 8, NULL, 0,
		   false, &(struct vhu_vring_state){ 0, 0 }, 8, NULL);
	/* An eventfd is no memory to map: the engine's fd-kind check refuses it. */
	in.mmap_size = vm.region_size;
	h = vhu_hdr_request(VHU_REQ_SET_INFLIGHT_FD, sizeof(in), true);
	cr_assert_eq(vhu_endpoint_send_message(b.ep, &h, &in, sizeof(in), &efd, 1), 0);
	for (i = 0; i < ROUNDS && b.closed == 0; i++) {
		cr_assert_geq(vhu_ring_wait(b.ring, 5), 0);
	}
	cr_assert_eq(b.closed, 1);
	cr_assert_eq(b.reason, -VHU_EFDKIND, "closed with %s", vhu_strerror(b.reason));
	close(efd);
	be_kill(&b);
	vm_fini(&vm);
}

/*
 * The back-end's own fd shortage at GET_INFLIGHT_FD is not the front-end's
 * fault: the reply says "no region" (mmap_size 0, no fd; QEMU then goes on
 * without tracking) and the connection stays.
 */
Test(device_inflight, get_inflight_fd_without_fds_answers_no_region)
{
	struct vhu_inflight in = { 0, 0, 1, QNUM, 0 }, got;
	struct rlimit old, low;
	struct be b;
	struct vm vm;
	struct vhu_fds rfds = { .n = 0 };
	struct vhu_hdr h;
	int dups[64], n = 0, sent, rc = -1;
	bool full;
	uint64_t pf;

	vm_init(&vm);
	be_start(&b, true);
	(void)get_u64(&b, VHU_REQ_GET_FEATURES);
	pf = get_u64(&b, VHU_REQ_GET_PROTOCOL_FEATURES);
	cr_assert_eq(ack(&b, VHU_REQ_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0), 0);
	/* Every fd number below a lowered limit taken: memfd_create gets EMFILE. */
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)t_fd_count() + 32;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < 64) {
		int d = dup(0);

		if (d < 0) {
			break;
		}
		dups[n++] = d;
	}
	h = vhu_hdr_request(VHU_REQ_GET_INFLIGHT_FD, sizeof(in), false);
	sent = vhu_endpoint_send_message(b.ep, &h, &in, sizeof(in), NULL, 0);
	if (sent == 0) {
		be_run_until_readable(&b);
		vhu_fds_init(&rfds);
		rc = vhu_endpoint_recv_body(b.ep, &h, &got, sizeof(got), &rfds);
	}
	full = n == 64;
	while (n > 0) {
		close(dups[--n]);
	}
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert_not(full, "the lowered limit was never reached");
	cr_assert_eq(sent, 0);
	cr_assert_eq(rc, 0, "reply: %s", vhu_strerror(rc));
	cr_assert_eq(h.request, VHU_REQ_GET_INFLIGHT_FD);
	cr_assert_eq(got.mmap_size, 0, "no region");
	cr_assert_eq(rfds.n, 0, "no fd with it");
	cr_assert_eq(b.closed, 0, "the connection stays");
	(void)get_u64(&b, VHU_REQ_GET_FEATURES);
	be_kill(&b);
	vm_fini(&vm);
}
