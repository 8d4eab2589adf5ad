/* SPDX-License-Identifier: MIT */
/*
 * Messages between rings driven by different threads (the device layer's
 * reactors): each ring has an inbox, a lock-free multi-producer,
 * single-consumer queue of intrusive nodes (Vyukov's: a producer swaps
 * itself in as the newest node, then links its predecessor to it; the
 * consumer walks from the oldest), so one producer's messages arrive in
 * the order it posted them. A producer then wakes the consumer's ring with
 * IORING_OP_MSG_RING from its own ring, at most once until the consumer has
 * taken the wake-up: the CQE it posts on the target ring (SLOT_XWAKE)
 * makes that ring's thread drain its inbox inside its reaping pass. No
 * lock, no fd, no allocation; the wake-up SQE leaves with the sender's
 * next io_uring_enter, like every SQE vhu queues.
 *
 * Ordering argument for the wake-up flag: the consumer clears it with an
 * atomic exchange before it drains; a producer sets it with an exchange
 * after its node is linked. If the producer's exchange comes first, the
 * consumer's exchange reads it (acquire) and the drain sees the node; if
 * it comes second, it reads false and sends a new wake-up.
 */
#define _GNU_SOURCE
#include <errno.h>

#include "internal.h"

#define LOAD_ACQ(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_REL(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define XCHG(p, v)	__atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)

void
vhu__xring_init(struct vhu_ring *r)
{
	struct xinbox *in = &r->xin;

	in->stub.next = NULL;
	in->head = &in->stub;
	in->tail = &in->stub;
	in->wake = false;
	in->wake_slot.kind = SLOT_XWAKE;
}

static void
inbox_push(struct xinbox *in, struct vhu__xmsg *m)
{
	struct vhu__xmsg *prev;

	__atomic_store_n(&m->next, NULL, __ATOMIC_RELAXED);
	prev = XCHG(&in->head, m);
	STORE_REL(&prev->next, m);
}

/* The oldest message, or NULL (empty, or a producer between its two steps: it wakes us after). */
static struct vhu__xmsg *
inbox_pop(struct xinbox *in)
{
	struct vhu__xmsg *tail = in->tail;
	struct vhu__xmsg *next = LOAD_ACQ(&tail->next);

	if (tail == &in->stub) {
		if (next == NULL) {
			return NULL;
		}
		in->tail = next;
		tail = next;
		next = LOAD_ACQ(&tail->next);
	}
	if (next != NULL) {
		in->tail = next;
		return tail;
	}
	if (tail != LOAD_ACQ(&in->head)) {
		return NULL;
	}
	inbox_push(in, &in->stub);
	next = LOAD_ACQ(&tail->next);
	if (next != NULL) {
		in->tail = next;
		return tail;
	}
	return NULL;
}

/* Queue the MSG_RING that wakes to; from's ops count it until its CQE. */
static void
wake_send(struct vhu_ring *from, struct vhu_ring *to)
{
	struct io_uring_sqe *sqe = vhu__ring_sqe(from);

	if (sqe == NULL) {
		/* Nothing left to wake with: the next post tries again. */
		__atomic_store_n(&to->xin.wake, false, __ATOMIC_RELEASE);
		from->xwake_failures++;
		return;
	}
	io_uring_prep_msg_ring(sqe, to->uring->ring_fd, 0, vhu__tag(&to->xin.wake_slot), 0);
	io_uring_sqe_set_data64(sqe, vhu__xsend_tag(to));
	from->ops++;
}

void
vhu__xring_post(struct vhu_ring *from, struct vhu_ring *to, struct vhu__xmsg *m)
{
	inbox_push(&to->xin, m);
	if (!XCHG(&to->xin.wake, true)) {
		wake_send(from, to);
	}
}

/* SLOT_XWAKE on r: take the wake-up, then run every message posted so far. */
void
vhu__xring_drain(struct vhu_ring *r)
{
	struct vhu__xmsg *m;

	(void)XCHG(&r->xin.wake, false);
	while ((m = inbox_pop(&r->xin)) != NULL) {
		m->fn(r, m);
	}
}

/*
 * On r (the sender): its MSG_RING completed. The target is named by
 * user_data, not by a slot in it: a ring whose thread has stopped after its
 * last message may be freed before this CQE is reaped.
 */
void
vhu__xring_sent(struct vhu_ring *r, uint64_t user_data, int res)
{
	struct vhu_ring *to = (struct vhu_ring *)(uintptr_t)(user_data & ~(uint64_t)VHU_XSEND_BITS);

	r->ops--;
	if (res >= 0) {
		return;
	}
	/* Not posted (the target's CQ overflowed, no memory): wake it again. */
	r->xwake_failures++;
	if (res == -EOVERFLOW || res == -ENOMEM || res == -EAGAIN || res == -EINTR) {
		__atomic_store_n(&to->xin.wake, true, __ATOMIC_RELEASE);
		wake_send(r, to);
	}
}
