/* SPDX-License-Identifier: MIT */
/*
 * Inflight tracking, transport-free: the region's layout at exact byte
 * offsets (the spec's, as QEMU, libvhost-user and DPDK share it), the
 * recovery cases (clean, a push cut short before or after the used index,
 * hostile regions each refused with -VHU_EINFLIGHT), and a vhu_vq with an
 * area over a fake guest: pops mark, pushes clear, a restart pops the
 * requests left in flight again, in order, once.
 */
#include "helpers.h"
#include "fake_guest.h"

#include <stdlib.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/guest_mem.h>
#include <vhu/inflight.h>
#include <vhu/vq.h>

TestSuite(inflight, .init = t_setup, .fini = t_teardown);

#define MiB	(1024ull * 1024ull)
#define F(bit)	(1ull << (bit))

/* Raw little-endian reads of a region: the layout as bytes, not as our structs. */
static uint16_t
rd16(const uint8_t *p, size_t off)
{
	return (uint16_t)(p[off] | p[off + 1] << 8);
}

static uint64_t
rd64(const uint8_t *p, size_t off)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--) {
		v = v << 8 | p[off + (size_t)i];
	}
	return v;
}

Test(inflight, sizes_match_the_spec_and_the_other_implementations)
{
	/* 16-byte header + 16 bytes per descriptor, rounded up to 64. */
	cr_assert_eq(vhu_inflight_area_size(1), 64);
	cr_assert_eq(vhu_inflight_area_size(2), 64);
	cr_assert_eq(vhu_inflight_area_size(4), 128);
	cr_assert_eq(vhu_inflight_area_size(128), 16 + 128 * 16 + 48);
	cr_assert_eq(vhu_inflight_area_size(256), 4160);
	for (unsigned int qs = 1; qs <= 32768; qs *= 2) {
		/* libvhost-user: ALIGN_UP(16 * qs + 2, 64); DPDK: ALIGN_UP(16 * qs + 16, 64). */
		size_t lvu = (16 * qs + 2 + 63) / 64 * 64, dpdk = (16 * qs + 16 + 63) / 64 * 64;

		cr_assert_eq(vhu_inflight_area_size((uint16_t)qs), lvu, "qs %u", qs);
		cr_assert_eq(vhu_inflight_area_size((uint16_t)qs), dpdk, "qs %u", qs);
	}
	cr_assert_eq(vhu_inflight_region_size(2, 256), 2 * 4160);
	cr_assert_eq(vhu_inflight_region_size(0, 256), 0);
	cr_assert_eq(vhu_inflight_region_size(1, 0), 0);
	cr_assert_eq(vhu_inflight_region_size(1, 100), 0, "not a power of two");
}

Test(inflight, layout_at_byte_offsets)
{
	uint8_t *r = calloc(1, (size_t)vhu_inflight_region_size(2, 8));
	struct vhu_inflight_queue *q1;

	cr_assert_not_null(r);
	vhu_inflight_region_init(r, 2, 8);
	/* Each area: desc_num at byte 10 is the queue size, version (8) 0. */
	cr_assert_eq(rd16(r, 10), 8);
	cr_assert_eq(rd16(r, 8), 0);
	cr_assert_eq(rd16(r, 192 + 10), 8, "second area at 16 + 8 * 16 rounded to 64");
	q1 = vhu_inflight_queue_at(r, 8, 1);
	cr_assert_eq((uint8_t *)q1 - r, 192);
	q1->features = 0x1122334455667788ull;
	q1->version = 1;
	q1->last_batch_head = 5;
	q1->used_idx = 0xabcd;
	q1->desc[3].inflight = 1;
	q1->desc[3].next = 0x4242;
	q1->desc[3].counter = 0x0102030405060708ull;
	cr_assert_eq(rd64(r, 192 + 0), 0x1122334455667788ull, "features: u64 at 0");
	cr_assert_eq(rd16(r, 192 + 8), 1, "version: u16 at 8");
	cr_assert_eq(rd16(r, 192 + 12), 5, "last_batch_head: u16 at 12");
	cr_assert_eq(rd16(r, 192 + 14), 0xabcd, "used_idx: u16 at 14");
	/* desc[i] at 16 + 16 i: inflight u8 at 0, 5 bytes padding, next u16 at 6, counter u64 at 8. */
	cr_assert_eq(r[192 + 16 + 48], 1);
	cr_assert_eq(rd16(r, 192 + 16 + 48 + 6), 0x4242);
	cr_assert_eq(rd64(r, 192 + 16 + 48 + 8), 0x0102030405060708ull);
	free(r);
}

/* A used area of 8 descriptors, as a back-end leaves it. */
struct area {
	struct vhu_inflight_queue q;
	struct vhu_inflight_desc d[8];
	uint8_t pad[64];
};

static void
area_used(struct area *a, uint16_t used_idx)
{
	memset(a, 0, sizeof(*a));
	a->q.version = VHU_INFLIGHT_VERSION;
	a->q.desc_num = 8;
	a->q.used_idx = used_idx;
}

static void
mark(struct area *a, unsigned int head, uint64_t counter)
{
	a->q.desc[head].inflight = 1;
	a->q.desc[head].counter = counter;
}

Test(inflight, recover_clean_lists_in_counter_order)
{
	struct vhu_inflight_entry list[8];
	struct vhu_inflight_state st;
	struct area a;

	area_used(&a, 10);
	mark(&a, 6, 12);
	mark(&a, 1, 10);
	mark(&a, 4, 11);
	cr_assert_eq(vhu_inflight_recover(&a.q, 8, 10, list, &st), 0);
	cr_assert_not(st.fresh);
	cr_assert_eq(st.nresubmit, 3);
	cr_assert_eq(list[0].head, 1);
	cr_assert_eq(list[1].head, 4);
	cr_assert_eq(list[2].head, 6);
	cr_assert_eq(st.last_avail, 13, "used index + in flight");
	cr_assert_eq(st.next_counter, 13);
	cr_assert_eq(a.q.used_idx, 10);
	/* Nothing in flight: the next index is the used one. */
	area_used(&a, 7);
	cr_assert_eq(vhu_inflight_recover(&a.q, 8, 7, list, &st), 0);
	cr_assert_eq(st.nresubmit, 0);
	cr_assert_eq(st.last_avail, 7);
}

Test(inflight, recover_fresh_area_adopts_the_ring)
{
	struct vhu_inflight_entry list[8];
	struct vhu_inflight_state st;
	struct area a;

	memset(&a, 0, sizeof(a));
	vhu_inflight_region_init(&a, 1, 8);
	/* A firmware used the ring before: nothing of that is ours. */
	cr_assert_eq(vhu_inflight_recover(&a.q, 8, 37, list, &st), 0);
	cr_assert(st.fresh);
	cr_assert_eq(st.nresubmit, 0);
	cr_assert_eq(st.last_avail, 37);
	cr_assert_eq(a.q.version, VHU_INFLIGHT_VERSION);
	cr_assert_eq(a.q.used_idx, 37);
	cr_assert_eq(a.q.desc_num, 8);
}

Test(inflight, recover_push_cut_after_the_used_index)
{
	struct vhu_inflight_entry list[8];
	struct vhu_inflight_state st;
	struct area a;

	/* Head 2 was pushed (the ring's used index is 5) but its flag and used_idx were not. */
	area_used(&a, 4);
	mark(&a, 2, 1);
	mark(&a, 7, 2);
	a.q.last_batch_head = 2;
	cr_assert_eq(vhu_inflight_recover(&a.q, 8, 5, list, &st), 0);
	cr_assert_eq(st.nresubmit, 1, "head 2 is not submitted twice");
	cr_assert_eq(list[0].head, 7);
	cr_assert_eq(st.last_avail, 6);
	cr_assert_eq(a.q.desc[2].inflight, 0);
	cr_assert_eq(a.q.used_idx, 5);
	cr_assert_eq(a.q.desc[7].inflight, 1);
}

Test(inflight, recover_push_cut_before_the_used_index)
{
	struct vhu_inflight_entry list[8];
	struct vhu_inflight_state st;
	struct area a;

	/* last_batch_head named head 2, the used index never moved: the guest never saw it. */
	area_used(&a, 4);
	mark(&a, 2, 1);
	a.q.last_batch_head = 2;
	cr_assert_eq(vhu_inflight_recover(&a.q, 8, 4, list, &st), 0);
	cr_assert_eq(st.nresubmit, 1);
	cr_assert_eq(list[0].head, 2);
	cr_assert_eq(st.last_avail, 5);
}

Test(inflight, hostile_areas_are_refused_by_name_and_left_alone)
{
	struct vhu_inflight_entry list[8];
	struct vhu_inflight_state st;
	struct area a, copy;

	/* Spoiled in the switch below, case by case. */
	struct {
		const char *what;
		uint16_t ring_used;
	} cases[] = {
		{ "version 7", 4 },
		{ "desc_num 16", 4 },
		{ "last_batch_head 8", 4 },
		{ "flag 2", 4 },
		{ "two counters equal", 4 },
		{ "counter exhausted", 4 },
		{ "used index two behind", 6 },
		{ "used index ahead of the ring", 3 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		area_used(&a, 4);
		mark(&a, 1, 5);
		mark(&a, 3, 6);
		switch (i) {
		case 0: a.q.version = 7; break;
		case 1: a.q.desc_num = 16; break;
		case 2: a.q.last_batch_head = 8; break;
		case 3: a.q.desc[5].inflight = 2; break;
		case 4: a.q.desc[3].counter = 5; break;
		case 5: a.q.desc[3].counter = UINT64_MAX; break;
		default: break;
		}
		copy = a;
		cr_assert_eq(vhu_inflight_recover(&a.q, 8, cases[i].ring_used, list, &st),
			     -VHU_EINFLIGHT, "%s", cases[i].what);
		cr_assert_eq(memcmp(&a, &copy, sizeof(a)), 0, "%s: area written", cases[i].what);
	}
	cr_assert_str_eq(vhu_errname(-VHU_EINFLIGHT), "VHU_EINFLIGHT");
}

Test(inflight, recover_sorts_a_full_queue)
{
	enum { N = 1024 };
	size_t sz = vhu_inflight_area_size(N);
	struct vhu_inflight_queue *q = calloc(1, sz);
	struct vhu_inflight_entry *list = calloc(N, sizeof(*list));
	struct vhu_inflight_state st;

	cr_assert(q != NULL && list != NULL);
	q->version = 1;
	q->desc_num = N;
	q->used_idx = 65500;
	for (unsigned int i = 0; i < N; i++) {
		q->desc[i].inflight = 1;
		q->desc[i].counter = 1000 + (i * 389u) % N;	/* a permutation */
	}
	cr_assert_eq(vhu_inflight_recover(q, N, 65500, list, &st), 0);
	cr_assert_eq(st.nresubmit, N);
	cr_assert_eq(st.last_avail, (uint16_t)(65500 + N), "wraps");
	for (unsigned int i = 0; i < N; i++) {
		cr_assert_eq(list[i].counter, 1000 + i);
	}
	cr_assert_eq(st.next_counter, 1000 + N);
	free(q);
	free(list);
}

/* A vhu_vq with an area, over a fake guest ------------------------------ */

static const struct fg_layout layout[] = {
	{ .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 },
};

#define NUM		8u
#define BUF_GPA		0x40000ull

struct fx {
	struct fake_guest g;
	struct vhu_mem *m;
	struct vhu_vq *vq;
	struct fg_vq q;
	struct area *a;
	struct iovec iov[8];
	struct vhu_vq_req req[NUM];
};

/* A queue as SET_VRING_* leave it; started if base >= 0. */
static void
vq_open(struct fx *f, int base)
{
	struct vhu_mem_table t;
	struct vhu_vring_addr addr;
	int fds[VHU_MAX_MEM_REGIONS];

	cr_assert_eq(vhu_mem_create(&f->m), 0);
	cr_assert_eq(fg_mem_table(&f->g, &t, fds), 0);
	cr_assert_eq(vhu_mem_set_table(f->m, &t, fds, f->g.n), 0);
	cr_assert_eq(vhu_vq_create(f->m, &f->vq), 0);
	vhu_vq_set_features(f->vq, F(VHU_F_VERSION_1));
	cr_assert_eq(vhu_vq_set_num(f->vq, NUM), 0);
	addr = fg_vq_addr(&f->q);
	cr_assert_eq(vhu_vq_set_addr(f->vq, &addr), 0);
	cr_assert_eq(vhu_vq_set_base(f->vq, (uint32_t)base), 0);
	cr_assert_eq(vhu_vq_set_inflight(f->vq, &f->a->q, NUM), 0);
}

static void
vq_close(struct fx *f)
{
	vhu_vq_destroy(f->vq);
	vhu_mem_destroy(f->m);
	f->vq = NULL;
	f->m = NULL;
}

static void
fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	cr_assert_eq(fg_init(&f->g, layout, 1), 0);
	cr_assert_eq(fg_vq_init(&f->q, &f->g, NUM, 0x0, 0x1000, 0x2000), 0);
	f->a = calloc(1, sizeof(*f->a));
	cr_assert_not_null(f->a);
	vhu_inflight_region_init(f->a, 1, NUM);
	/* Request i: one readable buffer of 16 bytes, one writable of 1. */
	for (unsigned int i = 0; i < NUM; i += 2) {
		fg_desc(&f->q, i, BUF_GPA + i * 64, 16, VHU_VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
		fg_desc(&f->q, i + 1, BUF_GPA + i * 64 + 32, 1, VHU_VIRTQ_DESC_F_WRITE, 0);
	}
}

static void
fx_fini(struct fx *f)
{
	if (f->vq != NULL) {
		vq_close(f);
	}
	free(f->a);
	fg_fini(&f->g);
}

static int
pop(struct fx *f, unsigned int slot)
{
	return vhu_vq_pop(f->vq, &f->req[slot], f->iov, 8);
}

Test(inflight, pop_marks_push_clears)
{
	struct fx f;
	uint32_t id, len;

	fx_init(&f);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(f.a->q.version, VHU_INFLIGHT_VERSION, "first start adopts the area");
	fg_avail(&f.q, 4);
	fg_avail(&f.q, 0);
	cr_assert_eq(pop(&f, 0), 1);
	cr_assert_eq(pop(&f, 1), 1);
	cr_assert_eq(f.a->q.desc[4].inflight, 1);
	cr_assert_eq(f.a->q.desc[0].inflight, 1);
	cr_assert_lt(f.a->q.desc[4].counter, f.a->q.desc[0].counter);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req[1], 1), 0);
	cr_assert_eq(f.a->q.desc[0].inflight, 0);
	cr_assert_eq(f.a->q.desc[4].inflight, 1);
	cr_assert_eq(f.a->q.last_batch_head, 0);
	cr_assert_eq(f.a->q.used_idx, 1);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 0);
	/* Dropped is not completed: it stays for the next start. */
	vhu_vq_drop(f.vq, &f.req[0]);
	cr_assert_eq(f.a->q.desc[4].inflight, 1);
	cr_assert_eq(f.a->q.used_idx, 1);
	fx_fini(&f);
}

Test(inflight, restart_resubmits_in_order_once_then_new_requests)
{
	struct fx f;
	uint32_t id, len;
	uint16_t heads[] = { 6, 2, 0, 4 };

	fx_init(&f);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	for (unsigned int i = 0; i < 4; i++) {
		fg_avail(&f.q, heads[i]);
		cr_assert_eq(pop(&f, i), 1);
	}
	/* Head 2 completes; 6, 0, 4 are held when the back-end dies. */
	cr_assert_eq(vhu_vq_push(f.vq, &f.req[1], 1), 0);
	for (unsigned int i = 0; i < 4; i++) {
		if (i != 1) {
			vhu_vq_drop(f.vq, &f.req[i]);
		}
	}
	vq_close(&f);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 2);

	/* The next back-end: QEMU's SET_VRING_BASE is the used index (1), not 4. */
	vq_open(&f, 1);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(vhu_vq_resubmit_pending(f.vq), 3);
	cr_assert(vhu_vq_notify_enable(f.vq), "resubmits count as available");
	cr_assert_eq(pop(&f, 0), 1);
	cr_assert_eq(f.req[0].head, 6);
	cr_assert_eq(f.req[0].nread, 1);
	cr_assert_eq(f.req[0].nwrite, 1);
	cr_assert_eq(pop(&f, 1), 1);
	cr_assert_eq(f.req[1].head, 0);
	cr_assert_eq(pop(&f, 2), 1);
	cr_assert_eq(f.req[2].head, 4);
	cr_assert_eq(pop(&f, 3), 0, "each once, and nothing new yet");
	/* A new request after them comes from avail index 4. */
	fg_avail(&f.q, 2);
	cr_assert_eq(pop(&f, 3), 1);
	cr_assert_eq(f.req[3].head, 2);
	cr_assert_gt(f.a->q.desc[2].counter, f.a->q.desc[4].counter, "counters go on");
	for (unsigned int i = 0; i < 4; i++) {
		cr_assert_eq(vhu_vq_push(f.vq, &f.req[i], 1), 0);
	}
	for (unsigned int i = 0; i < 4; i++) {
		static const uint32_t order[] = { 6, 0, 4, 2 };

		cr_assert(fg_used(&f.q, &id, &len));
		cr_assert_eq(id, order[i]);
	}
	cr_assert_not(fg_used(&f.q, &id, &len));
	for (unsigned int i = 0; i < NUM; i++) {
		cr_assert_eq(f.a->q.desc[i].inflight, 0, "desc %u", i);
	}
	cr_assert_eq(f.a->q.used_idx, 5);
	cr_assert_eq(vhu_vq_get_base(f.vq), 5);
	fx_fini(&f);
}

Test(inflight, restart_after_a_push_cut_short_completes_once)
{
	struct fx f;
	uint32_t id, len;

	fx_init(&f);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	fg_avail(&f.q, 2);
	fg_avail(&f.q, 6);
	cr_assert_eq(pop(&f, 0), 1);
	cr_assert_eq(pop(&f, 1), 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req[0], 1), 0);
	/* Death between the used index store and the flag clear: undo the last two writes. */
	f.a->q.desc[2].inflight = 1;
	f.a->q.used_idx = 0;
	vhu_vq_drop(f.vq, &f.req[1]);
	vq_close(&f);

	vq_open(&f, 1);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(vhu_vq_resubmit_pending(f.vq), 1, "head 2 was used already");
	cr_assert_eq(pop(&f, 0), 1);
	cr_assert_eq(f.req[0].head, 6);
	cr_assert_eq(f.a->q.desc[2].inflight, 0);
	cr_assert_eq(f.a->q.used_idx, 1);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req[0], 1), 0);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 2);
	cr_assert(fg_used(&f.q, &id, &len));
	cr_assert_eq(id, 6);
	cr_assert_not(fg_used(&f.q, &id, &len));
	fx_fini(&f);
}

Test(inflight, hostile_area_breaks_the_queue_at_start)
{
	struct fx f;

	fx_init(&f);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	vq_close(&f);
	f.a->q.desc[3].inflight = 9;
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), -VHU_EINFLIGHT);
	cr_assert_eq(vhu_vq_error(f.vq), -VHU_EINFLIGHT);
	cr_assert_eq(pop(&f, 0), -VHU_EINFLIGHT);
	vq_close(&f);

	/* An area for another queue size. */
	f.a->q.desc[3].inflight = 0;
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_set_inflight(f.vq, &f.a->q, 4), 0);
	cr_assert_eq(vhu_vq_start(f.vq), -VHU_EINFLIGHT);
	fx_fini(&f);
}

Test(inflight, resubmitted_chain_is_checked_like_any_other)
{
	struct fx f;

	fx_init(&f);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	fg_avail(&f.q, 2);
	cr_assert_eq(pop(&f, 0), 1);
	vhu_vq_drop(f.vq, &f.req[0]);
	vq_close(&f);
	/* The guest rewrote the chain into a loop meanwhile. */
	fg_desc(&f.q, 3, BUF_GPA, 1, VHU_VIRTQ_DESC_F_WRITE | VHU_VIRTQ_DESC_F_NEXT, 3);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(pop(&f, 0), -VHU_EVQLOOP);
	fx_fini(&f);
}

Test(inflight, attach_rules)
{
	struct fx f;

	fx_init(&f);
	vq_open(&f, 0);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(vhu_vq_set_inflight(f.vq, NULL, 0), -EBUSY, "started");
	(void)vhu_vq_get_base(f.vq);
	fg_avail(&f.q, 0);
	cr_assert_eq(vhu_vq_set_inflight(f.vq, NULL, 0), 0);
	/* Detached: pops and pushes leave the area alone. */
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(pop(&f, 0), 1);
	cr_assert_eq(f.a->q.desc[0].inflight, 0);
	cr_assert_eq(vhu_vq_set_inflight(f.vq, &f.a->q, NUM), -EBUSY);
	cr_assert_eq(vhu_vq_push(f.vq, &f.req[0], 1), 0);
	vhu_vq_reset(f.vq);
	cr_assert_eq(vhu_vq_set_inflight(f.vq, &f.a->q, NUM), 0, "after a reset");
	fx_fini(&f);
}

Test(inflight, fresh_area_keeps_the_front_end_base)
{
	struct fx f;

	fx_init(&f);
	/* The ring was used before the area existed: used index 5, base 6. */
	f.q.used->idx = 5;
	f.q.avail_idx = 6;
	vq_open(&f, 6);
	cr_assert_eq(vhu_vq_start(f.vq), 0);
	cr_assert_eq(vhu_vq_resubmit_pending(f.vq), 0);
	cr_assert_eq(f.a->q.used_idx, 5, "the area adopts the ring's used index");
	fg_avail(&f.q, 2);
	cr_assert_eq(pop(&f, 0), 1);
	cr_assert_eq(f.req[0].head, 2, "avail index 6, as the front-end said");
	cr_assert_eq(vhu_vq_push(f.vq, &f.req[0], 1), 0);
	cr_assert_eq(vhu_vq_get_base(f.vq), 7);
	fx_fini(&f);
}
