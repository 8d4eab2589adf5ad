/* SPDX-License-Identifier: MIT */
/*
 * The device side of a split virtqueue (rules in <vhu/vq.h>).
 *
 * Security model: the guest owns the descriptor table and the avail ring
 * and may rewrite them while we read. Each guest value is read once into a
 * local (a descriptor with memcpy followed by a compiler barrier, so the
 * compiler cannot re-read it after the checks; indexes with __atomic
 * loads), then checked, then used. Indexes into a table are checked
 * against that table's size, chains are bounded by it (which also ends
 * loops), and every buffer is translated as a whole through one memory
 * region. The first fault breaks the queue.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/inflight.h>
#include <vhu/vq.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "vhu reads virtio rings as native integers: little-endian hosts only");

#define FEAT(bit)	(1ull << (bit))
#define VQ_CACHELINE	64u

struct vhu_vq {
	struct vhu_mem *mem;
	uint64_t features;
	uint32_t num;			/* 0: SET_VRING_NUM not seen */
	bool addr_set;
	bool enabled;
	bool started;
	bool notify_off;		/* vhu_vq_notify_disable in force */
	bool signalled_valid;		/* signalled_used means something */
	int error;			/* the fault that broke the queue, or 0 */
	struct vhu_vring_addr addr;
	uint16_t last_avail;		/* next avail index to process */
	uint16_t used_idx;		/* the used->idx we last published */
	uint16_t signalled_used;	/* used_idx at the last need_call */
	unsigned int inflight;
	/* The rings, translated; valid while ring_epoch is held and ring_gen current. */
	const uint8_t *desc;
	struct vhu_virtq_avail *avail;
	struct vhu_virtq_used *used;
	struct vhu_mem_epoch *ring_epoch;
	uint64_t ring_gen;
	/*
	 * Inflight tracking (<vhu/inflight.h>): the queue's area of the region,
	 * its descriptor count, and the requests to submit again after a
	 * start, resubmit[resub_next, nresubmit) in counter order. The list is
	 * allocated when the area is attached and kept across resets.
	 */
	struct vhu_inflight_queue *ifl;
	uint16_t ifl_num;
	uint16_t nresubmit;
	uint16_t resub_next;
	uint64_t counter;
	struct vhu_inflight_entry *resubmit;
	uint32_t resubmit_cap;
};

static bool
has(const struct vhu_vq *vq, unsigned int bit)
{
	return (vq->features & FEAT(bit)) != 0;
}

int
vhu_vq_create(struct vhu_mem *m, struct vhu_vq **out)
{
	struct vhu_vq *vq;

	*out = NULL;
	/*
	 * Cache-line aligned, whole lines: queues served by different threads
	 * (reactors) never share a line that either writes per request.
	 */
	vq = aligned_alloc(VQ_CACHELINE, (sizeof(*vq) + VQ_CACHELINE - 1) / VQ_CACHELINE *
					 VQ_CACHELINE);
	if (vq == NULL) {
		return -ENOMEM;
	}
	memset(vq, 0, sizeof(*vq));
	vq->mem = m;
	*out = vq;
	return 0;
}

static void
rings_unmap(struct vhu_vq *vq)
{
	vhu_mem_release(vq->mem, vq->ring_epoch);
	vq->ring_epoch = NULL;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
}

/* A stopped queue with nothing in flight keeps no mapping alive. */
static void
unpin_if_idle(struct vhu_vq *vq)
{
	if (!vq->started && vq->inflight == 0) {
		rings_unmap(vq);
	}
}

void
vhu_vq_destroy(struct vhu_vq *vq)
{
	if (vq == NULL) {
		return;
	}
	rings_unmap(vq);
	free(vq->resubmit);
	free(vq);
}

static int
rings_map(struct vhu_vq *vq)
{
	struct vhu_mem_epoch *old = vq->ring_epoch;
	void *desc, *avail, *used;

	desc = vhu_mem_uva(vq->mem, vq->addr.desc, vhu_virtq_desc_size(vq->num));
	avail = vhu_mem_uva(vq->mem, vq->addr.avail, vhu_virtq_avail_size(vq->num));
	used = vhu_mem_uva(vq->mem, vq->addr.used, vhu_virtq_used_size(vq->num));
	/*
	 * The front-end's addresses are aligned (checked at SET_VRING_ADDR),
	 * but a region's user_addr and mmap_offset need not agree modulo 16:
	 * check the local pointers too, since the idx fields are accessed
	 * atomically.
	 */
	if (desc == NULL || avail == NULL || used == NULL ||
	    (uintptr_t)desc % VHU_VIRTQ_DESC_ALIGN != 0 ||
	    (uintptr_t)avail % VHU_VIRTQ_AVAIL_ALIGN != 0 ||
	    (uintptr_t)used % VHU_VIRTQ_USED_ALIGN != 0) {
		rings_unmap(vq);
		return -VHU_EVQRING;
	}
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->ring_epoch = vhu_mem_hold(vq->mem);
	vq->ring_gen = vhu_mem_generation(vq->mem);
	vhu_mem_release(vq->mem, old);
	return 0;
}

/* Rings usable now: translated under the current memory table. */
static int
rings_ok(struct vhu_vq *vq)
{
	if (vq->ring_epoch != NULL && vq->ring_gen == vhu_mem_generation(vq->mem)) {
		return 0;
	}
	if (vq->num == 0 || !vq->addr_set) {
		return -VHU_EVQRING;
	}
	return rings_map(vq);
}

/*
 * The queue is broken. A fault met on memory the SIGBUS guard replaced
 * with zeroes (a bad index, an address outside the table) is the lost
 * region's, and is named so.
 */
static int
broken(struct vhu_vq *vq, int err)
{
	if (vq->error == 0) {
		vq->error = vhu_mem_error(vq->mem) < 0 ? -VHU_EMEMLOST : err;
	}
	return vq->error;
}

void
vhu_vq_set_features(struct vhu_vq *vq, uint64_t features)
{
	vq->features = features;
	if (!has(vq, VHU_F_PROTOCOL_FEATURES)) {
		vq->enabled = true;
	}
}

int
vhu_vq_set_num(struct vhu_vq *vq, uint32_t num)
{
	if (vq->started) {
		return -EBUSY;
	}
	if (!vhu_virtq_size_valid(num)) {
		return -VHU_EVQSIZE;
	}
	vq->num = num;
	return 0;
}

int
vhu_vq_set_addr(struct vhu_vq *vq, const struct vhu_vring_addr *addr)
{
	if (vq->started) {
		return -EBUSY;
	}
	if (addr->desc % VHU_VIRTQ_DESC_ALIGN != 0 || addr->avail % VHU_VIRTQ_AVAIL_ALIGN != 0 ||
	    addr->used % VHU_VIRTQ_USED_ALIGN != 0) {
		return -VHU_EVQRING;
	}
	vq->addr = *addr;
	vq->addr_set = true;
	return 0;
}

int
vhu_vq_set_base(struct vhu_vq *vq, uint32_t base)
{
	if (vq->started) {
		return -EBUSY;
	}
	if (base > UINT16_MAX) {
		return -VHU_EBODY;
	}
	vq->last_avail = (uint16_t)base;
	return 0;
}

int
vhu_vq_set_enable(struct vhu_vq *vq, uint32_t enable)
{
	if (enable > 1) {
		return -VHU_EBODY;
	}
	vq->enabled = enable == 1;
	return 0;
}

/*
 * Recovery when a queue with an inflight area starts: the area says which
 * requests the previous back-end took and never completed; they are
 * popped again first, and the next avail index is the one after them.
 */
static int
inflight_start(struct vhu_vq *vq, uint16_t used_idx)
{
	struct vhu_inflight_state st;
	int rc;

	vq->nresubmit = 0;
	vq->resub_next = 0;
	if (vq->num != vq->ifl_num) {
		return -VHU_EINFLIGHT;
	}
	rc = vhu_inflight_recover(vq->ifl, (uint16_t)vq->num, used_idx, vq->resubmit, &st);
	if (rc < 0) {
		return rc;
	}
	/* A fresh area knows nothing: the front-end's base stands. */
	if (!st.fresh) {
		vq->last_avail = st.last_avail;
	}
	vq->nresubmit = st.nresubmit;
	vq->counter = st.next_counter;
	return 0;
}

int
vhu_vq_set_inflight(struct vhu_vq *vq, struct vhu_inflight_queue *area, uint16_t queue_size)
{
	if (vq->started || vq->inflight > 0) {
		return -EBUSY;
	}
	if (area != NULL && queue_size > vq->resubmit_cap) {
		struct vhu_inflight_entry *l = calloc(queue_size, sizeof(*l));

		if (l == NULL) {
			return -ENOMEM;
		}
		free(vq->resubmit);
		vq->resubmit = l;
		vq->resubmit_cap = queue_size;
	}
	vq->ifl = area;
	vq->ifl_num = area != NULL ? queue_size : 0;
	vq->nresubmit = 0;
	vq->resub_next = 0;
	return 0;
}

unsigned int
vhu_vq_resubmit_pending(const struct vhu_vq *vq)
{
	return (unsigned int)(vq->nresubmit - vq->resub_next);
}

int
vhu_vq_start(struct vhu_vq *vq)
{
	uint16_t used_idx;
	int rc;

	if (vq->num == 0 || !vq->addr_set) {
		return -EINVAL;
	}
	if (vq->error != 0) {
		return vq->error;
	}
	rc = rings_ok(vq);
	if (rc < 0) {
		return broken(vq, rc);
	}
	if (vq->started) {
		return 0;	/* a new kick fd: nothing else changes */
	}
	used_idx = __atomic_load_n(&vq->used->idx, __ATOMIC_RELAXED);
	if (vq->ifl != NULL) {
		rc = inflight_start(vq, used_idx);
		if (rc < 0) {
			rings_unmap(vq);
			return broken(vq, rc);
		}
	}
	if ((uint16_t)(vq->last_avail - used_idx) > vq->num) {
		rings_unmap(vq);
		return broken(vq, -VHU_EVQIDX);
	}
	vq->used_idx = used_idx;
	vq->signalled_used = used_idx;
	vq->signalled_valid = false;
	if (!has(vq, VHU_F_RING_EVENT_IDX)) {
		__atomic_store_n(&vq->used->flags,
				 (uint16_t)(vq->notify_off ? VHU_VIRTQ_USED_F_NO_NOTIFY : 0),
				 __ATOMIC_RELAXED);
	}
	vq->started = true;
	return 0;
}

uint32_t
vhu_vq_get_base(struct vhu_vq *vq)
{
	vq->started = false;
	unpin_if_idle(vq);
	return vq->last_avail;
}

void
vhu_vq_reset(struct vhu_vq *vq)
{
	struct vhu_mem *m = vq->mem;
	struct vhu_inflight_entry *l = vq->resubmit;
	uint32_t cap = vq->resubmit_cap;

	rings_unmap(vq);
	memset(vq, 0, sizeof(*vq));
	vq->mem = m;
	vq->resubmit = l;
	vq->resubmit_cap = cap;
}

bool
vhu_vq_ready(const struct vhu_vq *vq)
{
	return vq->started && vq->enabled && vq->error == 0;
}

bool
vhu_vq_started(const struct vhu_vq *vq)
{
	return vq->started;
}

bool
vhu_vq_enabled(const struct vhu_vq *vq)
{
	return vq->enabled;
}

int
vhu_vq_error(const struct vhu_vq *vq)
{
	return vq->error;
}

uint32_t
vhu_vq_num(const struct vhu_vq *vq)
{
	return vq->num;
}

unsigned int
vhu_vq_inflight(const struct vhu_vq *vq)
{
	return vq->inflight;
}

/* One descriptor, read once: the compiler may not fetch its fields again. */
static void
desc_read(struct vhu_virtq_desc *d, const uint8_t *table, uint32_t i)
{
	memcpy(d, table + (size_t)i * sizeof(*d), sizeof(*d));
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static int
walk(struct vhu_vq *vq, uint16_t head, struct vhu_vq_req *req, struct iovec *iov,
     unsigned int iov_max)
{
	const uint8_t *table = vq->desc;
	uint32_t size = vq->num, i = head, count = 0;
	bool indirect = false;
	unsigned int n = 0;

	req->nread = 0;
	req->nwrite = 0;
	req->read_len = 0;
	req->write_len = 0;
	for (;;) {
		struct vhu_virtq_desc d;

		if (++count > size) {
			return -VHU_EVQLOOP;
		}
		desc_read(&d, table, i);
		if (d.flags & VHU_VIRTQ_DESC_F_INDIRECT) {
			if (!has(vq, VHU_F_RING_INDIRECT_DESC) || indirect ||
			    (d.flags & VHU_VIRTQ_DESC_F_NEXT) || d.len == 0 ||
			    d.len % sizeof(struct vhu_virtq_desc) != 0 ||
			    d.len / sizeof(struct vhu_virtq_desc) > VHU_VIRTQ_MAX_SIZE) {
				return -VHU_EVQINDIRECT;
			}
			table = vhu_mem_gpa(vq->mem, d.addr, d.len);
			if (table == NULL) {
				return -VHU_EGUESTADDR;
			}
			size = d.len / sizeof(struct vhu_virtq_desc);
			indirect = true;
			count = 0;
			i = 0;
			continue;
		}
		if (d.flags & VHU_VIRTQ_DESC_F_WRITE) {
			req->nwrite++;
		} else if (req->nwrite != 0) {
			return -VHU_EVQORDER;
		} else {
			req->nread++;
		}
		if (d.len != 0) {
			void *p = vhu_mem_gpa(vq->mem, d.addr, d.len);

			if (p == NULL) {
				return -VHU_EGUESTADDR;
			}
			if (n == iov_max) {
				return -VHU_EVQSEGS;
			}
			iov[n].iov_base = p;
			iov[n].iov_len = d.len;
			n++;
			if (d.flags & VHU_VIRTQ_DESC_F_WRITE) {
				req->write_len += d.len;
			} else {
				req->read_len += d.len;
			}
		} else if (d.flags & VHU_VIRTQ_DESC_F_WRITE) {
			req->nwrite--;	/* counted for the order rule, no iovec */
		} else {
			req->nread--;
		}
		if (!(d.flags & VHU_VIRTQ_DESC_F_NEXT)) {
			break;
		}
		i = d.next;
		if (i >= size) {
			return -VHU_EVQDESC;
		}
	}
	return 0;
}

/*
 * A request the previous back-end took and never completed: the same head,
 * its chain walked and checked as any other; it stays marked in flight
 * with its old counter, so a second crash resubmits it in the same order.
 */
static int
pop_resubmit(struct vhu_vq *vq, struct vhu_vq_req *req, struct iovec *iov, unsigned int iov_max)
{
	uint16_t head = vq->resubmit[vq->resub_next].head;
	int rc;

	req->iov = iov;
	rc = walk(vq, head, req, iov, iov_max);
	if (rc < 0) {
		return broken(vq, rc);
	}
	req->head = head;
	vq->resub_next++;
	req->epoch = vhu_mem_hold(vq->mem);
	vq->inflight++;
	return 1;
}

/*
 * The avail_event to publish (EVENT_IDX): the next index to process while
 * notifications are on; while they are off, half the 16-bit space behind
 * it, so that the driver's check (vhu_virtq_need_event) stays false for
 * every index it can publish. Left where it was, it would still get one
 * kick (the index passes it) and another at each wrap.
 */
static uint16_t
avail_event(const struct vhu_vq *vq)
{
	return vq->notify_off ? (uint16_t)(vq->last_avail - 1u - 0x7fffu) : vq->last_avail;
}

static int
pop_one(struct vhu_vq *vq, struct vhu_vq_req *req, struct iovec *iov, unsigned int iov_max)
{
	uint16_t avail_idx, pending, head;
	int rc;

	if (vq->error != 0) {
		return vq->error;
	}
	if (!vq->started || !vq->enabled) {
		return 0;
	}
	rc = rings_ok(vq);
	if (rc < 0) {
		return broken(vq, rc);
	}
	if (vq->resub_next < vq->nresubmit) {
		return pop_resubmit(vq, req, iov, iov_max);
	}
	/* Acquire: the ring entries the driver wrote before idx are visible. */
	avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
	pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0) {
		return 0;
	}
	if (pending > vq->num) {
		return broken(vq, -VHU_EVQIDX);
	}
	head = __atomic_load_n(&vq->avail->ring[vq->last_avail & (vq->num - 1)],
			       __ATOMIC_RELAXED);
	if (head >= vq->num) {
		return broken(vq, -VHU_EVQDESC);
	}
	req->iov = iov;
	rc = walk(vq, head, req, iov, iov_max);
	if (rc < 0) {
		return broken(vq, rc);
	}
	req->head = head;
	if (vq->ifl != NULL) {
		/* Recorded before anything of the request leaves this function. */
		__atomic_store_n(&vq->ifl->desc[head].counter, vq->counter++, __ATOMIC_RELAXED);
		__atomic_store_n(&vq->ifl->desc[head].inflight, (uint8_t)1, __ATOMIC_RELEASE);
	}
	vq->last_avail++;
	if (has(vq, VHU_F_RING_EVENT_IDX)) {
		__atomic_store_n(vhu_virtq_avail_event(vq->used, vq->num), avail_event(vq),
				 __ATOMIC_RELAXED);
	}
	req->epoch = vhu_mem_hold(vq->mem);
	vq->inflight++;
	return 1;
}

int
vhu_vq_pop(struct vhu_vq *vq, struct vhu_vq_req *req, struct iovec *iov, unsigned int iov_max)
{
	int rc = pop_one(vq, req, iov, iov_max);

	/* A region lost while the ring was read: what was read is zeroes. */
	if (rc >= 0 && vhu_mem_error(vq->mem) < 0) {
		if (rc > 0) {
			vhu_vq_drop(vq, req);
		}
		rc = broken(vq, -VHU_EMEMLOST);
	}
	return rc;
}

int
vhu_vq_refresh(struct vhu_vq *vq)
{
	int rc;

	if (vq->ring_epoch == NULL) {
		return vq->error;
	}
	rc = rings_ok(vq);
	return rc < 0 ? broken(vq, rc) : vq->error;
}

static void
req_done(struct vhu_vq *vq, struct vhu_vq_req *req)
{
	/* Move the rings to the current table first, so the release can reap. */
	vhu_vq_refresh(vq);
	vhu_mem_release(vq->mem, req->epoch);
	req->epoch = NULL;
	if (vq->inflight > 0) {
		vq->inflight--;
	}
	unpin_if_idle(vq);
}

int
vhu_vq_push(struct vhu_vq *vq, struct vhu_vq_req *req, uint32_t len)
{
	struct vhu_virtq_used_elem *e;
	int rc;

	rc = rings_ok(vq);
	if (rc < 0) {
		broken(vq, rc);
		req_done(vq, req);
		return rc;
	}
	if (len > req->write_len) {
		len = (uint32_t)req->write_len;
	}
	e = &vq->used->ring[vq->used_idx & (vq->num - 1)];
	__atomic_store_n(&e->id, (uint32_t)req->head, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
	if (vq->ifl != NULL && req->head < vq->ifl_num) {
		/* Names the entry a restart clears if we die before the end. */
		__atomic_store_n(&vq->ifl->last_batch_head, req->head, __ATOMIC_RELAXED);
	}
	vq->used_idx++;
	/* Release: the element is visible before the index that publishes it. */
	__atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
	if (vq->ifl != NULL && req->head < vq->ifl_num) {
		/* After the used index: the other order could lose the request. */
		__atomic_store_n(&vq->ifl->desc[req->head].inflight, (uint8_t)0, __ATOMIC_RELEASE);
		__atomic_store_n(&vq->ifl->used_idx, vq->used_idx, __ATOMIC_RELEASE);
	}
	req_done(vq, req);
	/* The request's buffers or the used ring were lost: the guest saw nothing. */
	if (vhu_mem_error(vq->mem) < 0) {
		return broken(vq, -VHU_EMEMLOST);
	}
	return 0;
}

void
vhu_vq_drop(struct vhu_vq *vq, struct vhu_vq_req *req)
{
	req_done(vq, req);
}

bool
vhu_vq_need_call(struct vhu_vq *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_valid;

	if (vq->used == NULL || rings_ok(vq) < 0) {
		return false;
	}
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (old == now) {
		return false;	/* nothing pushed since the last decision */
	}
	/* The used index store is ordered before the read of the guest's field. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (has(vq, VHU_F_RING_EVENT_IDX)) {
		uint16_t ev = __atomic_load_n(vhu_virtq_used_event(vq->avail, vq->num),
					      __ATOMIC_RELAXED);

		return !valid || vhu_virtq_need_event(ev, now, old);
	}
	return !(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) &
		 VHU_VIRTQ_AVAIL_F_NO_INTERRUPT);
}

void
vhu_vq_notify_disable(struct vhu_vq *vq)
{
	vq->notify_off = true;
	if (vq->used == NULL || rings_ok(vq) < 0) {
		return;
	}
	if (has(vq, VHU_F_RING_EVENT_IDX)) {
		__atomic_store_n(vhu_virtq_avail_event(vq->used, vq->num), avail_event(vq),
				 __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&vq->used->flags, (uint16_t)VHU_VIRTQ_USED_F_NO_NOTIFY,
				 __ATOMIC_RELAXED);
	}
}

bool
vhu_vq_avail_pending(struct vhu_vq *vq)
{
	if (!vhu_vq_ready(vq)) {
		return false;
	}
	if (rings_ok(vq) < 0 || vq->resub_next != vq->nresubmit) {
		return true;	/* the next pop reports the fault, or resubmits */
	}
	return __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->last_avail;
}

bool
vhu_vq_notify_enable(struct vhu_vq *vq)
{
	vq->notify_off = false;
	if (vq->used == NULL || rings_ok(vq) < 0) {
		return false;
	}
	if (has(vq, VHU_F_RING_EVENT_IDX)) {
		__atomic_store_n(vhu_virtq_avail_event(vq->used, vq->num), vq->last_avail,
				 __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&vq->used->flags, (uint16_t)0, __ATOMIC_RELAXED);
	}
	/* Our store before the read of avail->idx: else a kick can be lost. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq->resub_next < vq->nresubmit) {
		return true;
	}
	return __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE) != vq->last_avail;
}
