/* SPDX-License-Identifier: MIT */
/*
 * Private structures of the io_uring engine, shared by its files.
 *
 * Ownership and lifetime rules that every file relies on:
 *  - An operation is a slot embedded in its owner (connection or listener).
 *    user_data is vhu__tag(slot): the slot's address with bit 0 set
 *    (vhu__op_begin writes it, dispatch reads it back with vhu__untag). A
 *    slot is busy from the SQE until its last CQE (the one without
 *    IORING_CQE_F_MORE); its msghdr, iovecs and control buffer stay put
 *    meanwhile.
 *  - An owner counts its busy slots (ops; vhu__op_begin / vhu__op_end). It
 *    is freed only when it is closing and ops is 0, and only from the end of
 *    a reaping pass (vhu__ring_deferred), never from inside one of its own
 *    callbacks.
 *  - Each piece of connection state has one writer: recv.c the receive
 *    state (struct rx_exact / rx_stream / rx_hold) and the decision to read;
 *    send.c the send queue and the reply-hold policy; conn.c the lifecycle.
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
	SLOT_APP,		/* a struct vhu_op (op.c) */
	SLOT_APP_CANCEL,	/* the ring's shared cancel of application ops */
	SLOT_XWAKE,		/* another ring's MSG_RING: drain the inbox (xring.c) */
};

struct slot {
	uint32_t kind;		/* enum slot_kind */
	uint32_t busy;
};

_Static_assert(_Alignof(struct slot) >= 4,
	       "bit 0 of user_data marks vhu's CQEs, bit 1 a MSG_RING's own (vhu__xsend_tag)");
/* An application op's priv is a slot followed by a list node. */
_Static_assert(offsetof(struct vhu_op, priv.kind) + sizeof(struct slot) ==
	       offsetof(struct vhu_op, priv.link), "vhu_op.priv starts with a slot");
_Static_assert(sizeof(((struct vhu_op *)0)->priv.link) == sizeof(struct vlist),
	       "vhu_op.priv.link holds a list node");

/* The user_data of a slot's SQEs, and back. */
static inline uint64_t
vhu__tag(const struct slot *s)
{
	return (uint64_t)(uintptr_t)s | 1u;
}

static inline bool
vhu__is_tag(uint64_t user_data)
{
	return (user_data & 1u) != 0;
}

static inline struct slot *
vhu__untag(uint64_t user_data)
{
	return (struct slot *)(uintptr_t)(user_data & ~(uint64_t)1);
}

/*
 * The user_data of our MSG_RING to ring to (its CQE on the sender, xring.c):
 * to's address with bits 0 and 1 set (a slot's tag has bit 1 clear). Not a
 * slot in to: to may be gone (its thread stopped) before the sender reaps
 * that CQE, so to is read only to send a failed wake-up again.
 */
#define VHU_XSEND_BITS	3u

static inline uint64_t
vhu__xsend_tag(const void *to)
{
	return (uint64_t)(uintptr_t)to | VHU_XSEND_BITS;
}

static inline bool
vhu__is_xsend(uint64_t user_data)
{
	return (user_data & VHU_XSEND_BITS) == VHU_XSEND_BITS;
}

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
 * A stream receive's payload lands this far into its buffer's slot, so that
 * the body of a message at the start of a chunk (12 bytes in) is 8-byte
 * aligned: zero-copy delivery.
 */
#define VHU_BUF_SKEW		4u

/*
 * Control buffer of a stream receive: room for one fd more than a message
 * may carry (its msg_controllen is CMSG_LEN of 33 fds), so that a 33rd fd
 * arrives and is refused by count (-VHU_EFDS) instead of being truncated by
 * the kernel (-VHU_ECTRUNC); a 34th is truncated.
 */
union vhu_stream_cbuf {
	size_t align;
	char buf[CMSG_SPACE(sizeof(int) * (VHU_MAX_FDS + 1u))];
};

/*
 * VHU_REPLY_RESERVE (uring.h) covers every reply of both channels' tables
 * (GET_CONFIG's, 12 + 12 + 256 bytes, is the largest) plus an fd.
 */

/*
 * A paused stream connection keeps the provided buffer of its unread rest
 * while fewer than 1/VHU_HOLD_SHARE of the ring's buffers are so held;
 * beyond that the rest is copied to the connection's own spill buffer and
 * the provided one goes back, so paused connections never starve the others.
 */
#define VHU_HOLD_SHARE		4u

/*
 * Exact mode holds replies for at most this many reads, so a peer that keeps
 * its socket from ever running dry (a stream of one-way messages) does not
 * hold a reply back for as long as it sends.
 */
#define VHU_HOLD_READS		32u

/*
 * Exact mode reads at most this many times with plain recvmsg per pass
 * while the socket holds more (then an io_uring read takes over, so one
 * busy peer cannot hold the ring).
 */
#define VHU_DRAIN_READS		64u

/*
 * Replies queued inside one reaping pass are submitted together at its end,
 * except that as soon as this many are queued they go out at once: a peer
 * that sent a long pipeline gets its first replies while the rest are still
 * being handled, instead of waiting for the whole pass (its wake-up
 * overlaps our work).
 */
#define VHU_FLUSH_EVERY		64u

/* Most iovecs one batched sendmsg uses (queued bytes are contiguous or wrap once). */
#define VHU_SEND_IOVS		4u

struct recv_op {
	struct slot s;
	struct msghdr mh;
	struct iovec iov;
	union {
		union vhu_cmsg_buf exact;
		union vhu_stream_cbuf stream;
	} cbuf;
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
	uint32_t reserve;		/* VHU_REPLY_RESERVE, clamped to cap / 2 */
	/*
	 * Exact mode's reply hold: the last read left bytes in the socket, so
	 * replies wait to go out together (and the next read does not wait);
	 * held counts the reads since, bounded by VHU_HOLD_READS.
	 */
	bool hold;
	uint32_t held;
	bool refused;			/* a send got -VHU_EQFULL: on_writable is due */
};

enum conn_state {
	CONN_OPEN = 0,
	CONN_CLOSING,
};

enum rx_phase {
	RX_HDR = 0,
	RX_BODY,
};

/* Exact receive: the message being read, in the connection's own buffers. */
struct rx_exact {
	uint8_t phase;			/* enum rx_phase */
	uint32_t got;
	union {
		struct vhu_hdr h;
		uint8_t b[VHU_HDR_SIZE];
	} hdr;
	uint8_t *body;			/* max_size bytes */
	struct vhu_fds fds;
	bool draining;			/* inside exact_drain(): it reads the next part itself */
};

/*
 * Stream receive: the framer, and the rest of a chunk whose delivery
 * stopped (a pause, a full send queue): its bytes [off, len) are in
 * provided buffer bid (>= 0) or in spill, its unattributed fds in fds.
 */
struct rx_stream {
	struct vhu_framer fr;
	int bid;
	bool kept;			/* bid counts in ring->bufs_held */
	uint8_t *data;
	uint32_t off;
	uint32_t len;
	struct vhu_fds fds;
	uint8_t *spill;			/* buf_stride bytes, allocated at the first spill */
};

/*
 * A message whose delivery was put off (VHU_MSG_HOLD, a pause, no room for
 * its reply): it is delivered first when receiving resumes. Its body is in
 * the exact buffer or the framer's buffer, neither of which is written
 * before then.
 */
struct rx_hold {
	bool on;
	struct vhu_hdr hdr;
	void *body;
	struct vhu_fds fds;
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
	bool rx_more;			/* the last read left bytes in the socket */
	bool rx_paused;			/* vhu_conn_pause_recv() or VHU_MSG_HOLD */
	bool rx_starved;		/* stopped for want of send-queue room */
	/*
	 * The peer hung up (its reason): with replies queued the connection
	 * closes once they are out; with on_hangup it stays open for sending
	 * until the application shuts its side down too.
	 */
	int rx_eof;
	bool tx_shut;			/* vhu_conn_shutdown(): no more sends */
	bool tx_shut_done;		/* ... and the socket's sending side is shut down */
	struct rx_hold held;
	struct rx_exact x;
	struct rx_stream st;

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
	/*
	 * Internal (the device layer's reactors): takes each accepted socket
	 * instead of attaching it here; max_conns is then the hook's to keep.
	 */
	void (*on_fd)(struct vhu_ulistener *l, int fd, void *ctx);
};

/*
 * A message to another ring's thread (xring.c): embedded in its owner,
 * which must stay put until fn has run on the target ring.
 */
struct vhu__xmsg {
	struct vhu__xmsg *next;		/* atomic */
	void (*fn)(struct vhu_ring *r, struct vhu__xmsg *m);
};

/* A ring's inbox: producers on any thread, the consumer on the ring's own. */
struct xinbox {
	struct vhu__xmsg *head;		/* newest (producers, atomic exchange) */
	struct vhu__xmsg *tail;		/* oldest (consumer only) */
	struct vhu__xmsg stub;
	bool wake;			/* a wake-up is on its way (atomic) */
	struct slot wake_slot;		/* SLOT_XWAKE: the CQE a sender's MSG_RING posts here */
};

/* Steps of the fall back from spinning to waiting, for a test's hook (device_poll.c). */
enum {
	VHU__POLL_STEP_ENABLED = 1,	/* notifications on, the avail rings not yet re-checked */
	VHU__POLL_STEP_SLEEP,		/* re-checked, nothing: the ring is about to block */
};

/*
 * Device queues in poll mode whose data path runs on this ring
 * (device_poll.c): spun on while there is work, waited on with guest
 * notifications on once idle_ns passed without any.
 */
struct ring_poll {
	struct vlist queues;		/* struct dev_queue.poll_link */
	unsigned int n;
	bool spinning;			/* notifications are off on every queue listed */
	uint64_t idle_since_ns;		/* the first pass of the current idle spell, or 0 */
	unsigned int idle_passes;	/* passes of the current idle spell */
	uint64_t idle_ns;		/* the longest idle interval among the queues listed */
	void (*hook)(struct vhu_ring *r, int step, void *ctx);	/* tests only */
	void *hook_ctx;
};

struct vhu_ring {
	struct io_uring *uring;
	struct io_uring own;
	bool borrowed;
	bool enter_to_reap;		/* poll() enters every time: no IORING_SQ_TASKRUN */
	bool wait_found;		/* the last vhu_ring_wait() returned work */
	uint64_t wait_spin_ns;		/* vhu_ring_opts.wait_spin_us */
	bool destroying;
	unsigned int depth;		/* nesting of reaping passes */
	unsigned int max_conns;
	unsigned int nconns;
	unsigned int ops;		/* vhu operations in flight */
	unsigned int app_ops;		/* of which application ops (struct vhu_op) */
	unsigned int max_ops;		/* vhu_ring_opts.max_ops */
	struct vlist app;		/* the application ops in flight */
	struct slot app_cancel;		/* shared by every vhu_op_cancel (counted in ops) */
	unsigned int setup_flags;
	void (*foreign_cqe)(struct io_uring_cqe *cqe, void *ctx);
	void *foreign_ctx;
	struct vlist conns;
	struct vlist listeners;
	struct vlist reap;
	struct vlist lreap;
	struct vlist rearm;		/* receive sides to advance at the end of the pass, after flush */
	struct vlist flush;		/* connections with queued, unsubmitted sends */
	unsigned int unflushed;		/* messages queued since the flush list was last emptied */
	struct vlist deadlines;
	struct vlist dev_calls;		/* device queues that pushed this pass (device_queue.c) */
	struct ring_poll poll;		/* device queues in poll mode (device_poll.c) */
	/* provided buffers, set up by the first stream connection */
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	unsigned int nbufs;		/* a power of two */
	unsigned int buf_stride;	/* bytes per buffer */
	unsigned int bufs_held;		/* buffers kept by paused stream connections */
	struct vhu_ring_stats st;
	struct xinbox xin;
	uint64_t xwake_failures;	/* wake-ups that could not be sent (retried) */
};

/* ring.c */
struct io_uring_sqe *vhu__ring_sqe(struct vhu_ring *r);
void vhu__op_begin(struct vhu_ring *r, unsigned int *owner_ops, struct slot *s,
		   struct io_uring_sqe *sqe);
void vhu__op_end(struct vhu_ring *r, unsigned int *owner_ops, struct slot *s);
void vhu__ring_deferred(struct vhu_ring *r);
int vhu__ring_bufs_setup(struct vhu_ring *r);
uint8_t *vhu__ring_buf(struct vhu_ring *r, unsigned int bid);
void vhu__ring_buf_put(struct vhu_ring *r, unsigned int bid);
uint64_t vhu__now_ns(void);

/* The ring whose poll/wait/handle_cqe runs on this thread now, or NULL. */
struct vhu_ring *vhu__ring_current(void);

/* xring.c */
void vhu__xring_init(struct vhu_ring *r);
void vhu__xring_post(struct vhu_ring *from, struct vhu_ring *to, struct vhu__xmsg *m);
void vhu__xring_drain(struct vhu_ring *r);
void vhu__xring_sent(struct vhu_ring *r, uint64_t user_data, int res);

/* op.c */
void vhu__op_complete(struct vhu_ring *r, struct slot *s, struct io_uring_cqe *cqe);
void vhu__op_cancel_all(struct vhu_ring *r);

/* device_queue.c: end of a reaping pass (the calls due) */
void vhu__dev_pass_end(struct vhu_ring *r);

/* device_poll.c: poll mode (the ring's side of it) */
int vhu__dev_poll_pass(struct vhu_ring *r);
bool vhu__dev_poll_idle(struct vhu_ring *r);
int vhu__dev_poll_sleep(struct vhu_ring *r);

/* conn.c */
void vhu__conn_track(struct vhu_conn *c, struct slot *s, struct io_uring_sqe *sqe);
void vhu__conn_op_end(struct vhu_conn *c, struct slot *s);
void vhu__conn_peer_gone(struct vhu_conn *c, int reason);
void vhu__conn_shut_send(struct vhu_conn *c);
void vhu__conn_settle(struct vhu_conn *c);
void vhu__conn_finish(struct vhu_conn *c);
void vhu__conn_cancel_complete(struct vhu_conn *c, struct io_uring_cqe *cqe);
void vhu__conn_deadline_arm(struct vhu_conn *c);
void vhu__conn_deadline_disarm(struct vhu_conn *c);

/* send.c */
int vhu__sendq_init(struct sendq *q, uint32_t bytes, uint32_t msgs);
void vhu__sendq_fini(struct sendq *q);
void vhu__sendq_drop(struct sendq *q);
bool vhu__send_room(const struct vhu_conn *c);
void vhu__send_read_done(struct vhu_conn *c, bool more);
void vhu__send_complete(struct vhu_conn *c, struct io_uring_cqe *cqe);
void vhu__send_schedule(struct vhu_conn *c);
void vhu__send_flush(struct vhu_conn *c);
/* ring.c: submit the sends of every connection on the flush list now (inside a pass) */
void vhu__ring_flush_early(struct vhu_ring *r);

/* recv.c */
int vhu__recv_init(struct vhu_conn *c);
void vhu__recv_fini(struct vhu_conn *c);
void vhu__recv_wake(struct vhu_conn *c);
void vhu__recv_pump(struct vhu_conn *c);
void vhu__recv_complete(struct vhu_conn *c, struct io_uring_cqe *cqe);

/* listener.c */
void vhu__ulistener_take_fds(struct vhu_ulistener *l,
			     void (*on_fd)(struct vhu_ulistener *l, int fd, void *ctx));
void vhu__ulistener_accept_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_cancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_timer_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_tcancel_complete(struct vhu_ulistener *l, struct io_uring_cqe *cqe);
void vhu__ulistener_conn_gone(struct vhu_ulistener *l);
void vhu__ulistener_fd_freed(struct vhu_ring *r);
void vhu__ulistener_free(struct vhu_ulistener *l);

#endif
