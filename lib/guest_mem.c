/* SPDX-License-Identifier: MIT */
/*
 * Guest memory: region table, mappings, translation, and the epochs that
 * defer unmapping (the rules are in <vhu/guest_mem.h>).
 *
 * Security model: region descriptions come from the front-end, addresses
 * to translate from the guest. Every sum is checked before it is formed,
 * a region's file must cover the region when it is mapped, and a
 * translation is answered from one region or not at all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/guest_mem.h>

#include "mem_guard.h"

struct region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
	uint8_t *host;		/* local address of gpa */
	void *map;		/* the mapping: from mmap_offset rounded down to a page */
	size_t map_len;
	int fd;
	int lost;		/* set by the SIGBUS guard: now zero pages (atomic) */
	struct mem_guard_slot *guard;	/* registered for the SIGBUS guard */
	struct region *next;	/* on an epoch's retired list */
};

struct vhu_mem_epoch {
	uint64_t holds;
	struct region *retired;	/* removed while this epoch was current */
	struct vhu_mem_epoch *next;	/* the next newer epoch */
};

struct vhu_mem {
	unsigned int n;
	unsigned int last;	/* index of the last GPA hit */
	unsigned int ndeferred;
	int lost;		/* a region (in the table or deferred) was lost (atomic) */
	uint64_t gen;
	struct vhu_mem_epoch *oldest;	/* oldest epoch still needed */
	struct vhu_mem_epoch *cur;	/* the epoch vhu_mem_hold hands out */
	struct region *r[VHU_MEM_MAX_SLOTS];	/* sorted by gpa, no overlaps */
};

static void
region_free(struct region *r)
{
	if (r == NULL) {
		return;
	}
	if (r->map != NULL) {
		/* Out of the guard's registry first: no handler may remap it after munmap. */
		vhu__mem_guard_del(r->guard);
		munmap(r->map, r->map_len);
	}
	if (r->fd >= 0) {
		close(r->fd);
	}
	free(r);
}

/* Last byte of a range known not to wrap. */
static uint64_t
last_byte(uint64_t start, uint64_t size)
{
	return start + (size - 1);
}

static bool
wraps(uint64_t start, uint64_t size)
{
	return size - 1 > UINT64_MAX - start;
}

/* Map one region of m; fd is consumed in every case. */
static int
region_map(struct vhu_mem *m, const struct vhu_mem_region *d, int fd, struct region **out)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t off, delta;
	struct region *r;
	struct stat st;
	void *p;
	int err;

	*out = NULL;
	if (fd < 0) {
		return -EBADF;
	}
	if (d->size == 0 || wraps(d->guest_phys_addr, d->size) || wraps(d->user_addr, d->size) ||
	    wraps(d->mmap_offset, d->size)) {
		err = -VHU_EMEMREGION;
		goto fail;
	}
	off = d->mmap_offset & ~(page - 1);
	delta = d->mmap_offset - off;
	if (off > (uint64_t)INT64_MAX || d->size > SIZE_MAX - delta - page) {
		err = -VHU_EMEMREGION;
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto fail;
	}
	/* A file shorter than the region would raise SIGBUS on access. */
	if (S_ISREG(st.st_mode) &&
	    (st.st_size < 0 || (uint64_t)st.st_size < d->mmap_offset + d->size)) {
		err = -VHU_EMEMREGION;
		goto fail;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		err = -ENOMEM;
		goto fail;
	}
	p = mmap(NULL, (size_t)(d->size + delta), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		 fd, (off_t)off);
	if (p == MAP_FAILED) {
		err = -errno;
		free(r);
		goto fail;
	}
	r->gpa = d->guest_phys_addr;
	r->size = d->size;
	r->uva = d->user_addr;
	r->mmap_offset = d->mmap_offset;
	r->map = p;
	r->map_len = (size_t)(d->size + delta);
	r->host = (uint8_t *)p + delta;
	r->fd = fd;
	err = vhu__mem_guard_add(r->map, r->map_len, &r->lost, &m->lost, &r->guard);
	if (err < 0) {
		munmap(p, r->map_len);
		free(r);
		goto fail;
	}
	*out = r;
	return 0;
fail:
	close(fd);
	return err;
}

int
vhu_mem_create(struct vhu_mem **out)
{
	struct vhu_mem *m;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		return -ENOMEM;
	}
	m->cur = calloc(1, sizeof(*m->cur));
	if (m->cur == NULL) {
		free(m);
		return -ENOMEM;
	}
	m->oldest = m->cur;
	*out = m;
	return 0;
}

static void
retired_free(struct vhu_mem *m, struct vhu_mem_epoch *e)
{
	while (e->retired != NULL) {
		struct region *r = e->retired;

		e->retired = r->next;
		region_free(r);
		m->ndeferred--;
	}
}

void
vhu_mem_destroy(struct vhu_mem *m)
{
	unsigned int i;

	if (m == NULL) {
		return;
	}
	for (i = 0; i < m->n; i++) {
		region_free(m->r[i]);
	}
	while (m->oldest != NULL) {
		struct vhu_mem_epoch *e = m->oldest;

		retired_free(m, e);
		m->oldest = e->next;
		free(e);
	}
	free(m);
}

/* Free the regions of closed epochs that neither they nor older ones still need. */
static void
reap(struct vhu_mem *m)
{
	while (m->oldest != m->cur && m->oldest->holds == 0) {
		struct vhu_mem_epoch *e = m->oldest;

		retired_free(m, e);
		m->oldest = e->next;
		free(e);
	}
}

/*
 * Before regions leave the table: if anything may still point into them,
 * a new epoch is needed (allocated here, so that failure changes nothing).
 * \return 0 with *ne set or NULL (regions may be freed at once), or -ENOMEM.
 */
static int
retire_prepare(struct vhu_mem *m, struct vhu_mem_epoch **ne)
{
	*ne = NULL;
	if (m->oldest == m->cur && m->cur->holds == 0) {
		return 0;
	}
	*ne = calloc(1, sizeof(**ne));
	return *ne != NULL ? 0 : -ENOMEM;
}

/* Dispose of a region that has left the table. */
static void
retire(struct vhu_mem *m, struct region *r, bool defer)
{
	if (!defer) {
		region_free(r);
		return;
	}
	r->next = m->cur->retired;
	m->cur->retired = r;
	m->ndeferred++;
}

/* After the regions have left the table: close the epoch, if one was opened. */
static void
retire_commit(struct vhu_mem *m, struct vhu_mem_epoch *ne)
{
	m->gen++;
	m->last = 0;
	if (ne != NULL) {
		m->cur->next = ne;
		m->cur = ne;
		reap(m);
	}
}

/* Index of the last region whose gpa <= addr, or -1. */
static int
find_floor(const struct vhu_mem *m, uint64_t addr)
{
	int lo = 0, hi = (int)m->n - 1, found = -1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;

		if (m->r[mid]->gpa <= addr) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return found;
}

static int
cmp_region_gpa(const void *a, const void *b)
{
	const struct region *x = *(struct region *const *)a;
	const struct region *y = *(struct region *const *)b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int
vhu_mem_set_table(struct vhu_mem *m, const struct vhu_mem_table *table, const int *fds,
		  unsigned int nfds)
{
	struct region *nr[VHU_MAX_MEM_REGIONS] = { NULL };
	struct vhu_mem_epoch *ne;
	unsigned int i, n = table->nregions;
	int err = 0;

	if (n == 0 || n > VHU_MAX_MEM_REGIONS || nfds != n) {
		for (i = 0; i < nfds; i++) {
			close(fds[i]);
		}
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		int rc = region_map(m, &table->regions[i], fds[i], &nr[i]);

		if (rc < 0 && err == 0) {
			err = rc;
		}
	}
	if (err == 0) {
		qsort(nr, n, sizeof(nr[0]), cmp_region_gpa);
		for (i = 1; i < n; i++) {
			if (nr[i]->gpa <= last_byte(nr[i - 1]->gpa, nr[i - 1]->size)) {
				err = -VHU_EMEMREGION;
				break;
			}
		}
	}
	if (err == 0) {
		err = retire_prepare(m, &ne);
	}
	if (err < 0) {
		for (i = 0; i < n; i++) {
			region_free(nr[i]);
		}
		return err;
	}
	for (i = 0; i < m->n; i++) {
		retire(m, m->r[i], ne != NULL);
	}
	memcpy(m->r, nr, n * sizeof(nr[0]));
	m->n = n;
	retire_commit(m, ne);
	return 0;
}

int
vhu_mem_add_region(struct vhu_mem *m, const struct vhu_mem_region *region, int fd)
{
	struct region *r;
	int at, rc;

	if (m->n >= VHU_MEM_MAX_SLOTS) {
		if (fd >= 0) {
			close(fd);
		}
		return -VHU_EMEMSLOTS;
	}
	rc = region_map(m, region, fd, &r);
	if (rc < 0) {
		return rc;
	}
	at = find_floor(m, r->gpa);
	if ((at >= 0 && r->gpa <= last_byte(m->r[at]->gpa, m->r[at]->size)) ||
	    ((unsigned int)(at + 1) < m->n && m->r[at + 1]->gpa <= last_byte(r->gpa, r->size))) {
		region_free(r);
		return -VHU_EMEMREGION;
	}
	at++;
	memmove(&m->r[at + 1], &m->r[at], (m->n - (unsigned int)at) * sizeof(m->r[0]));
	m->r[at] = r;
	m->n++;
	m->last = 0;
	/* Nothing left the table: pointers stay valid, the generation stays. */
	return 0;
}

int
vhu_mem_remove_region(struct vhu_mem *m, const struct vhu_mem_region *region)
{
	struct vhu_mem_epoch *ne;
	struct region *r;
	int at, rc;

	at = find_floor(m, region->guest_phys_addr);
	if (at < 0) {
		return -VHU_EMEMREGION;
	}
	r = m->r[at];
	if (r->gpa != region->guest_phys_addr || r->size != region->size ||
	    r->uva != region->user_addr) {
		return -VHU_EMEMREGION;
	}
	rc = retire_prepare(m, &ne);
	if (rc < 0) {
		return rc;
	}
	memmove(&m->r[at], &m->r[at + 1], (m->n - (unsigned int)at - 1) * sizeof(m->r[0]));
	m->n--;
	retire(m, r, ne != NULL);
	retire_commit(m, ne);
	return 0;
}

int
vhu_mem_reset(struct vhu_mem *m)
{
	struct vhu_mem_epoch *ne;
	unsigned int i;
	int rc;

	if (m->n == 0) {
		return 0;
	}
	rc = retire_prepare(m, &ne);
	if (rc < 0) {
		return rc;
	}
	for (i = 0; i < m->n; i++) {
		retire(m, m->r[i], ne != NULL);
	}
	m->n = 0;
	retire_commit(m, ne);
	return 0;
}

unsigned int
vhu_mem_nregions(const struct vhu_mem *m)
{
	return m->n;
}

uint64_t
vhu_mem_generation(const struct vhu_mem *m)
{
	return m->gen;
}

int
vhu_mem_error(const struct vhu_mem *m)
{
	return __atomic_load_n(&m->lost, __ATOMIC_ACQUIRE) ? -VHU_EMEMLOST : 0;
}

unsigned int
vhu_mem_deferred(const struct vhu_mem *m)
{
	return m->ndeferred;
}

/* The pointer for [addr, addr + len) if it lies inside [start, start + size). */
static void *
inside(const struct region *r, uint64_t start, uint64_t addr, uint64_t len)
{
	uint64_t off;

	if (addr < start || __atomic_load_n(&r->lost, __ATOMIC_ACQUIRE)) {
		return NULL;
	}
	off = addr - start;
	if (off >= r->size || len > r->size - off) {
		return NULL;
	}
	return r->host + off;
}

void *
vhu_mem_gpa(struct vhu_mem *m, uint64_t gpa, uint64_t len)
{
	void *p;
	int at;

	if (m->n == 0) {
		return NULL;
	}
	p = inside(m->r[m->last], m->r[m->last]->gpa, gpa, len);
	if (p != NULL) {
		return p;
	}
	at = find_floor(m, gpa);
	if (at < 0) {
		return NULL;
	}
	p = inside(m->r[at], m->r[at]->gpa, gpa, len);
	if (p != NULL) {
		m->last = (unsigned int)at;
	}
	return p;
}

void *
vhu_mem_uva(struct vhu_mem *m, uint64_t uva, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < m->n; i++) {
		void *p = inside(m->r[i], m->r[i]->uva, uva, len);

		if (p != NULL) {
			return p;
		}
	}
	return NULL;
}

struct vhu_mem_epoch *
vhu_mem_hold(struct vhu_mem *m)
{
	m->cur->holds++;
	return m->cur;
}

void
vhu_mem_release(struct vhu_mem *m, struct vhu_mem_epoch *e)
{
	if (e == NULL || e->holds == 0) {
		return;
	}
	e->holds--;
	reap(m);
}
