/* SPDX-License-Identifier: MIT */
/*
 * The driver side of a split virtqueue (see vq_driver.h). Security model:
 * the device shares the rings and may write anything into them at any
 * time. The driver therefore keeps its own copy of everything it needs to
 * recycle a request (chain length and tail, writable bytes, in-flight
 * bit) and reads each device-written field once, into a local, before it
 * checks and uses it. Nothing in shared memory is ever used as an index
 * into private state without a bound check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/virtq.h>
#include <vhu/vq_driver.h>

#define CACHELINE	64u

struct head_state {
	uint32_t wlen;		/* device-writable bytes of the chain */
	uint16_t ndesc;		/* ring descriptors the chain holds */
	uint16_t tail;		/* last ring descriptor of the chain */
	uint8_t inflight;
};

struct vhu_vqd {
	unsigned int num;
	unsigned int indirect;		/* entries per indirect table, 0: none */
	uint32_t flags;
	struct vhu_virtq_desc *desc;
	struct vhu_virtq_avail *avail;
	struct vhu_virtq_used *used;
	struct vhu_virtq_desc *itables;	/* num tables of indirect entries */
	uint16_t *next;			/* private free-list / chain links */
	struct head_state *heads;
	uint16_t free_head;
	unsigned int nfree;
	unsigned int inflight;
	uint16_t avail_idx;		/* next avail index to write (private) */
	uint16_t kicked_idx;		/* avail index at the last publish */
	uint16_t last_used;		/* next used index to read */
	int broken;
};

static size_t
align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Offsets of the areas in the caller's memory. */
static void
layout(unsigned int num, unsigned int indirect, size_t *avail, size_t *used, size_t *itab,
       size_t *total)
{
	*avail = vhu_virtq_desc_size(num);
	*used = align_up(*avail + vhu_virtq_avail_size(num), CACHELINE);
	*itab = align_up(*used + vhu_virtq_used_size(num), CACHELINE);
	*total = align_up(*itab + (size_t)num * indirect * sizeof(struct vhu_virtq_desc),
			  CACHELINE);
}

size_t
vhu_vqd_mem_size(unsigned int num, unsigned int indirect)
{
	size_t a, u, i, t;

	if (!vhu_virtq_size_valid(num) || indirect > VHU_VIRTQ_MAX_SIZE) {
		return 0;
	}
	layout(num, indirect, &a, &u, &i, &t);
	return t;
}

static void
free_all(struct vhu_vqd *q)
{
	unsigned int i;

	for (i = 0; i < q->num; i++) {
		q->next[i] = (uint16_t)(i + 1);
		q->heads[i].inflight = 0;
	}
	q->free_head = 0;
	q->nfree = q->num;
	q->inflight = 0;
}

int
vhu_vqd_create(unsigned int num, void *mem, size_t len, unsigned int indirect, uint32_t flags,
	       struct vhu_vqd **out)
{
	struct vhu_vqd *q;
	size_t a, u, it, total;

	*out = NULL;
	if (!vhu_virtq_size_valid(num)) {
		return -VHU_EVQSIZE;
	}
	if (indirect > VHU_VIRTQ_MAX_SIZE || (indirect > 0 && !(flags & VHU_VQD_F_INDIRECT))) {
		return -EINVAL;
	}
	layout(num, indirect, &a, &u, &it, &total);
	if (mem == NULL || len < total || ((uintptr_t)mem & (CACHELINE - 1)) != 0) {
		return -EINVAL;
	}
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		return -ENOMEM;
	}
	q->next = calloc(num, sizeof(*q->next));
	q->heads = calloc(num, sizeof(*q->heads));
	if (q->next == NULL || q->heads == NULL) {
		vhu_vqd_destroy(q);
		return -ENOMEM;
	}
	memset(mem, 0, total);
	q->num = num;
	q->indirect = indirect;
	q->flags = flags;
	q->desc = mem;
	q->avail = (void *)((uint8_t *)mem + a);
	q->used = (void *)((uint8_t *)mem + u);
	q->itables = indirect ? (void *)((uint8_t *)mem + it) : NULL;
	free_all(q);
	*out = q;
	return 0;
}

void
vhu_vqd_destroy(struct vhu_vqd *q)
{
	if (q == NULL) {
		return;
	}
	free(q->next);
	free(q->heads);
	free(q);
}

unsigned int
vhu_vqd_num(const struct vhu_vqd *q)
{
	return q->num;
}

uint64_t
vhu_vqd_desc_addr(const struct vhu_vqd *q)
{
	return (uint64_t)(uintptr_t)q->desc;
}

uint64_t
vhu_vqd_avail_addr(const struct vhu_vqd *q)
{
	return (uint64_t)(uintptr_t)q->avail;
}

uint64_t
vhu_vqd_used_addr(const struct vhu_vqd *q)
{
	return (uint64_t)(uintptr_t)q->used;
}

unsigned int
vhu_vqd_inflight(const struct vhu_vqd *q)
{
	return q->inflight;
}

int
vhu_vqd_broken(const struct vhu_vqd *q)
{
	return q->broken;
}

bool
vhu_vqd_head_inflight(const struct vhu_vqd *q, unsigned int head)
{
	return head < q->num && q->heads[head].inflight;
}

static void
fill(struct vhu_virtq_desc *d, const struct iovec *v, uint16_t flags)
{
	d->addr = (uint64_t)(uintptr_t)v->iov_base;
	d->len = (uint32_t)v->iov_len;
	d->flags = flags;
}

int
vhu_vqd_add(struct vhu_vqd *q, const struct iovec *out, unsigned int nout,
	    const struct iovec *in, unsigned int nin)
{
	unsigned int n = nout + nin, i, ndesc;
	uint32_t wlen = 0;
	uint16_t head, cur, prev = 0;
	bool ind;

	if (q->broken) {
		return q->broken;
	}
	if (n == 0) {
		return -EINVAL;
	}
	for (i = 0; i < n; i++) {
		const struct iovec *v = i < nout ? &out[i] : &in[i - nout];

		if (v->iov_len > UINT32_MAX) {
			return -EINVAL;
		}
		if (i >= nout) {
			if (wlen + (uint64_t)v->iov_len > UINT32_MAX) {
				return -EINVAL;
			}
			wlen += (uint32_t)v->iov_len;
		}
	}
	ind = q->indirect > 0 && n > 1;
	if (ind && n > q->indirect) {
		return -E2BIG;
	}
	ndesc = ind ? 1 : n;
	if (ndesc > q->num) {
		return -E2BIG;
	}
	if (ndesc > q->nfree) {
		return -EAGAIN;
	}

	head = q->free_head;
	if (ind) {
		struct vhu_virtq_desc *t = &q->itables[(size_t)head * q->indirect];

		for (i = 0; i < n; i++) {
			bool w = i >= nout;

			fill(&t[i], w ? &in[i - nout] : &out[i],
			     (uint16_t)((w ? VHU_VIRTQ_DESC_F_WRITE : 0) |
					(i + 1 < n ? VHU_VIRTQ_DESC_F_NEXT : 0)));
			t[i].next = (uint16_t)(i + 1 < n ? i + 1 : 0);
		}
		q->desc[head].addr = (uint64_t)(uintptr_t)t;
		q->desc[head].len = (uint32_t)(n * sizeof(*t));
		q->desc[head].flags = VHU_VIRTQ_DESC_F_INDIRECT;
		q->desc[head].next = 0;
		prev = head;
		q->free_head = q->next[head];
	} else {
		cur = head;
		for (i = 0; i < n; i++) {
			bool w = i >= nout;

			fill(&q->desc[cur], w ? &in[i - nout] : &out[i],
			     (uint16_t)((w ? VHU_VIRTQ_DESC_F_WRITE : 0) |
					(i + 1 < n ? VHU_VIRTQ_DESC_F_NEXT : 0)));
			q->desc[cur].next = q->next[cur];
			prev = cur;
			cur = q->next[cur];
		}
		q->free_head = cur;
	}
	q->nfree -= ndesc;
	q->heads[head].wlen = wlen;
	q->heads[head].ndesc = (uint16_t)ndesc;
	q->heads[head].tail = prev;
	q->heads[head].inflight = 1;
	q->inflight++;
	q->avail->ring[q->avail_idx & (q->num - 1)] = head;
	q->avail_idx++;
	return head;
}

int
vhu_vqd_next_head(const struct vhu_vqd *q)
{
	if (q->broken) {
		return q->broken;
	}
	return q->nfree > 0 ? q->free_head : -EAGAIN;
}

bool
vhu_vqd_publish(struct vhu_vqd *q)
{
	uint16_t old = q->kicked_idx, now = q->avail_idx;

	if (old == now) {
		return false;
	}
	__atomic_store_n(&q->avail->idx, now, __ATOMIC_RELEASE);
	q->kicked_idx = now;
	/* The device's suppression field must be read after the index is seen. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (q->flags & VHU_VQD_F_EVENT_IDX) {
		uint16_t ev = __atomic_load_n(vhu_virtq_avail_event(q->used, q->num),
					      __ATOMIC_RELAXED);

		return vhu_virtq_need_event(ev, now, old);
	}
	return !(__atomic_load_n(&q->used->flags, __ATOMIC_RELAXED) & VHU_VIRTQ_USED_F_NO_NOTIFY);
}

static int
breaks(struct vhu_vqd *q, int err)
{
	q->broken = err;
	return err;
}

int
vhu_vqd_next_used(struct vhu_vqd *q, struct vhu_vqd_used *u)
{
	uint16_t idx, slot;
	uint32_t id, len;
	struct head_state *h;

	if (q->broken) {
		return q->broken;
	}
	idx = __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE);
	if (idx == q->last_used) {
		return 0;
	}
	/* More published than could ever be in flight: the index jumped. */
	if ((uint16_t)(idx - q->last_used) > q->num) {
		return breaks(q, -VHU_EUSEDIDX);
	}
	slot = q->last_used & (q->num - 1);
	id = __atomic_load_n(&q->used->ring[slot].id, __ATOMIC_RELAXED);
	len = __atomic_load_n(&q->used->ring[slot].len, __ATOMIC_RELAXED);
	if (id >= q->num || !q->heads[id].inflight) {
		return breaks(q, -VHU_EUSEDID);
	}
	q->last_used++;
	h = &q->heads[id];
	u->head = (uint16_t)id;
	u->err = 0;
	u->len = len;
	if (len > h->wlen) {
		u->err = -VHU_EUSEDLEN;
		u->len = 0;
	}
	/* Recycle the chain from the private links, never from the table. */
	q->next[h->tail] = q->free_head;
	q->free_head = (uint16_t)id;
	q->nfree += h->ndesc;
	h->inflight = 0;
	q->inflight--;
	return 1;
}

bool
vhu_vqd_enable_calls(struct vhu_vqd *q)
{
	if (q->flags & VHU_VQD_F_EVENT_IDX) {
		__atomic_store_n(vhu_virtq_used_event(q->avail, q->num), q->last_used,
				 __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&q->avail->flags, 0, __ATOMIC_RELAXED);
	}
	/* The request for a call must be visible before the ring is checked. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used;
}

void
vhu_vqd_disable_calls(struct vhu_vqd *q)
{
	if (q->flags & VHU_VQD_F_EVENT_IDX) {
		/* As far behind as the 16-bit index allows. */
		__atomic_store_n(vhu_virtq_used_event(q->avail, q->num),
				 (uint16_t)(q->last_used - 1u - 0x7fffu), __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&q->avail->flags, VHU_VIRTQ_AVAIL_F_NO_INTERRUPT,
				 __ATOMIC_RELAXED);
	}
}

void
vhu_vqd_reset(struct vhu_vqd *q)
{
	memset(q->desc, 0, vhu_virtq_desc_size(q->num));
	memset(q->avail, 0, vhu_virtq_avail_size(q->num));
	memset(q->used, 0, vhu_virtq_used_size(q->num));
	free_all(q);
	q->avail_idx = 0;
	q->kicked_idx = 0;
	q->last_used = 0;
	q->broken = 0;
}
