/* SPDX-License-Identifier: MIT */
/*
 * The send path. Each connection has a preallocated queue: a byte ring
 * holding whole messages contiguously (an entry that does not fit before
 * the end starts again at offset 0) and a ring of descriptors. One sendmsg
 * is in flight per connection: either every consecutive fd-less message
 * queued (one iovec per contiguous run), or exactly one message with fds,
 * which ride in the control buffer of its first chunk only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int
vhu__sendq_init(struct sendq *q, uint32_t bytes, uint32_t msgs)
{
	memset(q, 0, sizeof(*q));
	q->buf = malloc(bytes);
	q->d = calloc(msgs, sizeof(*q->d));
	if (!q->buf || !q->d) {
		vhu__sendq_fini(q);
		return -ENOMEM;
	}
	q->cap = bytes;
	q->dcap = msgs;
	q->reserve = VHU_REPLY_RESERVE < bytes / 2 ? VHU_REPLY_RESERVE : bytes / 2;
	return 0;
}

void
vhu__sendq_fini(struct sendq *q)
{
	free(q->buf);
	free(q->d);
	q->buf = NULL;
	q->d = NULL;
}

/* Entry i of the queue (i < dcap); no division on the per-message path. */
static struct sq_desc *
desc(struct sendq *q, uint32_t i)
{
	uint32_t k = q->dhead + i;

	return &q->d[k >= q->dcap ? k - q->dcap : k];
}

/*
 * Where n contiguous bytes would go. Live bytes are [head, tail) when
 * tail > head, else [head, end of the last entry) plus [0, tail) (wrapped;
 * tail == head with entries queued means full). An empty queue starts at 0.
 */
static int
sq_fit(const struct sendq *q, uint32_t n, uint32_t *off)
{
	if (q->dn == q->dcap) {
		return -VHU_EQFULL;
	}
	if (q->dn == 0) {
		if (q->cap < n) {
			return -VHU_EQFULL;
		}
		*off = 0;
	} else if (q->tail > q->head) {
		if (q->cap - q->tail >= n) {
			*off = q->tail;
		} else if (q->head >= n) {
			*off = 0;
		} else {
			return -VHU_EQFULL;
		}
	} else if (q->head - q->tail >= n) {
		*off = q->tail;
	} else {
		return -VHU_EQFULL;
	}
	return 0;
}

static int
sq_alloc(struct sendq *q, uint32_t n, uint32_t *off)
{
	int ret = sq_fit(q, n, off);

	if (ret == 0) {
		q->tail = *off + n;
	}
	return ret;
}

static void
sq_pop(struct sendq *q, uint32_t k)
{
	for (uint32_t i = 0; i < k; i++) {
		q->used -= desc(q, i)->size;
	}
	q->dhead += k;
	if (q->dhead >= q->dcap) {
		q->dhead -= q->dcap;
	}
	q->dn -= k;
	if (q->dn == 0) {
		q->head = 0;
		q->tail = 0;
	} else {
		q->head = q->d[q->dhead].off;
	}
}

/* Room for one more reply (a free entry and VHU_REPLY_RESERVE contiguous bytes)? */
bool
vhu__send_room(const struct vhu_conn *c)
{
	uint32_t off;

	return sq_fit(&c->q, c->q.reserve, &off) == 0;
}

static void
close_entry_fds(struct sendq *q, struct sq_desc *d)
{
	uint32_t k;

	for (k = 0; k < d->nfds; k++) {
		int fd;

		memcpy(&fd, q->buf + d->off + d->len + k * sizeof(int), sizeof(int));
		close(fd);
	}
	d->nfds = 0;
}

static void
submit(struct vhu_conn *c)
{
	struct send_op *tx = &c->tx;
	struct io_uring_sqe *sqe = vhu__ring_sqe(c->ring);

	if (!sqe) {
		vhu_conn_close_reason(c, -EBUSY);
		return;
	}
	tx->mh.msg_iov = tx->cur.iov;
	tx->mh.msg_iovlen = tx->cur.cnt;
	io_uring_prep_sendmsg(sqe, c->fd, &tx->mh, MSG_NOSIGNAL);
	vhu__conn_track(c, &tx->s, sqe);
	c->ring->st.sendmsgs++;
}

/* Build the next sendmsg from the head of the queue. */
static void
send_next(struct vhu_conn *c)
{
	struct send_op *tx = &c->tx;
	struct sendq *q = &c->q;
	struct sq_desc *d = desc(q, 0);
	unsigned int cnt = 0;
	uint32_t i;

	memset(&tx->mh, 0, sizeof(tx->mh));
	tx->nfds = 0;
	if (d->nfds > 0) {
		int fds[VHU_MAX_FDS];

		memcpy(fds, q->buf + d->off + d->len, d->nfds * sizeof(int));
		/* Cannot fail: the count was checked when the message was queued. */
		vhu_cmsg_build(&tx->mh, &tx->cbuf, fds, d->nfds);
		tx->nfds = d->nfds;
		tx->iov[0].iov_base = q->buf + d->off;
		tx->iov[0].iov_len = d->len;
		cnt = 1;
		i = 1;
	} else {
		for (i = 0; i < q->dn; i++) {
			uint8_t *p;

			d = desc(q, i);
			if (d->nfds > 0) {
				break;
			}
			p = q->buf + d->off;
			if (cnt > 0 && (uint8_t *)tx->iov[cnt - 1].iov_base +
					       tx->iov[cnt - 1].iov_len == p) {
				tx->iov[cnt - 1].iov_len += d->len;
				continue;
			}
			if (cnt == VHU_SEND_IOVS) {
				break;
			}
			tx->iov[cnt].iov_base = p;
			tx->iov[cnt].iov_len = d->len;
			cnt++;
		}
	}
	tx->nmsgs = i;
	q->held = 0;
	vhu_iovc_init(&tx->cur, tx->iov, cnt);
	submit(c);
}

int
vhu_conn_send(struct vhu_conn *c, const struct vhu_hdr *hdr, const void *body, size_t body_len,
	      const void *payload, size_t payload_len, const int *fds, unsigned int nfds)
{
	struct sendq *q;
	struct sq_desc *d;
	uint64_t need;
	uint32_t off, len;
	uint8_t *p;
	unsigned int i;
	int ret;

	if (!c || !hdr) {
		return -EINVAL;
	}
	if (c->tx_shut) {
		return -EPIPE;
	}
	if (c->state != CONN_OPEN) {
		return -ENOTCONN;
	}
	if (nfds > VHU_MAX_FDS) {
		return -VHU_EFDS;
	}
	if ((nfds > 0 && !fds) || (body_len > 0 && !body) || (payload_len > 0 && !payload)) {
		return -EINVAL;
	}
	for (i = 0; i < nfds; i++) {
		if (fds[i] < 0) {
			return -EINVAL;
		}
	}
	if (body_len > UINT32_MAX || payload_len > UINT32_MAX - body_len ||
	    hdr->size != body_len + payload_len) {
		return -EINVAL;
	}
	q = &c->q;
	need = (uint64_t)VHU_HDR_SIZE + hdr->size + nfds * sizeof(int);
	if (need > q->cap) {
		return -VHU_EOVERSIZED;
	}
	len = VHU_HDR_SIZE + hdr->size;
	ret = sq_alloc(q, (uint32_t)need, &off);
	if (ret < 0) {
		q->refused = true;	/* on_writable is called once there is room again */
		return ret;
	}
	p = q->buf + off;
	memcpy(p, hdr, VHU_HDR_SIZE);
	if (body_len > 0) {
		memcpy(p + VHU_HDR_SIZE, body, body_len);
	}
	if (payload_len > 0) {
		memcpy(p + VHU_HDR_SIZE + body_len, payload, payload_len);
	}
	if (nfds > 0) {
		memcpy(p + len, fds, nfds * sizeof(int));
	}
	d = desc(q, q->dn);
	d->off = off;
	d->len = len;
	d->nfds = nfds;
	d->size = (uint32_t)need;
	q->dn++;
	q->used += (uint32_t)need;
	if (q->dn == 1) {
		q->head = off;
	}
	if (c->ring->depth > 0) {
		/*
		 * Inside a reaping pass: what the pass queues goes out together at
		 * its end, or as soon as VHU_FLUSH_EVERY are queued (not on a
		 * borrowed ring, whose SQ the application may be filling).
		 */
		vhu__send_schedule(c);
		if (++c->ring->unflushed >= VHU_FLUSH_EVERY && !c->ring->borrowed) {
			vhu__ring_flush_early(c->ring);
		}
	} else {
		vhu__send_flush(c);
	}
	return 0;
}

/* Drop every queued message, closing its fds (the connection is going away). */
void
vhu__sendq_drop(struct sendq *q)
{
	for (uint32_t i = 0; i < q->dn; i++) {
		close_entry_fds(q, desc(q, i));
	}
	sq_pop(q, q->dn);
}

/*
 * Exact mode holds replies while the peer has more requests waiting in the
 * socket (so a pipelining peer gets them in one sendmsg), but for at most
 * VHU_HOLD_READS reads and never beyond half the queue, so that held
 * replies leave at least half of it to new ones; and never once the peer
 * has hung up or the receive side waits for room.
 */
static bool
held(const struct vhu_conn *c)
{
	const struct sendq *q = &c->q;

	return q->hold && q->held < VHU_HOLD_READS && q->dn < q->dcap / 2 &&
	       q->used < q->cap / 2 && c->rx_eof == 0 && !c->rx_starved;
}

/*
 * An exact-mode read completed; more: the socket still has bytes. Replies
 * held while it had go out when it runs dry, or after VHU_HOLD_READS reads.
 */
void
vhu__send_read_done(struct vhu_conn *c, bool more)
{
	struct sendq *q = &c->q;

	if (q->dn > 0 && !c->tx.s.busy && ++q->held >= VHU_HOLD_READS) {
		vhu__send_schedule(c);
	}
	if (q->hold && !more) {
		vhu__send_schedule(c);
	}
	q->hold = more;
}

void
vhu__send_schedule(struct vhu_conn *c)
{
	if (vlist_empty(&c->flush_link)) {
		vlist_add_tail(&c->ring->flush, &c->flush_link);
	}
}

void
vhu__send_flush(struct vhu_conn *c)
{
	if (c->state == CONN_OPEN && c->q.dn > 0 && !c->tx.s.busy && !held(c)) {
		send_next(c);
	}
}

/* After messages left the queue: who was waiting for room gets it. */
static void
sent_room(struct vhu_conn *c)
{
	struct sendq *q = &c->q;

	if (c->state != CONN_OPEN) {
		return;
	}
	if (q->dn == 0 && c->tx_shut) {
		vhu__conn_shut_send(c);
		return;
	}
	if (c->rx_eof && q->dn == 0 && !c->cb.on_hangup) {
		/* Every reply to a peer that hung up is out: now it closes. */
		vhu_conn_close_reason(c, c->rx_eof);
		return;
	}
	if (c->rx_starved && vhu__send_room(c)) {
		c->rx_starved = false;
		vhu__recv_wake(c);
	}
	if (q->refused && q->dn <= q->dcap / 2 && q->used <= q->cap / 2) {
		q->refused = false;
		if (c->cb.on_writable) {
			c->cb.on_writable(c, c->ctx);
		}
	}
}

void
vhu__send_complete(struct vhu_conn *c, struct io_uring_cqe *cqe)
{
	struct send_op *tx = &c->tx;
	int res = cqe->res;

	vhu__conn_op_end(c, &tx->s);
	if ((res == -EAGAIN || res == -EINTR) && c->state == CONN_OPEN) {
		/* Nothing was sent: the same sendmsg again, control buffer included. */
		submit(c);
		return;
	}
	if (tx->nfds > 0) {
		/* The sendmsg that carried them is over: the kernel has its own references. */
		close_entry_fds(&c->q, desc(&c->q, 0));
		tx->nfds = 0;
		tx->mh.msg_control = NULL;
		tx->mh.msg_controllen = 0;
	}
	if (res <= 0) {
		/* A peer that hung up and stopped reading: the hang-up is the reason. */
		vhu_conn_close_reason(c, c->rx_eof ? c->rx_eof : res < 0 ? res : -VHU_EPARTIAL);
		return;
	}
	vhu_iovc_advance(&tx->cur, (size_t)res);
	if (!vhu_iovc_done(&tx->cur)) {
		/* Short send: the rest goes without the fds, which went with the first chunk. */
		c->ring->st.short_sends++;
		if (c->state == CONN_OPEN) {
			submit(c);
		}
		return;
	}
	sq_pop(&c->q, tx->nmsgs);
	c->ring->st.msgs_out += tx->nmsgs;
	vhu__send_flush(c);
	sent_room(c);
}
