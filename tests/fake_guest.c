/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "fake_guest.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int
fg_init(struct fake_guest *g, const struct fg_layout *layout, unsigned int n)
{
	unsigned int i;

	memset(g, 0, sizeof(*g));
	if (n > FG_MAX_REGIONS) {
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		struct fg_region *r = &g->r[i];
		void *p;

		r->fd = -1;
		r->gpa = layout[i].gpa;
		r->size = layout[i].size;
		r->mmap_offset = layout[i].mmap_offset;
		r->uva = FG_UVA_BASE(i) + (layout[i].mmap_offset & 0xfffu);
		r->map_len = r->mmap_offset + r->size;
		r->fd = memfd_create("fake-guest", MFD_CLOEXEC);
		g->n = i + 1;
		if (r->fd < 0 || ftruncate(r->fd, (off_t)r->map_len) < 0) {
			int err = -errno;

			fg_fini(g);
			return err;
		}
		p = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
		if (p == MAP_FAILED) {
			int err = -errno;

			fg_fini(g);
			return err;
		}
		r->map = p;
	}
	return 0;
}

void
fg_fini(struct fake_guest *g)
{
	unsigned int i;

	for (i = 0; i < g->n; i++) {
		if (g->r[i].map != NULL) {
			munmap(g->r[i].map, g->r[i].map_len);
			g->r[i].map = NULL;
		}
		if (g->r[i].fd >= 0) {
			close(g->r[i].fd);
			g->r[i].fd = -1;
		}
	}
	g->n = 0;
}

struct vhu_mem_region
fg_region_desc(const struct fake_guest *g, unsigned int i)
{
	struct vhu_mem_region d = {
		.guest_phys_addr = g->r[i].gpa,
		.size = g->r[i].size,
		.user_addr = g->r[i].uva,
		.mmap_offset = g->r[i].mmap_offset,
	};
	return d;
}

int
fg_mem_table(const struct fake_guest *g, struct vhu_mem_table *t, int *fds)
{
	unsigned int i;

	memset(t, 0, sizeof(*t));
	t->nregions = g->n;
	for (i = 0; i < g->n; i++) {
		t->regions[i] = fg_region_desc(g, i);
		fds[i] = dup(g->r[i].fd);
		if (fds[i] < 0) {
			int err = -errno;

			while (i-- > 0) {
				close(fds[i]);
			}
			return err;
		}
	}
	return 0;
}

void *
fg_ptr(const struct fake_guest *g, uint64_t gpa, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < g->n; i++) {
		const struct fg_region *r = &g->r[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa)) {
			return r->map + r->mmap_offset + (gpa - r->gpa);
		}
	}
	return NULL;
}

uint64_t
fg_uva(const struct fake_guest *g, uint64_t gpa)
{
	unsigned int i;

	for (i = 0; i < g->n; i++) {
		if (gpa >= g->r[i].gpa && gpa - g->r[i].gpa < g->r[i].size) {
			return g->r[i].uva + (gpa - g->r[i].gpa);
		}
	}
	return 0;
}

int
fg_vq_init(struct fg_vq *q, const struct fake_guest *g, unsigned int num, uint64_t desc_gpa,
	   uint64_t avail_gpa, uint64_t used_gpa)
{
	memset(q, 0, sizeof(*q));
	q->g = g;
	q->num = num;
	q->desc_gpa = desc_gpa;
	q->avail_gpa = avail_gpa;
	q->used_gpa = used_gpa;
	q->desc = fg_ptr(g, desc_gpa, vhu_virtq_desc_size(num));
	q->avail = fg_ptr(g, avail_gpa, vhu_virtq_avail_size(num));
	q->used = fg_ptr(g, used_gpa, vhu_virtq_used_size(num));
	if (q->desc == NULL || q->avail == NULL || q->used == NULL) {
		return -EINVAL;
	}
	memset(q->desc, 0, vhu_virtq_desc_size(num));
	memset(q->avail, 0, vhu_virtq_avail_size(num));
	memset(q->used, 0, vhu_virtq_used_size(num));
	return 0;
}

struct vhu_vring_addr
fg_vq_addr(const struct fg_vq *q)
{
	struct vhu_vring_addr a = {
		.index = 0,
		.flags = 0,
		.desc = fg_uva(q->g, q->desc_gpa),
		.used = fg_uva(q->g, q->used_gpa),
		.avail = fg_uva(q->g, q->avail_gpa),
	};
	return a;
}

static void
desc_write(void *at, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vhu_virtq_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };

	memcpy(at, &d, sizeof(d));
}

void
fg_desc(struct fg_vq *q, unsigned int i, uint64_t addr, uint32_t len, uint16_t flags,
	uint16_t next)
{
	desc_write(&q->desc[i], addr, len, flags, next);
}

bool
fg_indirect_desc(const struct fake_guest *g, uint64_t table_gpa, unsigned int i, uint64_t addr,
		 uint32_t len, uint16_t flags, uint16_t next)
{
	void *at = fg_ptr(g, table_gpa + 16u * i, 16);

	if (at == NULL) {
		return false;
	}
	desc_write(at, addr, len, flags, next);
	return true;
}

void
fg_avail(struct fg_vq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx % q->num] = head;
	q->avail_idx++;
	__atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
}

void
fg_avail_set_idx(struct fg_vq *q, uint16_t idx)
{
	q->avail_idx = idx;
	__atomic_store_n(&q->avail->idx, idx, __ATOMIC_RELEASE);
}

bool
fg_used(struct fg_vq *q, uint32_t *id, uint32_t *len)
{
	uint16_t idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
	struct vhu_virtq_used_elem *e;

	if (idx == q->last_used) {
		return false;
	}
	e = &q->used->ring[q->last_used % q->num];
	*id = e->id;
	*len = e->len;
	q->last_used++;
	return true;
}

int
fg_map_count(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (f == NULL) {
		return -errno;
	}
	/*
	 * File-backed lines only (memfd guest memory, what a device maps): the
	 * allocator (ASan's above all) maps anonymous memory as it grows, and
	 * a new size class is no leak.
	 */
	while (fgets(line, sizeof(line), f) != NULL) {
		char path[256] = "";

		if (sscanf(line, "%*s %*s %*s %*s %*s %255s", path) == 1 && path[0] != '[') {
			n++;
		}
	}
	fclose(f);
	return n;
}
