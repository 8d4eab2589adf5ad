/* SPDX-License-Identifier: MIT */
/*
 * Private structures of the io_uring engine, shared by its files.
 *
 * Ownership and lifetime rules that every file relies on:
 *  - An operation is a slot embedded in its owner (connection or listener).
 *    user_data is (uintptr_t)slot | 1. A slot is busy from the SQE until its
 *    last CQE (the one without IORING_CQE_F_MORE); its msghdr, iovecs and
 *    control buffer stay put meanwhile.
 *  - An owner counts its busy slots (ops). It is freed only when it is
 *    closing and ops is 0, and only from the end of a reaping pass
 *    (vhu__ring_deferred), never from inside one of its own callbacks.
 */
#ifndef VHU_URING_INTERNAL_H
#define VHU_URING_INTERNAL_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/iov.h>
#include <vhu/listener.h>
#include <vhu/uring.h>
#include <vhu/wire.h>

#include "framer.h"

#define vhu_container_of(p, type, member) \
	((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Intrusive doubly linked list; a detached node points at itself. */
struct vlist {
	struct vlist *prev;
	struct vlist *next;
};

static inline void
vlist_init(struct vlist *l)
{
	l->prev = l;
	l->next = l;
}

static inline bool
vlist_empty(const struct vlist *l)
{
	return l->next == l;
}

static inline void
vlist_add_tail(struct vlist *head, struct vlist *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

static inline void
vlist_del(struct vlist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	vlist_init(n);
}

/* ------------------------------------------------------------------ */
/* Slots                                                               */

enum slot_kind {
	SLOT_RECV = 1,
	SLOT_SEND,
	SLOT_CANCEL,
	SLOT_ACCEPT,
	SLOT_ACCEPT_CANCEL,
	SLOT_ACCEPT_TIMER,
	SLOT_TIMER_CANCEL,
};

struct slot {
	uint32_t kind;		/* enum slot_kind */
	uint32_t busy;
};

_Static_assert(_Alignof(struct slot) >= 2, "bit 0 of user_data marks vhu's CQEs");

/* Provided-buffer ring shared by the ring's stream connections. */
/* Buffer group id 'VH': unlikely to clash with an application's in a borrowed ring. */
#define VHU_BGID		0x5648u
/* Defaults of vhu_ring_opts.stream_bufs and stream_buf_size: 64 x (64 KiB + 256). */
#define VHU_NBUFS		64u
#define VHU_BUF_STRIDE		(65536u + 256u)
/* Bounds: the buffer ring holds at most 32768 entries; a buffer must hold the control area. */
#define VHU_NBUFS_MIN		8u
#define VHU_NBUFS_MAX		32768u
#define VHU_BUF_STRIDE_MIN	4352u
#define VHU_BUF_STRIDE_MAX	(16u * 1024u * 1024u)
/*
 * Control space of a stream receive: room for VHU_MAX_FDS fds plus 4 bytes,
 * so that the payload starts 4 bytes past an 8-byte boundary and the body of
 * a message at the start of a chunk is 8-byte aligned (zero-copy delivery).
 * A 33rd fd therefore arrives and is rejected by count (-VHU_EFDS) instead
 * of being truncated by the kernel (-VHU_ECTRUNC).
 */
#define VHU_STREAM_CTRL		(CMSG_SPACE(sizeof(int) * VHU_MAX_FDS) + 4u)

/*
 * Exact mode holds replies for at most this many reads, so a peer that keeps
 * its socket from ever running dry (a stream of one-way messages) does not
 * hold a reply back for as long as it sends.
 */
#define VHU_HOLD_READS		32u

/* Most iovecs one batched sendmsg uses (queued bytes are contiguous or wrap once). */
#define VHU_SEND_IOVS		4u

struct recv_op {
	struct slot s;
	struct msghdr mh;		/* exact: per op; stream: multishot template */
	struct iovec iov;
	union vhu_cmsg_buf cbuf;
};

struct send_op {
	struct slot s;
	struct msghdr mh;
	struct iovec iov[VHU_SEND_IOVS];
	struct vhu_iovc cur;
	union vhu_cmsg_buf cbuf;
	uint32_t nmsgs;			/* queue entries carried by this sendmsg */
	uint32_t nfds;			/* fds in cbuf, not yet closed */
};

/* One queued message: len wire bytes at off, then nfds ints. */
struct sq_desc {
	uint32_t off;
	uint32_t len;
	uint32_t nfds;
	uint32_t size;			/* bytes taken in buf: len plus the fds */
};

struct sendq {
	uint8_t *buf;
	uint32_t cap;
	uint32_t head;			/* offset of the oldest entry */
	uint32_t tail;			/* where the next entry goes */
	struct sq_desc *d;
	uint32_t dcap;
	uint32_t dhead;
	uint32_t dn;
	uint32_t used;			/* bytes held by queued entries */
};

enum conn_state {
	CONN_OPEN = 0,
	CONN_CLOSING,
};

enum rx_phase {
	RX_HDR = 0,
	RX_BODY,
};

struct vhu_conn {
	struct vhu_ring *ring;
	struct vlist link;		/* ring->conns */
	struct vlist reap_link;		/* ring->reap */
	struct vlist rearm_link;	/* ring->rearm */
	struct vlist flush_link;	/* ring->flush */
	struct vlist dl_link;		/* ring->deadlines */
	struct vhu_ulistener *listener;	/* accepted by it, or NULL */
	int fd;
	uint8_t state;			/* enum conn_state */
	uint8_t mode;			/* enum vhu_recv_mode */
	bool frames_only;		/* size and fd limits only, no protocol checks */
	int reason;
	unsigned int ops;		/* busy slots */
	struct vhu_rules rules;		/* max_size resolved */
	struct vhu_conn_ops cb;
	void *ctx;
	uint32_t msg_timeout_ms;
	uint64_t deadline_ns;

	struct recv_op rx;
	/* exact receive */
	uint8_t rx_phase;
	/*
	 * The last read left bytes in the socket (IORING_CQE_F_SOCK_NONEMPTY):
	 * replies are held back to go out together, and the next read does not
	 * wait (MSG_DONTWAIT), so they are flushed as soon as the socket is dry.
	 */
	bool rx_more;
	/* Reads completed while replies were held: at VHU_HOLD_READS they go out. */
	uint32_t rx_held;
	uint32_t rx_got;
	union {
		struct vhu_hdr h;
		uint8_t b[VHU_HDR_SIZE];
	} rx_hdr;
	uint8_t *rx_body;
	struct vhu_fds rx_fds;
	/* stream receive */
	struct vhu_framer fr;

	struct send_op tx;
	struct sendq q;
	struct slot cancel;
};

struct vhu_ulistener {
	struct vhu_ring *ring;
	struct vlist link;		/* ring->listeners */
	struct vlist reap_link;		/* ring->lreap */
	struct vhu_listener *lis;	/* NULL once closed */
	int fd;
	bool closed;
	unsigned int ops;
	unsigned int nconns;
	unsigned int max_conns;
	struct slot accept;
	struct slot cancel;
	/*
	 * Paused after accept failed for lack of fds or memory: re-armed when
	 * a connection of the ring closes or the timer fires, whichever is first.
	 */
	bool backoff;
	struct slot timer;
	struct slot tcancel;
	struct __kernel_timespec backoff_ts;	/* read when the SQE is submitted */
	struct vhu_conn_opts conn_opts;
	struct vhu_conn_ops cb;
	void *ctx;
	void (*on_accept)(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx);
};

struct vhu_ring {
	struct io_uring *uring;
	struct io_uring own;
	bool borrowed;
	bool defer_taskrun;		/* completions need an enter to be posted */
	bool destroying;
	unsigned int depth;		/* nesting of reaping passes */
	unsigned int max_conns;
	unsigned int nconns;
	unsigned int ops;		/* vhu operations in flight */
	unsigned int setup_flags;
	void (*foreign_cqe)(struct io_uring_cqe *cqe, void *ctx);
	void *foreign_ctx;
	struct vlist conns;
	struct vlist listeners;
	struct vlist reap;
	struct vlist lreap;
	struct vlist rearm;		/* receives to arm at the end of the pass, after flush */
	struct vlist flush;		/* connections with queued, unsubmitted sends */
	struct vlist deadlines;
	/* provided buffers, set up by the first stream connection */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	unsigned int nbufs;		/* a power of two */
	unsigned int buf_stride;	/* bytes per buffer */
	struct vhu_ring_stats st;
};

/* ring.c */
struct io_uring_sqe *vhu__ring_sqe(struct vhu_ring *r);
void vhu__ring_deferred(struct vhu_ring *r);
int vhu__ring_bufs_setup(struct vhu_ring *r);
uint8_t *vhu__ring_buf(struct vhu_ring *r, unsigned int bid);
void vhu__ring_buf_put(struct vhu_ring *r, unsigned int bid);
uint64_t vhu__now_ns(void);

/* conn.c */
void vhu__conn_track(struct vhu_conn *c, struct slot *s, struct io_uring_sqe *sqe);
void vhu__conn_op_end(struct vhu_conn *c, struct slot *s);
void vhu__conn_settle(struct vhu_conn *c);
void vhu__conn_finish(struct vhu_conn *c);
void vhu__conn_cancel_complete(struct vhu_conn *c, struct io_uring_cqe *cqe);
void vhu__conn_deadline_arm(struct vhu_conn *c);
void vhu__conn_deadline_disarm(struct vhu_conn *c);
int vhu__conn_deliver(struct vhu_conn *c, const struct vhu_hdr *hdr, void *body,
		      struct vhu_fds *fds);

/* send.c */
int vhu__sendq_init(struct sendq *q, uint32_t bytes, uint32_t msgs);
void vhu__sendq_fini(struct sendq *q);
void vhu__send_complete(struct vhu_conn *c, struct io_uring_cqe *cqe);
void vhu__send_schedule(struct vhu_conn *c);
void vhu__send_flush(struct vhu_conn *c);

/* recv.c */
void vhu__recv_arm(struct vhu_conn *c);
void vhu__recv_rearm(struct vhu_conn *c);
void vhu__recv_complete(struct vhu_conn *c, struct io_uring_cqe *cqe);

/* listener.c */
void vhu__ulistener_accept_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_cancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_timer_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_tcancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_conn_gone(struct vhu_ulistener *l);
void vhu__ulistener_fd_freed(struct vhu_ring *r);
void vhu__ulistener_free(struct vhu_ulistener *l);

#endif
