/* SPDX-License-Identifier: MIT */
/*
 * The inflight region's layout and the recovery a queue runs when it
 * starts (rules in <vhu/inflight.h>). The front-end may write the area
 * while we read it: each field is read once, with a relaxed atomic load,
 * into a local that is checked and then used; the sort works on that
 * snapshot, never on the shared memory.
 */
#include <string.h>

#include <vhu/error.h>
#include <vhu/inflight.h>
#include <vhu/virtq.h>

size_t
vhu_inflight_area_size(uint16_t queue_size)
{
	size_t n = sizeof(struct vhu_inflight_queue) +
		   (size_t)queue_size * sizeof(struct vhu_inflight_desc);

	return (n + VHU_INFLIGHT_ALIGN - 1) & ~(size_t)(VHU_INFLIGHT_ALIGN - 1);
}

uint64_t
vhu_inflight_region_size(uint16_t num_queues, uint16_t queue_size)
{
	if (num_queues == 0 || !vhu_virtq_size_valid(queue_size)) {
		return 0;
	}
	return (uint64_t)num_queues * vhu_inflight_area_size(queue_size);
}

struct vhu_inflight_queue *
vhu_inflight_queue_at(void *region, uint16_t queue_size, unsigned int i)
{
	return (struct vhu_inflight_queue *)((uint8_t *)region +
					     (size_t)i * vhu_inflight_area_size(queue_size));
}

static void
area_reset(struct vhu_inflight_queue *q, uint16_t num)
{
	memset(q, 0, vhu_inflight_area_size(num));
	q->desc_num = num;
}

void
vhu_inflight_region_init(void *region, uint16_t num_queues, uint16_t queue_size)
{
	unsigned int i;

	for (i = 0; i < num_queues; i++) {
		area_reset(vhu_inflight_queue_at(region, queue_size, i), queue_size);
	}
}

/* Heap sort by counter: bounded by the queue size, no allocation, no recursion. */
static void
sift(struct vhu_inflight_entry *a, size_t root, size_t n)
{
	for (;;) {
		size_t c = 2 * root + 1;
		struct vhu_inflight_entry t;

		if (c >= n) {
			return;
		}
		if (c + 1 < n && a[c + 1].counter > a[c].counter) {
			c++;
		}
		if (a[root].counter >= a[c].counter) {
			return;
		}
		t = a[root];
		a[root] = a[c];
		a[c] = t;
		root = c;
	}
}

static void
sort_by_counter(struct vhu_inflight_entry *a, size_t n)
{
	size_t i;

	for (i = n / 2; i-- > 0;) {
		sift(a, i, n);
	}
	for (i = n; i-- > 1;) {
		struct vhu_inflight_entry t = a[0];

		a[0] = a[i];
		a[i] = t;
		sift(a, 0, i);
	}
}

#define LOAD(p)		__atomic_load_n(p, __ATOMIC_RELAXED)
#define STORE(p, v)	__atomic_store_n(p, v, __ATOMIC_RELEASE)

int
vhu_inflight_recover(struct vhu_inflight_queue *q, uint16_t num, uint16_t used_idx,
		     struct vhu_inflight_entry *list, struct vhu_inflight_state *st)
{
	uint16_t version = LOAD(&q->version), desc_num = LOAD(&q->desc_num);
	uint16_t batch_head = LOAD(&q->last_batch_head), area_used = LOAD(&q->used_idx);
	uint16_t ahead = (uint16_t)(used_idx - area_used);
	unsigned int i, n = 0;

	memset(st, 0, sizeof(*st));
	st->used_idx = used_idx;
	st->last_avail = used_idx;
	if (version == 0) {
		/* Never used: whatever the ring did before is not ours to resubmit. */
		area_reset(q, num);
		STORE(&q->used_idx, used_idx);
		STORE(&q->version, (uint16_t)VHU_INFLIGHT_VERSION);
		st->fresh = true;
		return 0;
	}
	if (version != VHU_INFLIGHT_VERSION || desc_num != num || batch_head >= num || ahead > 1) {
		return -VHU_EINFLIGHT;
	}
	for (i = 0; i < num; i++) {
		uint8_t flag = LOAD(&q->desc[i].inflight);

		if (flag > 1) {
			return -VHU_EINFLIGHT;
		}
		/* The half-done push's entry is done, whatever its flag says. */
		if (flag == 0 || (ahead == 1 && i == batch_head)) {
			continue;
		}
		list[n].counter = LOAD(&q->desc[i].counter);
		list[n].head = (uint16_t)i;
		n++;
	}
	sort_by_counter(list, n);
	for (i = 1; i < n; i++) {
		if (list[i].counter == list[i - 1].counter) {
			return -VHU_EINFLIGHT;	/* two requests taken at once: not a back-end's record */
		}
	}
	if (n > 0 && list[n - 1].counter == UINT64_MAX) {
		return -VHU_EINFLIGHT;
	}
	/* Checked: now repair the half-done push. */
	if (ahead == 1) {
		STORE(&q->desc[batch_head].inflight, (uint8_t)0);
		STORE(&q->used_idx, used_idx);
	}
	st->nresubmit = (uint16_t)n;
	st->last_avail = (uint16_t)(used_idx + n);
	st->next_counter = n > 0 ? list[n - 1].counter + 1 : 0;
	return 0;
}
