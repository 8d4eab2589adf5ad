/* SPDX-License-Identifier: MIT */
/*
 * Poll mode (vhu_dev_opts.poll): the queues of poll-mode servers whose data
 * path runs on a ring (their home ring, with reactors: each ring spins on
 * its own queues) are listed on that ring (struct ring_poll) while they
 * run. While the ring spins, guest notifications are off on every listed
 * queue (vhu_vq_notify_disable) and each pass of vhu_ring_poll() /
 * vhu_ring_wait() looks at their avail rings, running queue_work for the
 * ones with new requests. Once the idle interval has passed with no new
 * request, no push, no kick and nothing in flight on them, vhu_ring_wait()
 * falls back: notifications on for every listed queue, a full barrier,
 * every avail ring looked at again, and only if that finds nothing does
 * the ring block. A kick or a push on a listed queue spins it again.
 *
 * No kick is lost: a request published before the guest could see the
 * notifications on is found by the re-check (the guest's index store and
 * our flag store are both ordered before the other side's load by full
 * barriers, so one of the two sides sees the other's); one published after
 * is kicked, and the queues' kick reads stay armed all along (while kicks
 * are off they cost nothing).
 */
#include "device_internal.h"

static void
hook(struct vhu_ring *r, int step)
{
	if (r->poll.hook != NULL) {
		r->poll.hook(r, step, r->poll.hook_ctx);
	}
}

/* Back to spinning: notifications off on every listed queue. */
void
vhu__dev_poll_wake(struct vhu_ring *r)
{
	struct vlist *n;

	r->poll.idle_since_ns = 0;
	if (r->poll.spinning) {
		return;
	}
	r->poll.spinning = true;
	r->st.poll_wakes++;
	for (n = r->poll.queues.next; n != &r->poll.queues; n = n->next) {
		vhu_vq_notify_disable(vhu_container_of(n, struct dev_queue, poll_link)->vq);
	}
}

/* A queue of a poll-mode server runs (started, or enabled): list it on its ring. */
void
vhu__dq_poll_join(struct dev_queue *q)
{
	struct vhu_dev *d = q->dev;
	struct vhu_ring *r = q->port->ring;
	uint64_t idle_ns = (uint64_t)d->srv->o.poll_idle_us * 1000u;

	if (q->polled) {
		return;
	}
	q->polled = true;
	vlist_add_tail(&r->poll.queues, &q->poll_link);
	r->poll.n++;
	if (idle_ns > r->poll.idle_ns) {
		r->poll.idle_ns = idle_ns;
	}
	/* A queue that starts gets requests soon: spin. */
	if (r->poll.spinning) {
		vhu_vq_notify_disable(q->vq);
	}
	vhu__dev_poll_wake(r);
}

/* The queue stopped (GET_VRING_BASE, reset, close): off the list. */
void
vhu__dq_poll_leave(struct dev_queue *q)
{
	struct vhu_ring *r = q->port->ring;
	struct vlist *n;

	if (!q->polled) {
		return;
	}
	q->polled = false;
	vlist_del(&q->poll_link);
	r->poll.n--;
	r->poll.idle_ns = 0;
	for (n = r->poll.queues.next; n != &r->poll.queues; n = n->next) {
		const struct dev_queue *o = vhu_container_of(n, struct dev_queue, poll_link);
		uint64_t idle_ns = (uint64_t)o->dev->srv->o.poll_idle_us * 1000u;

		if (idle_ns > r->poll.idle_ns) {
			r->poll.idle_ns = idle_ns;
		}
	}
	if (r->poll.n == 0) {
		r->poll.spinning = false;	/* nothing to spin on: vhu_ring_wait blocks */
	}
}

/*
 * One look at every listed queue: queue_work for those with new requests.
 * \return the queues worked (progress). Requests in flight keep the idle
 * interval from starting: their completions are reaped by spinning.
 */
int
vhu__dev_poll_pass(struct vhu_ring *r)
{
	struct vlist *n, *next;
	bool busy = false;
	int work = 0;

	for (n = r->poll.queues.next; n != &r->poll.queues; n = next) {
		struct dev_queue *q = vhu_container_of(n, struct dev_queue, poll_link);

		next = n->next;
		if (q->port->closing) {
			continue;
		}
		if (vhu_vq_avail_pending(q->vq)) {
			work++;
			vhu__dq_work(q);
		}
		if (vhu_vq_inflight(q->vq) > 0) {
			busy = true;
		}
	}
	if (work > 0) {
		vhu__dev_poll_wake(r);
	} else if (busy) {
		r->poll.idle_since_ns = 0;
	}
	return work;
}

/*
 * After a pass without progress: \return whether the idle interval has
 * passed, over at least IDLE_PASSES passes: a thread preempted for longer
 * than the interval has not spun that long, and must not fall asleep at
 * its first pass back (an idle pass costs well under 100 ns, so on a
 * thread that runs the passes end long before the interval).
 */
#define IDLE_PASSES	64u

bool
vhu__dev_poll_idle(struct vhu_ring *r)
{
	uint64_t now = vhu__now_ns();

	if (r->poll.idle_since_ns == 0) {
		r->poll.idle_since_ns = now;
		r->poll.idle_passes = 0;
		return false;
	}
	return ++r->poll.idle_passes >= IDLE_PASSES && now - r->poll.idle_since_ns >= r->poll.idle_ns;
}

/*
 * Fall back to waiting: notifications on, a full barrier, every avail ring
 * again. \return 0 when nothing arrived (the ring may block now), else the
 * queues that had requests (worked; the ring spins on).
 */
int
vhu__dev_poll_sleep(struct vhu_ring *r)
{
	struct vlist *n;

	for (n = r->poll.queues.next; n != &r->poll.queues; n = n->next) {
		(void)vhu_vq_notify_enable(vhu_container_of(n, struct dev_queue, poll_link)->vq);
	}
	r->poll.spinning = false;
	hook(r, VHU__POLL_STEP_ENABLED);
	/* Our flag stores before the loads of the avail indexes. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (n = r->poll.queues.next; n != &r->poll.queues; n = n->next) {
		struct dev_queue *q = vhu_container_of(n, struct dev_queue, poll_link);

		if (!q->port->closing && vhu_vq_avail_pending(q->vq)) {
			return vhu__dev_poll_pass(r);	/* spins again (wake) */
		}
	}
	r->st.poll_sleeps++;
	hook(r, VHU__POLL_STEP_SLEEP);
	return 0;
}
