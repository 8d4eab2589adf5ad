/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues, device side, against a fake guest whose driver side
 * writes descriptor chains the way a guest does: round trips, the queue
 * state the SET_VRING_* messages set, notifications, memory-table changes
 * under in-flight requests, and every hostile class refused by name.
 * Fds are counted by the suite fixture, mappings by each test.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "fake_guest.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/guest_mem.h>
#include <vhu/vq.h>

TestSuite(virtq, .init = t_setup, .fini = t_teardown);

#define KiB	1024ull
#define MiB	(1024ull * 1024ull)
#define F(bit)	(1ull << (bit))

/* Region 0 holds the rings; 1 and 3 are adjacent; 2 is above 4 GiB; gaps elsewhere. */
static const struct fg_layout layout[] = {
	{ .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 },
	{ .gpa = 2 * MiB, .size = 1 * MiB, .mmap_offset = 0x1800 },
	{ .gpa = 0x100000000ull, .size = 256 * KiB, .mmap_offset = 64 * KiB },
	{ .gpa = 3 * MiB, .size = 64 * KiB, .mmap_offset = 0x10 },
};

#define DESC_GPA	0x0ull
#define AVAIL_GPA	0x80000ull
#define USED_GPA	0xa0000ull
#define BUF_GPA		(2 * MiB)		/* data buffers: region 1 */
#define HIGH_GPA	0x100000000ull		/* region 2 */
#define GAP_GPA		(1 * MiB + 4096)	/* inside no region */

#define BASE_FEATURES	(F(VHU_F_VERSION_1) | F(VHU_F_RING_INDIRECT_DESC))

struct fx {
	struct fake_guest g;
	struct vhu_mem *m;
	struct vhu_vq *vq;
	struct fg_vq q;
	int maps;
	struct iovec iov[64];
	struct vhu_vq_req req;
};

static void
fx_mem(struct fx *f)
{
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS];

	cr_assert_eq(fg_mem_table(&f->g, &t, fds), 0);
	cr_assert_eq(vhu_mem_set_table(f->m, &t, fds, f->g.n), 0);
}

/* Everything up to, not including, SET_VRING_KICK. */
static void
fx_config(struct fx *f, unsigned int num, uint64_t features)
{
	struct vhu_vring_addr a;

	memset(f, 0, sizeof(*f));
	f->maps = fg_map_count();
	cr_assert_eq(fg_init(&f->g, layout, 4), 0);
	cr_assert_eq(vhu_mem_create(&f->m), 0);
	fx_mem(f);
	cr_assert_eq(fg_vq_init(&f->q, &f->g, num, DESC_GPA, AVAIL_GPA, USED_GPA), 0);
	cr_assert_eq(vhu_vq_create(f->m, &f->vq), 0);
	vhu_vq_set_features(f->vq, features);
	cr_assert_eq(vhu_vq_set_num(f->vq, num), 0);
	a = fg_vq_addr(&f->q);
	cr_assert_eq(vhu_vq_set_addr(f->vq, &a), 0);
	cr_assert_eq(vhu_vq_set_base(f->vq, 0), 0);
}

static void
fx_start(struct fx *f, unsigned int num, uint64_t features)
{
	fx_config(f, num, features);
	cr_assert_eq(vhu_vq_start(f->vq), 0);
	cr_assert(vhu_vq_ready(f->vq));
}

static void
fx_fini(struct fx *f)
{
	cr_assert_eq(vhu_vq_inflight(f->vq), 0, "a test left requests in flight");
	vhu_vq_destroy(f->vq);
	vhu_mem_destroy(f->m);
	fg_fini(&f->g);
	cr_assert_eq(fg_map_count(), f->maps, "mappings left behind");
}

static int
fx_pop(struct fx *f)
{
	return vhu_vq_pop(f->vq, &f->req, f->iov, 64);
}

/* Fill guest bytes at gpa with a pattern the device checks. */
static void
guest_fill(struct fx *f, uint64_t gpa, size_t len, uint8_t seed)
{
	uint8_t *p = fg_ptr(&f->g, gpa, len);

	cr_assert_not_null(p);
	for (size_t i = 0; i < len; i++) {
		p[i] = (uint8_t)(seed + i);
	}
}

static void
iov_check_pattern(const struct iovec *v, uint8_t seed)
{
	const uint8_t *p = v->iov_base;

	for (size_t i = 0; i < v->iov_len; i++) {
		cr_assert_eq(p[i], (uint8_t)(seed + i), "byte %zu", i);
	}
}

Test(virtq, round_trip)
{
	struct fx f;
	uint32_t id, len;
	uint8_t *in;

	fx_start(&f, 256, BASE_FEATURES);
	/* A virtio-blk-like chain: header (region 1), data (region 2), status (region 3). */
	guest_fill(&f, BUF_GPA, 16, 1);
	guest_fill(&f, HIGH_GPA + 4096, 4096, 2);
	fg_desc(&f.q, 5, BUF_GPA, 16, VHU_VIRTQ_DESC_F_NEXT, 9);
	fg_desc(&f.q, 9, HIGH_GPA + 4096, 4096, VHU_VIRTQ_DESC_F_NEXT, 200);
	fg_desc(&f.q, 200, 3 * MiB + 8, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f.q, 5);

	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(f.req.head, 5);
	cr_assert_eq(f.req.iov, f.iov);
	cr_assert_eq(f.req.nread, 2);
	cr_assert_eq(f.req.nwrite, 1);
	cr_assert_eq(f.req.read_len, 16 + 4096);
	cr_assert_eq(f.req.write_len, 1);
	iov_check_pattern(&f.iov[0], 1);
	iov_check_pattern(&f.iov[1], 2);
	cr_assert_eq(f.iov[2].iov_len, 1);
	cr_assert_eq(vhu_vq_inflight(f.vq), 1);
	cr_assert_eq(fx_pop(&f), 0, "nothing more available");

	*(uint8_t *)f.iov[2].iov_base = 0x42;
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 1), 0);
	cr_assert_eq(vhu_vq_inflight(f.vq), 0);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 5);
	cr_assert_eq(len, 1);
	in = fg_ptr(&f.g, 3 * MiB + 8, 1);
	cr_assert_eq(*in, 0x42, "the guest sees what the device wrote");
	cr_assert_not(fg_used(&f.q, &id, &len));
	cr_assert_eq(vhu_vq_get_base(f.vq), 1);
	fx_fini(&f);
}

Test(virtq, many_requests_and_index_wrap)
{
	struct fx f;
	uint32_t id, len;
	unsigned int done = 0;

	fx_config(&f, 8, BASE_FEATURES);
	/* As after a migration: both indexes near the 16-bit wrap. */
	cr_assert_eq(vhu_vq_set_base(f.vq, 65530), 0);
	f.q.avail_idx = 65530;
	f.q.avail->idx = 65530;
	f.q.used->idx = 65530;
	f.q.last_used = 65530;
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	for (unsigned int round = 0; round < 6; round++) {
		/* Fill the ring: 8 one-descriptor chains, popped and pushed in reverse. */
		struct vhu_vq_req reqs[8];
		struct iovec iovs[8][2];

		for (unsigned int i = 0; i < 8; i++) {
			fg_desc(&f.q, i, BUF_GPA + i * 64, 64, VHU_VIRTQ_DESC_F_WRITE, 0);
			fg_avail(&f.q, (uint16_t)i);
		}
		for (unsigned int i = 0; i < 8; i++) {
			cr_assert_eq(vhu_vq_pop(f.vq, &reqs[i], iovs[i], 2), 1);
			cr_assert_eq(reqs[i].head, i);
		}
		cr_assert_eq(vhu_vq_pop(f.vq, &f.req, f.iov, 64), 0);
		cr_assert_eq(vhu_vq_inflight(f.vq), 8);
		for (unsigned int i = 8; i-- > 0;) {
			cr_assert_eq(vhu_vq_push(f.vq, &reqs[i], i), 0);
		}
		for (unsigned int i = 8; i-- > 0;) {
			cr_assert(fg_used(&f.q, &id, &len));
			cr_assert_eq(id, i);
			cr_assert_eq(len, i);
			done++;
		}
	}
	cr_assert_eq(done, 48);
	cr_assert_eq(vhu_vq_get_base(f.vq), (uint16_t)(65530 + 48));
	fx_fini(&f);
}

Test(virtq, indirect_chain)
{
	struct fx f;
	uint64_t table = HIGH_GPA + 8192;
	uint32_t id, len;

	fx_start(&f, 16, BASE_FEATURES);
	guest_fill(&f, BUF_GPA, 100, 7);
	/* Entries out of order inside the table, as next links allow. */
	cr_assert(fg_indirect_desc(&f.g, table, 0, BUF_GPA, 100, VHU_VIRTQ_DESC_F_NEXT, 2));
	cr_assert(fg_indirect_desc(&f.g, table, 2, BUF_GPA + 100, 50, VHU_VIRTQ_DESC_F_NEXT, 1));
	cr_assert(fg_indirect_desc(&f.g, table, 1, BUF_GPA + 4096, 512, VHU_VIRTQ_DESC_F_WRITE, 0));
	fg_desc(&f.q, 3, table, 3 * 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f.q, 3);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(f.req.head, 3);
	cr_assert_eq(f.req.nread, 2);
	cr_assert_eq(f.req.nwrite, 1);
	cr_assert_eq(f.req.read_len, 150);
	cr_assert_eq(f.req.write_len, 512);
	iov_check_pattern(&f.iov[0], 7);
	cr_assert_eq(f.iov[2].iov_base, vhu_mem_gpa(f.m, BUF_GPA + 4096, 512));
	/* len above what the chain can hold is clamped. */
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 100000), 0);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 3);
	cr_assert_eq(len, 512);

	/* A table at an address that is not 16-byte aligned is read correctly. */
	table = HIGH_GPA + 12288 + 3;
	cr_assert(fg_indirect_desc(&f.g, table, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 1));
	cr_assert(fg_indirect_desc(&f.g, table, 1, BUF_GPA + 8, 8, VHU_VIRTQ_DESC_F_WRITE, 0));
	/* A direct descriptor before it. */
	fg_desc(&f.q, 4, BUF_GPA + 16, 4, VHU_VIRTQ_DESC_F_NEXT, 6);
	fg_desc(&f.q, 6, table, 32, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f.q, 4);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(f.req.nread, 2);
	cr_assert_eq(f.req.nwrite, 1);
	cr_assert_eq(f.req.read_len, 12);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 8), 0);
	fx_fini(&f);
}

Test(virtq, zero_length_descriptors_give_no_iovec)
{
	struct fx f;

	fx_start(&f, 16, BASE_FEATURES);
	fg_desc(&f.q, 0, GAP_GPA, 0, VHU_VIRTQ_DESC_F_NEXT, 1);	/* address unchecked: no bytes */
	fg_desc(&f.q, 1, BUF_GPA, 10, VHU_VIRTQ_DESC_F_NEXT, 2);
	fg_desc(&f.q, 2, BUF_GPA, 0, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(f.req.nread, 1);
	cr_assert_eq(f.req.nwrite, 0);
	cr_assert_eq(f.req.read_len, 10);
	cr_assert_eq(f.req.write_len, 0);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 5), 0);
	cr_assert_eq(f.q.used->ring[0].len, 0, "clamped to the writable length 0");
	fx_fini(&f);
}

Test(virtq, enable_rules)
{
	struct fx f;

	/* Without VHOST_USER_F_PROTOCOL_FEATURES: SET_FEATURES enables the ring. */
	fx_config(&f, 16, BASE_FEATURES);
	cr_assert(vhu_vq_enabled(f.vq));
	cr_assert_not(vhu_vq_started(f.vq));
	cr_assert_not(vhu_vq_ready(f.vq));
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 0, "not started: nothing popped");
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert(vhu_vq_ready(f.vq));
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	fx_fini(&f);

	/* With it: disabled until SET_VRING_ENABLE 1; SET_FEATURES never disables. */
	fx_config(&f, 16, BASE_FEATURES | F(VHU_F_PROTOCOL_FEATURES));
	cr_assert_not(vhu_vq_enabled(f.vq));
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert(vhu_vq_started(f.vq));
	cr_assert_not(vhu_vq_ready(f.vq));
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 0, "started but disabled: nothing popped");
	cr_assert_eq(vhu_vq_set_enable(f.vq, 2), -VHU_EBODY);
	cr_assert_eq(vhu_vq_set_enable(f.vq, 1), 0);
	cr_assert(vhu_vq_ready(f.vq));
	vhu_vq_set_features(f.vq, BASE_FEATURES | F(VHU_F_PROTOCOL_FEATURES) | F(VHU_F_LOG_ALL));
	cr_assert(vhu_vq_enabled(f.vq), "SET_FEATURES (LOG_ALL, migration) keeps it enabled");
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_set_enable(f.vq, 0), 0);
	cr_assert_not(vhu_vq_ready(f.vq));
	/* A request popped before the disable is still completed. */
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	fx_fini(&f);
}

Test(virtq, vring_state_messages)
{
	struct fx f;
	struct vhu_vring_addr a;

	fx_config(&f, 16, BASE_FEATURES);
	/* Sizes: powers of two in 1..32768. */
	cr_assert_eq(vhu_vq_set_num(f.vq, 0), -VHU_EVQSIZE);
	cr_assert_eq(vhu_vq_set_num(f.vq, 3), -VHU_EVQSIZE);
	cr_assert_eq(vhu_vq_set_num(f.vq, 1000), -VHU_EVQSIZE);
	cr_assert_eq(vhu_vq_set_num(f.vq, 32769), -VHU_EVQSIZE);
	cr_assert_eq(vhu_vq_set_num(f.vq, 65536), -VHU_EVQSIZE);
	cr_assert_eq(vhu_vq_set_num(f.vq, UINT32_MAX), -VHU_EVQSIZE);
	cr_assert_eq(vhu_vq_num(f.vq), 16, "a refused size changes nothing");
	cr_assert_eq(vhu_vq_set_num(f.vq, 1), 0);
	cr_assert_eq(vhu_vq_set_num(f.vq, 16), 0);
	/* Split-ring base: bits 16-31 reserved. */
	cr_assert_eq(vhu_vq_set_base(f.vq, 0x10000), -VHU_EBODY);
	/* Misaligned areas. */
	a = fg_vq_addr(&f.q);
	a.desc += 8;
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), -VHU_EVQRING);
	a = fg_vq_addr(&f.q);
	a.avail += 1;
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), -VHU_EVQRING);
	a = fg_vq_addr(&f.q);
	a.used += 2;
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), -VHU_EVQRING);

	cr_assert_eq(vhu_vq_set_base(f.vq, 3), 0);
	f.q.avail_idx = 3;
	f.q.used->idx = 3;
	f.q.last_used = 3;
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0, "a second SET_VRING_KICK");
	/* No reconfiguration while started. */
	cr_assert_eq(vhu_vq_set_num(f.vq, 8), -EBUSY);
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), -EBUSY);
	cr_assert_eq(vhu_vq_set_base(f.vq, 0), -EBUSY);

	fg_desc(&f.q, 1, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, 1);
	fg_avail(&f.q, 1);
	cr_assert_eq(fx_pop(&f), 1);
	/* GET_VRING_BASE: stops, reports the next index; the popped request still completes. */
	cr_assert_eq(vhu_vq_get_base(f.vq), 4);
	cr_assert_not(vhu_vq_started(f.vq));
	cr_assert_eq(fx_pop(&f), 0, "stopped");
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert_eq(f.q.used->idx, 4);
	/* Restart where it stopped (the one still available is popped now). */
	cr_assert_eq(vhu_vq_set_base(f.vq, 4), 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert_eq(vhu_vq_get_base(f.vq), 5);

	/* Reset: back to unconfigured. */
	vhu_vq_reset(f.vq);
	cr_assert_eq(vhu_vq_num(f.vq), 0);
	cr_assert_not(vhu_vq_enabled(f.vq));
	cr_assert_eq(vhu_vq_start(f.vq), -EINVAL, "no NUM/ADDR");
	fx_fini(&f);
}

Test(virtq, largest_queue)
{
	struct fx f;

	fx_start(&f, VHU_VIRTQ_MAX_SIZE, BASE_FEATURES);
	fg_desc(&f.q, VHU_VIRTQ_MAX_SIZE - 1, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, VHU_VIRTQ_MAX_SIZE - 1);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(f.req.head, VHU_VIRTQ_MAX_SIZE - 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	fx_fini(&f);
}

Test(virtq, need_call_without_event_idx)
{
	struct fx f;

	fx_start(&f, 16, BASE_FEATURES);
	cr_assert_not(vhu_vq_need_call(f.vq), "nothing pushed");
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert(vhu_vq_need_call(f.vq));
	cr_assert_not(vhu_vq_need_call(f.vq), "already judged");
	f.q.avail->flags = VHU_VIRTQ_AVAIL_F_NO_INTERRUPT;
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert_not(vhu_vq_need_call(f.vq), "the guest asked for no interrupts");
	fx_fini(&f);
}

Test(virtq, need_call_with_event_idx)
{
	struct fx f;
	uint16_t *used_event;

	fx_start(&f, 16, BASE_FEATURES | F(VHU_F_RING_EVENT_IDX));
	used_event = vhu_virtq_used_event(f.q.avail, 16);
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	/* The guest wants a call once used idx passes 2 (i.e. after the 3rd completion). */
	*used_event = 2;
	for (unsigned int i = 0; i < 4; i++) {
		fg_avail(&f.q, 0);
	}
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert(vhu_vq_need_call(f.vq), "first decision after start: call");
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert_not(vhu_vq_need_call(f.vq), "used idx 1 -> 2, event 2 not crossed");
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert(vhu_vq_need_call(f.vq), "used idx 2 -> 3 crosses event 2");
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert_not(vhu_vq_need_call(f.vq), "event already passed");
	/* The check agrees with the virtio formula on wrap-around. */
	cr_assert(vhu_virtq_need_event(65535, 1, 65534));
	cr_assert_not(vhu_virtq_need_event(1, 1, 65534));
	cr_assert(vhu_virtq_need_event(0, 1, 0));
	/* avail_event followed each pop (notifications on). */
	cr_assert_eq(*vhu_virtq_avail_event(f.q.used, 16), 4);
	fx_fini(&f);
}

Test(virtq, notification_suppression)
{
	struct fx f;

	fx_start(&f, 16, BASE_FEATURES);
	cr_assert_eq(f.q.used->flags, 0);
	vhu_vq_notify_disable(f.vq);
	cr_assert_eq(f.q.used->flags, VHU_VIRTQ_USED_F_NO_NOTIFY);
	cr_assert_not(vhu_vq_notify_enable(f.vq), "nothing available");
	cr_assert_eq(f.q.used->flags, 0);
	vhu_vq_notify_disable(f.vq);
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, 0);	/* the guest adds while kicks are off */
	cr_assert(vhu_vq_notify_enable(f.vq), "re-check after enabling sees it");
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	fx_fini(&f);

	fx_start(&f, 16, BASE_FEATURES | F(VHU_F_RING_EVENT_IDX));
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	vhu_vq_notify_disable(f.vq);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	/* Disabled: no index the guest publishes next reaches avail_event. */
	cr_assert_not(vhu_virtq_need_event(*vhu_virtq_avail_event(f.q.used, 16), 1, 0));
	cr_assert_not(vhu_virtq_need_event(*vhu_virtq_avail_event(f.q.used, 16), 17, 1));
	cr_assert_eq(f.q.used->flags, 0, "EVENT_IDX: flags unused");
	fg_avail(&f.q, 0);
	cr_assert_not(vhu_virtq_need_event(*vhu_virtq_avail_event(f.q.used, 16), 2, 1));
	cr_assert(vhu_vq_notify_enable(f.vq));
	cr_assert_eq(*vhu_virtq_avail_event(f.q.used, 16), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(*vhu_virtq_avail_event(f.q.used, 16), 2);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	fx_fini(&f);
}

Test(virtq, memory_removed_under_an_inflight_request)
{
	struct fx f;
	struct vhu_mem_region hi;
	volatile uint8_t *buf;
	int maps_with_all;
	uint32_t id, len;

	fx_start(&f, 16, BASE_FEATURES);
	maps_with_all = fg_map_count();
	fg_desc(&f.q, 0, HIGH_GPA, 4096, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	buf = f.iov[0].iov_base;
	/* The front-end removes the region the request points into. */
	hi = fg_region_desc(&f.g, 2);
	cr_assert_eq(vhu_mem_remove_region(f.m, &hi), 0);
	cr_assert_eq(vhu_mem_deferred(f.m), 1);
	cr_assert_eq(fg_map_count(), maps_with_all, "still mapped");
	buf[4095] = 0x77;	/* the device finishes its write */
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 4096), 0);
	cr_assert_eq(vhu_mem_deferred(f.m), 0, "unmapped once the request completed");
	cr_assert_eq(fg_map_count(), maps_with_all - 1);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(*(uint8_t *)fg_ptr(&f.g, HIGH_GPA + 4095, 1), 0x77);

	/* A new table (new fds, same layout): rings re-translated, old mappings freed. */
	fg_desc(&f.q, 1, BUF_GPA, 16, 0, 0);
	fg_avail(&f.q, 1);
	cr_assert_eq(fx_pop(&f), 1);
	fx_mem(&f);
	cr_assert_eq(vhu_mem_deferred(f.m), 3, "the queue's rings and the request pin the old table");
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 1);
	cr_assert_eq(vhu_mem_deferred(f.m), 0, "push moved the rings to the new table");
	fg_avail(&f.q, 0);	/* region 2 is back: the first chain works again */
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 1), 0);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 0);
	fx_fini(&f);
}

Test(virtq, stopped_queue_pins_nothing)
{
	struct fx f;

	fx_start(&f, 16, BASE_FEATURES);
	vhu_vq_get_base(f.vq);
	cr_assert_eq(vhu_mem_reset(f.m), 0);
	cr_assert_eq(vhu_mem_deferred(f.m), 0, "a stopped queue with nothing in flight holds no epoch");
	fx_fini(&f);
}

Test(virtq, rings_outside_memory_or_misaligned)
{
	struct fx f;
	struct vhu_vring_addr a;
	struct vhu_mem_region r;

	/* Used ring running off the end of its region. */
	fx_config(&f, 16, BASE_FEATURES);
	a = fg_vq_addr(&f.q);
	a.used = f.g.r[0].uva + f.g.r[0].size - 16;	/* runs off the end of region 0 */
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), 0);
	cr_assert_eq(vhu_vq_start(f.vq), -VHU_EVQRING);
	cr_assert_eq(vhu_vq_error(f.vq), -VHU_EVQRING);
	cr_assert_eq(fx_pop(&f), -VHU_EVQRING, "broken");
	fx_fini(&f);

	/* A size whose descriptor table (512 KiB) runs off the end of region 0. */
	fx_config(&f, 16, BASE_FEATURES);
	cr_assert_eq(vhu_vq_set_num(f.vq, 32768), 0);
	a = fg_vq_addr(&f.q);
	a.desc = fg_uva(&f.g, 0xf0000);
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), 0);
	cr_assert_eq(vhu_vq_start(f.vq), -VHU_EVQRING);
	fx_fini(&f);

	/* Aligned front-end address, misaligned local pointer: user_addr and mmap_offset disagree. */
	fx_config(&f, 16, BASE_FEATURES);
	r = fg_region_desc(&f.g, 0);
	cr_assert_eq(vhu_mem_remove_region(f.m, &r), 0);
	r.user_addr += 8;
	cr_assert_eq(vhu_mem_add_region(f.m, &r, dup(f.g.r[0].fd)), 0);
	a = fg_vq_addr(&f.q);
	a.desc += 16;	/* 16-aligned, but 8 bytes into the region: host pointer off by 8 */
	a.avail += 16;
	a.used += 16;
	cr_assert_eq(vhu_vq_set_addr(f.vq, &a), 0);
	cr_assert_eq(vhu_vq_start(f.vq), -VHU_EVQRING);
	fx_fini(&f);

	/* More in flight than the queue holds: base 20 against used idx 0. */
	fx_config(&f, 16, BASE_FEATURES);
	cr_assert_eq(vhu_vq_set_base(f.vq, 20), 0);
	cr_assert_eq(vhu_vq_start(f.vq), -VHU_EVQIDX);
	fx_fini(&f);
}

Test(virtq, ring_region_removed_while_started)
{
	struct fx f;
	struct vhu_mem_region r;

	fx_start(&f, 16, BASE_FEATURES);
	r = fg_region_desc(&f.g, 0);
	cr_assert_eq(vhu_mem_remove_region(f.m, &r), 0);
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), -VHU_EVQRING);
	cr_assert_eq(vhu_mem_deferred(f.m), 0, "the rings' epoch was let go");
	fx_fini(&f);
}

/* ------------------------------------------------------------------ */
/* Hostile chains: one fresh queue per case, the named error, broken after. */

struct hostile {
	const char *name;
	int err;
	uint64_t features;
	unsigned int iov_max;
	void (*build)(struct fx *f);
};

static void
h_loop(struct fx *f)
{
	fg_desc(&f->q, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&f->q, 1, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 0);
	fg_avail(&f->q, 0);
}

static void
h_self_loop(struct fx *f)
{
	fg_desc(&f->q, 7, BUF_GPA, 0, VHU_VIRTQ_DESC_F_NEXT, 7);
	fg_avail(&f->q, 7);
}

static void
h_loop_in_indirect(struct fx *f)
{
	uint64_t t = HIGH_GPA;

	fg_indirect_desc(&f->g, t, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_indirect_desc(&f->g, t, 1, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 2);
	fg_indirect_desc(&f->g, t, 2, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&f->q, 0, t, 3 * 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_head_out_of_range(struct fx *f)
{
	fg_avail(&f->q, 16);
}

static void
h_head_far_out(struct fx *f)
{
	fg_avail(&f->q, 0xffff);
}

static void
h_next_out_of_range(struct fx *f)
{
	fg_desc(&f->q, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 16);
	fg_avail(&f->q, 0);
}

static void
h_indirect_next_out_of_table(struct fx *f)
{
	fg_indirect_desc(&f->g, HIGH_GPA, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 2);
	fg_indirect_desc(&f->g, HIGH_GPA, 1, BUF_GPA, 8, 0, 0);
	fg_desc(&f->q, 0, HIGH_GPA, 2 * 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_nested(struct fx *f)
{
	fg_indirect_desc(&f->g, HIGH_GPA + 4096, 0, BUF_GPA, 8, 0, 0);
	fg_indirect_desc(&f->g, HIGH_GPA, 0, HIGH_GPA + 4096, 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_desc(&f->q, 0, HIGH_GPA, 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_empty(struct fx *f)
{
	fg_desc(&f->q, 0, HIGH_GPA, 0, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_len_not_whole(struct fx *f)
{
	fg_indirect_desc(&f->g, HIGH_GPA, 0, BUF_GPA, 8, 0, 0);
	fg_desc(&f->q, 0, HIGH_GPA, 24, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_too_long(struct fx *f)
{
	fg_desc(&f->q, 0, HIGH_GPA, 16u * (VHU_VIRTQ_MAX_SIZE + 1), VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_with_next(struct fx *f)
{
	fg_indirect_desc(&f->g, HIGH_GPA, 0, BUF_GPA, 8, 0, 0);
	fg_desc(&f->q, 0, HIGH_GPA, 16, VHU_VIRTQ_DESC_F_INDIRECT | VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&f->q, 1, BUF_GPA, 8, 0, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_table_in_gap(struct fx *f)
{
	fg_desc(&f->q, 0, GAP_GPA, 32, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_indirect_table_straddles(struct fx *f)
{
	fg_desc(&f->q, 0, 3 * MiB - 16, 32, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_buffer_in_gap(struct fx *f)
{
	fg_desc(&f->q, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&f->q, 1, GAP_GPA, 8, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f->q, 0);
}

static void
h_buffer_straddles_adjacent_regions(struct fx *f)
{
	fg_desc(&f->q, 0, 3 * MiB - 4, 8, 0, 0);
	fg_avail(&f->q, 0);
}

static void
h_buffer_runs_off_the_end(struct fx *f)
{
	fg_desc(&f->q, 0, HIGH_GPA + 256 * KiB - 100, 101, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f->q, 0);
}

static void
h_buffer_wraps(struct fx *f)
{
	fg_desc(&f->q, 0, UINT64_MAX - 7, 16, 0, 0);
	fg_avail(&f->q, 0);
}

static void
h_buffer_huge(struct fx *f)
{
	fg_desc(&f->q, 0, 16, UINT32_MAX, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f->q, 0);
}

static void
h_avail_jump(struct fx *f)
{
	fg_desc(&f->q, 0, BUF_GPA, 8, 0, 0);
	fg_avail_set_idx(&f->q, 17);
}

static void
h_avail_backwards(struct fx *f)
{
	fg_avail_set_idx(&f->q, 0xffff);	/* 65535 ahead, i.e. one behind */
}

static void
h_write_then_read(struct fx *f)
{
	fg_desc(&f->q, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_WRITE | VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_desc(&f->q, 1, BUF_GPA + 8, 8, 0, 0);
	fg_avail(&f->q, 0);
}

static void
h_write_then_read_indirect(struct fx *f)
{
	fg_indirect_desc(&f->g, HIGH_GPA, 0, BUF_GPA, 8, VHU_VIRTQ_DESC_F_NEXT, 1);
	fg_indirect_desc(&f->g, HIGH_GPA, 1, BUF_GPA, 8,
			 VHU_VIRTQ_DESC_F_WRITE | VHU_VIRTQ_DESC_F_NEXT, 2);
	fg_indirect_desc(&f->g, HIGH_GPA, 2, BUF_GPA, 8, 0, 0);
	fg_desc(&f->q, 0, HIGH_GPA, 3 * 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static void
h_too_many_segments(struct fx *f)
{
	for (unsigned int i = 0; i < 5; i++) {
		fg_desc(&f->q, i, BUF_GPA + 64 * i, 8, i < 4 ? VHU_VIRTQ_DESC_F_NEXT : 0,
			(uint16_t)(i + 1));
	}
	fg_avail(&f->q, 0);
}

static void
h_indirect_not_negotiated(struct fx *f)
{
	fg_indirect_desc(&f->g, HIGH_GPA, 0, BUF_GPA, 8, 0, 0);
	fg_desc(&f->q, 0, HIGH_GPA, 16, VHU_VIRTQ_DESC_F_INDIRECT, 0);
	fg_avail(&f->q, 0);
}

static const struct hostile hostile[] = {
	{ "chain loops (0 -> 1 -> 0)", -VHU_EVQLOOP, BASE_FEATURES, 64, h_loop },
	{ "descriptor points at itself", -VHU_EVQLOOP, BASE_FEATURES, 64, h_self_loop },
	{ "loop inside an indirect table", -VHU_EVQLOOP, BASE_FEATURES, 64, h_loop_in_indirect },
	{ "head == queue size", -VHU_EVQDESC, BASE_FEATURES, 64, h_head_out_of_range },
	{ "head 0xffff", -VHU_EVQDESC, BASE_FEATURES, 64, h_head_far_out },
	{ "next == queue size", -VHU_EVQDESC, BASE_FEATURES, 64, h_next_out_of_range },
	{ "next outside the indirect table", -VHU_EVQDESC, BASE_FEATURES, 64,
	  h_indirect_next_out_of_table },
	{ "nested indirect table", -VHU_EVQINDIRECT, BASE_FEATURES, 64, h_indirect_nested },
	{ "empty indirect table", -VHU_EVQINDIRECT, BASE_FEATURES, 64, h_indirect_empty },
	{ "indirect length 24 (not whole descriptors)", -VHU_EVQINDIRECT, BASE_FEATURES, 64,
	  h_indirect_len_not_whole },
	{ "indirect table of 32769 descriptors", -VHU_EVQINDIRECT, BASE_FEATURES, 64,
	  h_indirect_too_long },
	{ "INDIRECT with NEXT", -VHU_EVQINDIRECT, BASE_FEATURES, 64, h_indirect_with_next },
	{ "indirect without the feature", -VHU_EVQINDIRECT, F(VHU_F_VERSION_1), 64,
	  h_indirect_not_negotiated },
	{ "indirect table in a gap", -VHU_EGUESTADDR, BASE_FEATURES, 64, h_indirect_table_in_gap },
	{ "indirect table across two regions", -VHU_EGUESTADDR, BASE_FEATURES, 64,
	  h_indirect_table_straddles },
	{ "buffer in a gap", -VHU_EGUESTADDR, BASE_FEATURES, 64, h_buffer_in_gap },
	{ "buffer across two adjacent regions", -VHU_EGUESTADDR, BASE_FEATURES, 64,
	  h_buffer_straddles_adjacent_regions },
	{ "buffer one byte past its region", -VHU_EGUESTADDR, BASE_FEATURES, 64,
	  h_buffer_runs_off_the_end },
	{ "buffer address wraps", -VHU_EGUESTADDR, BASE_FEATURES, 64, h_buffer_wraps },
	{ "buffer of 4 GiB - 1", -VHU_EGUESTADDR, BASE_FEATURES, 64, h_buffer_huge },
	{ "avail idx jumps by 17 on a queue of 16", -VHU_EVQIDX, BASE_FEATURES, 64, h_avail_jump },
	{ "avail idx goes backwards", -VHU_EVQIDX, BASE_FEATURES, 64, h_avail_backwards },
	{ "readable after writable", -VHU_EVQORDER, BASE_FEATURES, 64, h_write_then_read },
	{ "readable after writable, indirect", -VHU_EVQORDER, BASE_FEATURES, 64,
	  h_write_then_read_indirect },
	{ "5 buffers, 4 iovecs", -VHU_EVQSEGS, BASE_FEATURES, 4, h_too_many_segments },
};

Test(virtq, hostile_chains_break_the_queue_by_name)
{
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const struct hostile *h = &hostile[i];
		struct fx f;
		uint16_t used_before;
		int rc;

		fx_start(&f, 16, h->features);
		used_before = f.q.used->idx;
		h->build(&f);
		rc = vhu_vq_pop(f.vq, &f.req, f.iov, h->iov_max);
		cr_assert_eq(rc, h->err, "%s: got %s (%d), want %s", h->name, vhu_errname(rc), rc,
			     vhu_errname(h->err));
		cr_assert(vhu_err_is_guest_fault(rc), "%s", h->name);
		cr_assert_eq(vhu_vq_error(f.vq), h->err, "%s", h->name);
		cr_assert_not(vhu_vq_ready(f.vq), "%s", h->name);
		/* Broken: the same answer again, even once the guest behaves. */
		fg_desc(&f.q, 3, BUF_GPA, 8, 0, 0);
		fg_avail(&f.q, 3);
		cr_assert_eq(vhu_vq_pop(f.vq, &f.req, f.iov, 64), h->err, "%s", h->name);
		cr_assert_eq(vhu_vq_start(f.vq), h->err, "%s", h->name);
		cr_assert_eq(f.q.used->idx, used_before, "%s: nothing used", h->name);
		cr_assert_eq(vhu_vq_inflight(f.vq), 0, "%s", h->name);
		/* A reset clears it. */
		vhu_vq_reset(f.vq);
		cr_assert_eq(vhu_vq_error(f.vq), 0);
		fx_fini(&f);
	}
}

Test(virtq, broken_queue_still_completes_earlier_requests)
{
	struct fx f;
	struct vhu_vq_req good;
	struct iovec iov[4];
	uint32_t id, len;

	fx_start(&f, 16, BASE_FEATURES);
	fg_desc(&f.q, 2, BUF_GPA, 8, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f.q, 2);
	cr_assert_eq(vhu_vq_pop(f.vq, &good, iov, 4), 1);
	h_loop(&f);
	cr_assert_eq(fx_pop(&f), -VHU_EVQLOOP);
	cr_assert_eq(vhu_vq_push(f.vq, &good, 8), 0);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 2);
	fx_fini(&f);
}

Test(virtq, drop_releases_without_using)
{
	struct fx f;
	struct vhu_mem_region r;

	fx_start(&f, 16, BASE_FEATURES);
	fg_desc(&f.q, 0, HIGH_GPA, 8, 0, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	r = fg_region_desc(&f.g, 2);
	cr_assert_eq(vhu_mem_remove_region(f.m, &r), 0);
	cr_assert_eq(vhu_mem_deferred(f.m), 1);
	vhu_vq_drop(f.vq, &f.req);
	cr_assert_eq(vhu_mem_deferred(f.m), 0);
	cr_assert_eq(vhu_vq_inflight(f.vq), 0);
	cr_assert_eq(f.q.used->idx, 0);
	fx_fini(&f);
}

Test(virtq, refresh_lets_an_idle_queue_release_old_mappings)
{
	struct fx f;
	struct vhu_mem_region r;

	fx_start(&f, 16, BASE_FEATURES);
	r = fg_region_desc(&f.g, 2);
	cr_assert_eq(vhu_mem_remove_region(f.m, &r), 0);
	cr_assert_eq(vhu_mem_deferred(f.m), 1, "the started queue's rings pin the old table");
	cr_assert_eq(vhu_vq_refresh(f.vq), 0);
	cr_assert_eq(vhu_mem_deferred(f.m), 0);
	cr_assert(vhu_vq_ready(f.vq));
	/* The rings' own region goes: the queue is broken, nothing stays pinned. */
	r = fg_region_desc(&f.g, 0);
	cr_assert_eq(vhu_mem_remove_region(f.m, &r), 0);
	cr_assert_eq(vhu_vq_refresh(f.vq), -VHU_EVQRING);
	cr_assert_eq(vhu_mem_deferred(f.m), 0);
	cr_assert_not(vhu_vq_ready(f.vq));
	fx_fini(&f);
}

/* Poll mode: a guest that honours avail_event never kicks, past a wrap of the index too. */
Test(virtq, disabled_notifications_hold_across_the_index_wrap)
{
	struct fx f;
	unsigned int i;

	fx_start(&f, 16, BASE_FEATURES | F(VHU_F_RING_EVENT_IDX));
	fg_desc(&f.q, 0, BUF_GPA, 8, 0, 0);
	vhu_vq_notify_disable(f.vq);
	cr_assert_not(vhu_vq_avail_pending(f.vq));
	for (i = 0; i < 70000; i++) {
		uint16_t old = f.q.avail_idx;

		fg_avail(&f.q, 0);
		cr_assert_not(vhu_virtq_need_event(*vhu_virtq_avail_event(f.q.used, 16),
						   f.q.avail_idx, old), "kick asked at %u", i);
		cr_assert(vhu_vq_avail_pending(f.vq));
		cr_assert_eq(fx_pop(&f), 1);
		cr_assert_not(vhu_vq_avail_pending(f.vq));
		cr_assert_eq(vhu_vq_push(f.vq, &f.req, 0), 0);
	}
	cr_assert_not(vhu_vq_notify_enable(f.vq));
	cr_assert_eq(*vhu_virtq_avail_event(f.q.used, 16), (uint16_t)70000);
	fx_fini(&f);
}

/* The front-end truncates the memfd that holds the rings: no SIGBUS, a named fault. */
Test(virtq, rings_region_shrunk_breaks_the_queue_by_name)
{
	struct fx f;

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	fx_start(&f, 256, BASE_FEATURES);
	fg_desc(&f.q, 0, BUF_GPA, 16, 0, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(ftruncate(f.g.r[0].fd, 0), 0);
	cr_assert_eq(fx_pop(&f), -VHU_EMEMLOST, "the zeroes read are not taken for a request");
	cr_assert_eq(vhu_vq_error(f.vq), -VHU_EMEMLOST);
	cr_assert_eq(fx_pop(&f), -VHU_EMEMLOST);
	cr_assert_eq(vhu_vq_inflight(f.vq), 0);
	fx_fini(&f);
}

/* A buffer's region shrinks while the device works on it: the push names the loss. */
Test(virtq, buffer_region_shrunk_under_a_request)
{
	struct fx f;

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	fx_start(&f, 256, BASE_FEATURES);
	fg_desc(&f.q, 0, BUF_GPA, 4096, VHU_VIRTQ_DESC_F_WRITE, 0);
	fg_avail(&f.q, 0);
	cr_assert_eq(fx_pop(&f), 1);
	cr_assert_eq(ftruncate(f.g.r[1].fd, 0), 0);
	memset(f.iov[0].iov_base, 0x5a, f.iov[0].iov_len);	/* the device's write survives */
	cr_assert_eq(vhu_vq_push(f.vq, &f.req, 4096), -VHU_EMEMLOST);
	cr_assert_eq(vhu_vq_inflight(f.vq), 0);
	cr_assert_eq(fx_pop(&f), -VHU_EMEMLOST);
	fx_fini(&f);
}
