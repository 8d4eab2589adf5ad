/* SPDX-License-Identifier: MIT */
/*
 * Poll mode of the device layer (vhu_dev_opts.poll) with vhu-blk's request
 * handling, driven by an in-process fake front-end (a blocking endpoint on
 * a socketpair) and fake guest (memfd RAM, fake_guest.c), pass by pass:
 * requests served while the guest, honouring the device's suppression
 * (NO_NOTIFY, or avail_event with EVENT_IDX), never kicks; the fall-back
 * to waiting and the return to spinning on a kick; a request added inside
 * the fall-back (after notifications are back on and before the re-check,
 * or after the re-check and before the ring blocks) is not lost; calls
 * only when the guest asked (EVENT_IDX and not); stop, reset and close in
 * poll mode leave the ring with nothing to spin on and nothing leaked.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "fake_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vhu/device.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "../uring/internal.h"
#include "blk/blkdev.h"
#include "blk/target.h"

TestSuite(device_poll, .init = t_setup, .fini = t_teardown, .timeout = 60);

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)
#define MiB		(1024ull * 1024ull)
#define QNUM		16u
#define HDR_GPA		0x10000ull
#define DATA_GPA	0x20000ull
#define STATUS_GPA	0x30000ull
#define DISK_BYTES	(1 * MiB)
#define DEADLINE_MS	10000	/* a failure guard, never waited out by a passing test */
#define NEVER_IDLE_US	60000000u

static const struct fg_layout layout[] = { { .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 } };

struct fx {
	struct vhu_ring *ring;
	struct vhu_dev_server *srv;
	struct blk_target t;
	uint8_t config[BLK_CONFIG_SIZE];
	struct vhu_endpoint *ep;
	struct fake_guest g;
	struct fg_vq q;
	int kick;
	int call;
	uint64_t features;
	unsigned int closed;
};

static struct fx *g_fx;
static struct vhu_dev_ops ops;

static void
on_close(struct vhu_dev *dev, int reason, void *ctx)
{
	blk_dev_ops.close(dev, reason, ctx);
	g_fx->closed++;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One pass of the loop (never blocks while the ring spins). */
static void
pass(struct fx *f, int timeout_ms)
{
	cr_assert_geq(vhu_ring_wait(f->ring, timeout_ms), 0);
}

static void
run_until_readable(struct fx *f)
{
	struct pollfd p = { .fd = vhu_endpoint_fd(f->ep), .events = POLLIN };
	uint64_t end = now_ms() + DEADLINE_MS;

	while (poll(&p, 1, 0) != 1) {
		cr_assert_lt(now_ms(), end, "no reply from the device");
		pass(f, 5);
	}
}

static uint64_t
fe_call(struct fx *f, uint32_t req, const void *body, size_t len, const int *fds,
	unsigned int nfds, bool ack)
{
	struct vhu_hdr h = vhu_hdr_request(req, (uint32_t)len, ack);
	struct vhu_fds rfds;
	uint64_t v = 99;

	cr_assert_eq(vhu_endpoint_send_message(f->ep, &h, body, len, fds, nfds), 0);
	if (!ack && vhu_req_info(VHU_CHAN_FRONTEND, req)->reply != VHU_REPLY_ALWAYS) {
		return 0;
	}
	run_until_readable(f);
	vhu_fds_init(&rfds);
	cr_assert_eq(vhu_endpoint_recv_body(f->ep, &h, &v, sizeof(v), &rfds), 0);
	vhu_fds_close(&rfds);
	return v;
}

static void
fe_vring(struct fx *f, uint32_t req, uint32_t num)
{
	struct vhu_vring_state st = { .index = 0, .num = num };

	cr_assert_eq(fe_call(f, req, &st, sizeof(st), NULL, 0, true), 0);
}

static void
fe_kick_fd(struct fx *f)
{
	uint64_t v = 0;

	cr_assert_eq(fe_call(f, VHU_REQ_SET_VRING_KICK, &v, 8, &f->kick, 1, true), 0);
}

/* A vhu-blk server in poll mode and one front-end through the handshake, queue 0 running. */
static void
fx_init(struct fx *f, uint64_t features, uint32_t idle_us)
{
	struct vhu_ring_opts ro = { .max_conns = 4, .max_ops = 64, .busy_poll = true };
	static const struct vhu_rules rules = {
		.channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY,
	};
	struct vhu_single_region sr;
	struct vhu_vring_addr a;
	struct vhu_dev_opts o;
	struct vhu_dev *dev;
	uint64_t v;
	int sv[2], fd;

	memset(f, 0, sizeof(*f));
	g_fx = f;
	f->features = features;
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
	o.poll = true;
	o.poll_idle_us = idle_us;
	cr_assert_eq(vhu_dev_server_create(f->ring, &o, &f->srv), 0);

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(vhu_endpoint_from_fd(sv[0], &rules, &f->ep), 0);
	cr_assert_eq(vhu_dev_server_attach(f->srv, sv[1], &dev), 0);
	cr_assert_not_null(dev);
	cr_assert_eq(fg_init(&f->g, layout, 1), 0);
	cr_assert_eq(fg_vq_init(&f->q, &f->g, QNUM, 0x0, 0x1000, 0x2000), 0);
	f->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	f->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	v = fe_call(f, VHU_REQ_GET_FEATURES, NULL, 0, NULL, 0, false);
	cr_assert_eq(v & features, features, "vhu-blk offers the ring features");
	v = fe_call(f, VHU_REQ_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0, false);
	cr_assert(v & PF(REPLY_ACK));
	fe_call(f, VHU_REQ_SET_PROTOCOL_FEATURES, &v, 8, NULL, 0, false);
	cr_assert_eq(fe_call(f, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0, true), 0);
	v = F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | features;
	cr_assert_eq(fe_call(f, VHU_REQ_SET_FEATURES, &v, 8, NULL, 0, true), 0);
	memset(&sr, 0, sizeof(sr));
	sr.region = fg_region_desc(&f->g, 0);
	fd = dup(f->g.r[0].fd);
	cr_assert_eq(fe_call(f, VHU_REQ_ADD_MEM_REG, &sr, sizeof(sr), &fd, 1, true), 0);
	close(fd);
	fe_vring(f, VHU_REQ_SET_VRING_NUM, QNUM);
	fe_vring(f, VHU_REQ_SET_VRING_BASE, 0);
	a = fg_vq_addr(&f->q);
	cr_assert_eq(fe_call(f, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, true), 0);
	v = 0;
	cr_assert_eq(fe_call(f, VHU_REQ_SET_VRING_CALL, &v, 8, &f->call, 1, true), 0);
	fe_kick_fd(f);
	fe_vring(f, VHU_REQ_SET_VRING_ENABLE, 1);
}

static void
fx_fini(struct fx *f)
{
	vhu_endpoint_destroy(f->ep);
	vhu_dev_server_destroy(f->srv);
	vhu_ring_destroy(f->ring);
	blk_target_close(&f->t);
	fg_fini(&f->g);
	close(f->kick);
	close(f->call);
}

static struct vhu_ring_stats
stats(struct fx *f)
{
	struct vhu_ring_stats st;

	vhu_ring_get_stats(f->ring, &st);
	return st;
}

/*
 * The guest adds a virtio-blk request (header, len bytes at DATA_GPA,
 * status) and decides, as a driver does after publishing, whether the
 * device asked for a kick. \return that decision (the caller kicks or not).
 */
static bool
guest_add(struct fx *f, uint32_t type, uint64_t sector, uint32_t len)
{
	struct {
		uint32_t type;
		uint32_t ioprio;
		uint64_t sector;
	} hdr = { type, 0, sector };
	uint16_t old = f->q.avail_idx, n = 0;

	memcpy(fg_ptr(&f->g, HDR_GPA, sizeof(hdr)), &hdr, sizeof(hdr));
	*(uint8_t *)fg_ptr(&f->g, STATUS_GPA, 1) = 0xff;
	fg_desc(&f->q, n, HDR_GPA, sizeof(hdr), VHU_VIRTQ_DESC_F_NEXT, 1);
	n++;
	if (len > 0) {
		fg_desc(&f->q, n, DATA_GPA, len,
			VHU_VIRTQ_DESC_F_NEXT | (type == BLK_T_IN ? VHU_VIRTQ_DESC_F_WRITE : 0), 2);
		n++;
	}
	fg_desc(&f->q, n, STATUS_GPA, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f->q, 0);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (f->features & F(VHU_F_RING_EVENT_IDX)) {
		return vhu_virtq_need_event(__atomic_load_n(vhu_virtq_avail_event(f->q.used, QNUM),
							    __ATOMIC_RELAXED),
					    f->q.avail_idx, old);
	}
	return !(__atomic_load_n(&f->q.used->flags, __ATOMIC_RELAXED) &
		 VHU_VIRTQ_USED_F_NO_NOTIFY);
}

/* Run passes (each waiting at most timeout_ms) until the request is used: \return its status. */
static uint8_t
served(struct fx *f, int timeout_ms)
{
	uint64_t end = now_ms() + DEADLINE_MS;
	uint32_t id, len;

	while (!fg_used(&f->q, &id, &len)) {
		cr_assert_lt(now_ms(), end, "the request was never served");
		pass(f, timeout_ms);
	}
	return *(uint8_t *)fg_ptr(&f->g, STATUS_GPA, 1);
}

/* Drive passes that never block until the ring has fallen back to waiting. */
static void
until_asleep(struct fx *f)
{
	uint64_t sleeps = stats(f).poll_sleeps, end = now_ms() + DEADLINE_MS;

	while (stats(f).poll_sleeps == sleeps) {
		cr_assert_lt(now_ms(), end, "poll mode never fell back to waiting");
		cr_assert(f->ring->poll.spinning);
		pass(f, 0);
	}
	cr_assert_not(f->ring->poll.spinning);
}

static uint64_t
kicks_read(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) < 0) {
		cr_assert_eq(errno, EAGAIN);
		return 0;
	}
	return v;
}

static void
no_kicks_while_spinning(uint64_t features)
{
	struct fx f;
	unsigned int i;

	fx_init(&f, features, NEVER_IDLE_US);
	cr_assert(f.ring->poll.spinning, "a queue that starts is spun on");
	for (i = 0; i < 64; i++) {
		memset(fg_ptr(&f.g, DATA_GPA, 4096), (int)i, 4096);
		cr_assert_not(guest_add(&f, BLK_T_OUT, i * 8u, 4096), "kick asked at write %u", i);
		cr_assert_eq(served(&f, 0), BLK_S_OK);
		memset(fg_ptr(&f.g, DATA_GPA, 4096), 0xee, 4096);
		cr_assert_not(guest_add(&f, BLK_T_IN, i * 8u, 4096), "kick asked at read %u", i);
		cr_assert_eq(served(&f, 0), BLK_S_OK);
		cr_assert_eq(*(uint8_t *)fg_ptr(&f.g, DATA_GPA + 4095, 1), i, "read back");
	}
	cr_assert_eq(kicks_read(f.kick), 0);
	cr_assert_eq(stats(&f).poll_sleeps, 0);
	fx_fini(&f);
}

Test(device_poll, served_without_a_kick)
{
	no_kicks_while_spinning(0);
}

Test(device_poll, served_without_a_kick_event_idx)
{
	no_kicks_while_spinning(F(VHU_F_RING_EVENT_IDX));
}

static void
falls_back_and_spins_again(uint64_t features)
{
	struct fx f;
	uint64_t wakes;

	fx_init(&f, features, 1);
	cr_assert_not(guest_add(&f, BLK_T_OUT, 0, 512));
	cr_assert_eq(served(&f, 0), BLK_S_OK);
	until_asleep(&f);
	/* Waiting: the next request is kicked, and the kick spins the ring again. */
	wakes = stats(&f).poll_wakes;
	cr_assert(guest_add(&f, BLK_T_IN, 0, 512), "asleep: the device wants kicks");
	cr_assert_eq(eventfd_write(f.kick, 1), 0);
	cr_assert_eq(served(&f, DEADLINE_MS), BLK_S_OK);
	cr_assert_gt(stats(&f).poll_wakes, wakes);
	cr_assert(f.ring->poll.spinning);
	cr_assert_not(guest_add(&f, BLK_T_IN, 0, 512), "spinning again: no kicks");
	cr_assert_eq(served(&f, 0), BLK_S_OK);
	fx_fini(&f);
}

Test(device_poll, falls_back_to_waiting_and_spins_on_a_kick)
{
	falls_back_and_spins_again(0);
}

Test(device_poll, falls_back_to_waiting_and_spins_on_a_kick_event_idx)
{
	falls_back_and_spins_again(F(VHU_F_RING_EVENT_IDX));
}

/* The race window: what the guest does at one step of the fall-back. */
static struct {
	int step;		/* the step to act at */
	bool done;
	bool asked;		/* the device wanted a kick for the request */
} race;

static void
race_hook(struct vhu_ring *r, int step, void *ctx)
{
	struct fx *f = ctx;

	if (race.done || step != race.step) {
		return;
	}
	race.done = true;
	race.asked = guest_add(f, BLK_T_IN, 0, 512);
	/* A guest that read the flags before they changed does not kick. */
	if (step == VHU__POLL_STEP_SLEEP) {
		cr_assert(race.asked, "notifications are on before the ring sleeps");
		cr_assert_eq(eventfd_write(f->kick, 1), 0);
	}
}

static void
request_in_the_window(uint64_t features, int step)
{
	struct fx f;

	fx_init(&f, features, 1);
	memset(&race, 0, sizeof(race));
	race.step = step;
	f.ring->poll.hook = race_hook;
	f.ring->poll.hook_ctx = &f;
	while (!race.done) {
		cr_assert(f.ring->poll.spinning);
		pass(&f, 0);
	}
	/*
	 * Published before the re-check: found by it, served without a kick,
	 * and the ring spins on. After it: kicked, and the blocking wait returns.
	 */
	cr_assert_eq(served(&f, step == VHU__POLL_STEP_SLEEP ? DEADLINE_MS : 0), BLK_S_OK);
	if (step == VHU__POLL_STEP_ENABLED) {
		cr_assert_eq(stats(&f).poll_sleeps, 0, "the re-check found it: no sleep");
		cr_assert_eq(kicks_read(f.kick), 0);
	} else {
		cr_assert_eq(stats(&f).poll_sleeps, 1);
	}
	cr_assert(f.ring->poll.spinning);
	fx_fini(&f);
}

Test(device_poll, request_before_the_recheck_is_found_without_a_kick)
{
	request_in_the_window(0, VHU__POLL_STEP_ENABLED);
	request_in_the_window(F(VHU_F_RING_EVENT_IDX), VHU__POLL_STEP_ENABLED);
}

Test(device_poll, request_after_the_recheck_is_kicked_and_served)
{
	request_in_the_window(0, VHU__POLL_STEP_SLEEP);
	request_in_the_window(F(VHU_F_RING_EVENT_IDX), VHU__POLL_STEP_SLEEP);
}

/* The guest asks for calls (or not); the device writes the call eventfd only when asked. */
static void
calls_only_when_asked(uint64_t features)
{
	bool ev = features & F(VHU_F_RING_EVENT_IDX);
	struct fx f;
	unsigned int i;

	fx_init(&f, features, NEVER_IDLE_US);
	/* The first completion after a start is called whatever the guest asked (vhost does so). */
	guest_add(&f, BLK_T_IN, 0, 512);
	cr_assert_eq(served(&f, 0), BLK_S_OK);
	{
		uint64_t end = now_ms() + DEADLINE_MS;

		while (kicks_read(f.call) == 0) {
			cr_assert_lt(now_ms(), end, "the first completion was not called");
			pass(&f, 0);
		}
	}
	for (i = 0; i < 8; i++) {
		/* Not asked: NO_INTERRUPT, or a used_event far behind. */
		if (ev) {
			*vhu_virtq_used_event(f.q.avail, QNUM) = (uint16_t)(f.q.last_used - 0x8000u);
		} else {
			f.q.avail->flags = VHU_VIRTQ_AVAIL_F_NO_INTERRUPT;
		}
		guest_add(&f, BLK_T_IN, 0, 512);
		cr_assert_eq(served(&f, 0), BLK_S_OK);
	}
	pass(&f, 0);
	cr_assert_eq(kicks_read(f.call), 0, "no call asked for");
	for (i = 0; i < 8; i++) {
		/* Asked for the next completion. */
		if (ev) {
			*vhu_virtq_used_event(f.q.avail, QNUM) = f.q.last_used;
		} else {
			f.q.avail->flags = 0;
		}
		guest_add(&f, BLK_T_IN, 0, 512);
		cr_assert_eq(served(&f, 0), BLK_S_OK);
	}
	/* One call per completion asked for (the writes may still be on the ring). */
	{
		uint64_t n = 0, end = now_ms() + DEADLINE_MS;

		while ((n += kicks_read(f.call)) < 8) {
			cr_assert_lt(now_ms(), end, "%llu calls of 8", (unsigned long long)n);
			pass(&f, 0);
		}
		pass(&f, 0);
		cr_assert_eq(n + kicks_read(f.call), 8);
	}
	fx_fini(&f);
}

Test(device_poll, calls_only_when_asked)
{
	calls_only_when_asked(0);
}

Test(device_poll, calls_only_when_asked_event_idx)
{
	calls_only_when_asked(F(VHU_F_RING_EVENT_IDX));
}

Test(device_poll, stop_reset_and_close_release_everything)
{
	struct vhu_vring_state st = { .index = 0 };
	struct fx f;
	int maps = fg_map_count();

	fx_init(&f, F(VHU_F_RING_EVENT_IDX), NEVER_IDLE_US);
	guest_add(&f, BLK_T_IN, 0, 512);
	cr_assert_eq(served(&f, 0), BLK_S_OK);
	cr_assert_eq(f.ring->poll.n, 1);
	/* GET_VRING_BASE: the stopped queue is no longer spun on; the ring blocks again. */
	{
		struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_VRING_BASE, sizeof(st), false);
		struct vhu_fds rfds;

		cr_assert_eq(vhu_endpoint_send_message(f.ep, &h, &st, sizeof(st), NULL, 0), 0);
		run_until_readable(&f);
		vhu_fds_init(&rfds);
		cr_assert_eq(vhu_endpoint_recv_body(f.ep, &h, &st, sizeof(st), &rfds), 0);
		cr_assert_eq(st.num, 1);
	}
	cr_assert_eq(f.ring->poll.n, 0);
	cr_assert_not(f.ring->poll.spinning);
	/* Started again (a new kick fd): spun on again. */
	fe_kick_fd(&f);
	cr_assert_eq(f.ring->poll.n, 1);
	cr_assert(f.ring->poll.spinning);
	cr_assert_not(guest_add(&f, BLK_T_IN, 0, 512));
	cr_assert_eq(served(&f, 0), BLK_S_OK);
	/* RESET_DEVICE stops every queue. */
	cr_assert_eq(fe_call(&f, VHU_REQ_RESET_DEVICE, NULL, 0, NULL, 0, true), 0);
	cr_assert_eq(f.ring->poll.n, 0);
	cr_assert_not(f.ring->poll.spinning);
	/* Close: the device goes with every fd and mapping. */
	vhu_endpoint_destroy(f.ep);
	f.ep = NULL;
	{
		uint64_t end = now_ms() + DEADLINE_MS;

		while (f.closed == 0) {
			cr_assert_lt(now_ms(), end, "the device never closed");
			pass(&f, 5);
		}
	}
	cr_assert_eq(vhu_dev_server_count(f.srv), 0);
	cr_assert(vlist_empty(&f.ring->poll.queues));
	fx_fini(&f);
	cr_assert_eq(fg_map_count(), maps, "a mapping outlived the device");
}
