/* SPDX-License-Identifier: MIT */
/*
 * fuzz_virtq: the device side of a split virtqueue walking whatever the
 * input writes into a fake guest's memory (tests/fake_guest.c): three
 * memfd regions, R0 at gpa 0 (64 KiB, the rings), R1 adjacent to it
 * (16 KiB), R2 after a gap (16 KiB, at a memfd offset that is not a page).
 *
 * Input (every byte string is valid; a short input reads as zeros):
 *   flags   bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 allow op 11
 *   numsel  queue size 1 << (numsel % 9): 1..256
 *   iovsel  iovec array of 1 + iovsel % 32 entries
 *   nops    at most 64 operations
 *   base    u16, SET_VRING_BASE (the used idx starts equal)
 *   ops     nops bytes: op % 12: 0-5 pop, 6 push the oldest request
 *           (len = op byte * 17), 7 drop the oldest, 8 need_call,
 *           9 notify_disable, 10 notify_enable, 11 REM_MEM_REG R2 then
 *           ADD_MEM_REG it again (a new mapping) while requests point in it
 *   guest   the descriptor table and avail ring (num * 16 + 6 + 2 * num
 *           bytes at gpa 0), then bytes for R0 from 0x3000 on, then R1,
 *           then R2 (indirect tables and buffers)
 *
 * Checked beyond "no crash": every iovec of a popped request lies inside
 * one region's device mapping; lengths add up; a pop fails only with a
 * guest fault, and the queue then gives that same fault again; a request
 * whose region was removed can still be written until it is pushed
 * (a deferred unmap that came early is a SIGSEGV); once every request is
 * done and the queue destroyed, no unmap is still deferred; no fd is
 * leaked or closed twice (close() is wrapped).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/guest_mem.h>
#include <vhu/vq.h>

#include "../fake_guest.h"
#include "fuzz_common.h"
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NREG		3u
#define DATA_OFF	0x3000u
#define MAX_INFLIGHT	8u
#define MAX_IOV		32u
#define MAX_OPS		64u
/* The used ring of the largest queue ends right below the data area. */
#define USED_GPA	((DATA_OFF - 4u - 8u * 256u - 2u) & ~3u)

static const struct fg_layout layout[NREG] = {
	{ .gpa = 0, .size = 0x10000, .mmap_offset = 0 },
	{ .gpa = 0x10000, .size = 0x4000, .mmap_offset = 0 },
	{ .gpa = 0x40000, .size = 0x4000, .mmap_offset = 0x800 },
};

static struct fake_guest g;
static struct vhu_mem *mem;

struct slot {
	struct vhu_vq_req req;
	struct iovec iov[MAX_IOV];
};

static void
setup_once(void)
{
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS];

	if (mem != NULL) {
		return;
	}
	FZ_CHECK(fg_init(&g, layout, NREG) == 0, "fake guest");
	FZ_CHECK(vhu_mem_create(&mem) == 0, "vhu_mem_create");
	FZ_CHECK(fg_mem_table(&g, &t, fds) == 0, "table");
	FZ_CHECK(vhu_mem_set_table(mem, &t, fds, NREG) == 0, "set_table");
}

/* Is [p, p + len) inside the device's mapping of one region? */
static bool
inside_one_region(const void *p, size_t len)
{
	unsigned int i;

	for (i = 0; i < NREG; i++) {
		const uint8_t *base = vhu_mem_gpa(mem, g.r[i].gpa, g.r[i].size);

		if (base != NULL && (const uint8_t *)p >= base &&
		    (size_t)((const uint8_t *)p - base) < g.r[i].size &&
		    len <= g.r[i].size - (size_t)((const uint8_t *)p - base)) {
			return true;
		}
	}
	return false;
}

static void
check_req(const struct vhu_vq_req *req, unsigned int iov_max)
{
	uint64_t rl = 0, wl = 0;
	unsigned int i;

	FZ_CHECK(req->nread + req->nwrite <= iov_max, "%u + %u iovecs in %u", req->nread,
		 req->nwrite, iov_max);
	for (i = 0; i < req->nread + req->nwrite; i++) {
		const struct iovec *v = &req->iov[i];

		FZ_CHECK(v->iov_len > 0, "empty iovec %u", i);
		FZ_CHECK(inside_one_region(v->iov_base, v->iov_len), "iovec %u (%p, %zu) outside",
			 i, v->iov_base, v->iov_len);
		if (i < req->nread) {
			rl += v->iov_len;
		} else {
			wl += v->iov_len;
		}
	}
	FZ_CHECK(rl == req->read_len && wl == req->write_len, "lengths %llu/%llu vs %llu/%llu",
		 (unsigned long long)rl, (unsigned long long)wl,
		 (unsigned long long)req->read_len, (unsigned long long)req->write_len);
}

/* Touch every byte the request may use: read the readable, write the writable. */
static void
touch(const struct vhu_vq_req *req)
{
	volatile uint8_t sink = 0;
	unsigned int i;

	for (i = 0; i < req->nread + req->nwrite; i++) {
		uint8_t *p = req->iov[i].iov_base;
		size_t n = req->iov[i].iov_len;

		if (i < req->nread) {
			sink ^= p[0];
			sink ^= p[n - 1];
		} else {
			p[0] = 0xa5;
			p[n - 1] = 0x5a;
		}
	}
	(void)sink;
}

static void
guest_write(struct fz_reader *r, unsigned int num)
{
	size_t ring = 16u * num + 6u + 2u * num, n, i;
	uint8_t *p;

	for (i = 0; i < NREG; i++) {
		memset(g.r[i].map + g.r[i].mmap_offset, 0, g.r[i].size);
	}
	n = r->n < ring ? r->n : ring;
	memcpy(fg_ptr(&g, 0, ring), r->p, n);
	r->p += n;
	r->n -= n;
	for (i = 0; i < NREG && r->n > 0; i++) {
		uint64_t start = i == 0 ? DATA_OFF : 0;
		size_t room = g.r[i].size - start;

		n = r->n < room ? r->n : room;
		p = fg_ptr(&g, g.r[i].gpa + start, n);
		memcpy(p, r->p, n);
		r->p += n;
		r->n -= n;
	}
}

static void
remove_and_readd_r2(void)
{
	struct vhu_mem_region d = fg_region_desc(&g, 2);
	int fd = dup(g.r[2].fd);

	FZ_CHECK(fd >= 0, "dup");
	FZ_CHECK(vhu_mem_remove_region(mem, &d) == 0, "REM_MEM_REG");
	FZ_CHECK(vhu_mem_add_region(mem, &d, fd) == 0, "ADD_MEM_REG");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_reader r = { data, size };
	struct slot slots[MAX_INFLIGHT];
	unsigned int head = 0, count = 0;
	uint8_t ops[MAX_OPS];
	struct vhu_vring_addr a = { 0 };
	struct vhu_vq *vq;
	unsigned int num, iov_max, nops, i;
	uint64_t features = 1ull << VHU_F_VERSION_1;
	uint8_t flags;
	uint16_t base;
	int fds_before, err = 0, rc;
	struct vhu_virtq_used *used;

	setup_once();
	fds_before = fz_fd_count();
	flags = fz_u8(&r);
	num = 1u << (fz_u8(&r) % 9);
	iov_max = 1u + fz_u8(&r) % MAX_IOV;
	nops = fz_u8(&r) % (MAX_OPS + 1);
	base = (uint16_t)(fz_u8(&r) | (fz_u8(&r) << 8));
	for (i = 0; i < nops; i++) {
		ops[i] = fz_u8(&r);
	}
	if (flags & 1u) {
		features |= 1ull << VHU_F_RING_INDIRECT_DESC;
	}
	if (flags & 2u) {
		features |= 1ull << VHU_F_RING_EVENT_IDX;
	}
	guest_write(&r, num);
	/* The used ring (device-owned) between the avail ring and the data area. */
	used = fg_ptr(&g, USED_GPA, vhu_virtq_used_size(num));
	FZ_CHECK(used != NULL, "used ring");
	memset(used, 0, vhu_virtq_used_size(num));
	used->idx = base;

	a.desc = fg_uva(&g, 0);
	a.avail = fg_uva(&g, 16u * num);
	a.used = fg_uva(&g, USED_GPA);
	FZ_CHECK(vhu_vq_create(mem, &vq) == 0, "vq_create");
	vhu_vq_set_features(vq, features);
	FZ_CHECK(vhu_vq_set_num(vq, num) == 0, "set_num %u", num);
	FZ_CHECK(vhu_vq_set_addr(vq, &a) == 0, "set_addr");
	FZ_CHECK(vhu_vq_set_base(vq, base) == 0, "set_base");
	FZ_CHECK(vhu_vq_start(vq) == 0, "start");

	for (i = 0; i < nops; i++) {
		uint8_t op = ops[i];

		switch (op % 12) {
		case 0: case 1: case 2: case 3: case 4: case 5: {
			struct slot *s;

			if (count == MAX_INFLIGHT) {
				break;
			}
			s = &slots[(head + count) % MAX_INFLIGHT];
			rc = vhu_vq_pop(vq, &s->req, s->iov, iov_max);
			if (rc == 1) {
				check_req(&s->req, iov_max);
				touch(&s->req);
				count++;
			} else if (rc < 0) {
				FZ_CHECK(vhu_err_is_guest_fault(rc), "pop: %s", vhu_errname(rc));
				FZ_CHECK(err == 0 || rc == err, "a second fault %s after %s",
					 vhu_errname(rc), vhu_errname(err));
				FZ_CHECK(vhu_vq_error(vq) == rc, "error not kept");
				err = rc;
			} else {
				FZ_CHECK(rc == 0, "pop returned %d", rc);
				FZ_CHECK(err == 0, "a broken queue popped nothing instead of failing");
			}
			break;
		}
		case 6:
		case 7:
			if (count == 0) {
				break;
			}
			/* Requests may still be written until they are completed. */
			touch(&slots[head].req);
			if (op % 12 == 6) {
				FZ_CHECK(vhu_vq_push(vq, &slots[head].req, op * 17u) == 0, "push");
			} else {
				vhu_vq_drop(vq, &slots[head].req);
			}
			head = (head + 1) % MAX_INFLIGHT;
			count--;
			break;
		case 8:
			(void)vhu_vq_need_call(vq);
			break;
		case 9:
			vhu_vq_notify_disable(vq);
			break;
		case 10:
			(void)vhu_vq_notify_enable(vq);
			break;
		case 11:
			if (flags & 4u) {
				unsigned int k;

				remove_and_readd_r2();
				for (k = 0; k < count; k++) {
					touch(&slots[(head + k) % MAX_INFLIGHT].req);
				}
			}
			break;
		}
	}
	FZ_CHECK(vhu_vq_inflight(vq) == count, "inflight %u, test holds %u",
		 vhu_vq_inflight(vq), count);
	while (count > 0) {
		touch(&slots[head].req);
		FZ_CHECK(vhu_vq_push(vq, &slots[head].req, 0) == 0, "final push");
		head = (head + 1) % MAX_INFLIGHT;
		count--;
	}
	(void)vhu_vq_get_base(vq);
	vhu_vq_destroy(vq);
	FZ_CHECK(vhu_mem_deferred(mem) == 0, "%u unmaps still deferred", vhu_mem_deferred(mem));
	FZ_CHECK(vhu_mem_nregions(mem) == NREG, "regions: %u", vhu_mem_nregions(mem));
	FZ_CHECK(fz_fd_count() == fds_before, "fds: %d before, %d after", fds_before,
		 fz_fd_count());
	return 0;
}
