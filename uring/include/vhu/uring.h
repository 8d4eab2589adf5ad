/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The vhu io_uring engine: vhost-user connections on an io_uring.
 *
 * A struct vhu_ring drives any number of connections from one thread
 * (single issuer). Sends and receives are IORING_OP_SENDMSG/RECVMSG
 * operations whose control buffers carry the fds; completion handlers
 * advance the scatter-gather cursors and resubmit short transfers; the
 * framing layer above them hands whole, validated messages to on_message.
 *
 * Threading: every function here must be called on the thread that created
 * the ring (SPDK-style: one ring per core, no hidden threads). Callbacks run
 * inside vhu_ring_poll() / vhu_ring_wait() on that thread, and may call any
 * function here, including vhu_conn_close() and vhu_conn_send().
 *
 * Memory: all per-connection memory is allocated when the connection is
 * attached; the steady-state message path does not allocate.
 */
#ifndef VHU_URING_H
#define VHU_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/wire.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

struct io_uring;
struct io_uring_cqe;
struct vhu_ring;
struct vhu_conn;
struct vhu_ulistener;

/* ------------------------------------------------------------------ */
/* Ring                                                                */

/*
 * The option and statistics structs below grow at their ends as vhu gains
 * features; until vhu 1.0 that is not an ABI promise: rebuild against the
 * headers of the libvhu you link. Zero-initialise options you do not set.
 */
struct vhu_ring_opts {
	/** SQ entries; 0 means 256. The CQ is sized from max_conns. */
	unsigned int sq_entries;
	/** Most connections attached at once; 0 means 1024. */
	unsigned int max_conns;
	/**
	 * Tune for a caller that spins on vhu_ring_poll() (a reactor core):
	 * an idle poll() is then a read of the CQ tail and of the SQ flags
	 * with no system call, and enters the kernel only when the kernel
	 * flags completion work (IORING_SQ_TASKRUN) or there is something to
	 * submit; the kernel never interrupts the spinning CPU with an IPI to
	 * run that work. The ring is SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG
	 * where the kernel has them (completions posted in batches when the
	 * ring enters), else COOP_TASKRUN|TASKRUN_FLAG. Without busy_poll (the
	 * default) the ring is the same on kernels that have all three flags,
	 * and may fall back to a DEFER_TASKRUN ring without TASKRUN_FLAG,
	 * whose every poll() enters the kernel.
	 */
	bool busy_poll;
	/**
	 * Use the application's ring instead of creating one. vhu marks its
	 * own user_data with bit 0 set: the application's user_data values
	 * must have bit 0 clear (pointers to aligned objects do). CQEs that
	 * are not vhu's go to foreign_cqe.
	 */
	struct io_uring *borrow;
	/**
	 * Called from poll()/wait() for CQEs of a borrowed ring that are not
	 * vhu's. It must not mark the CQE seen: vhu advances the CQ.
	 */
	void (*foreign_cqe)(struct io_uring_cqe *cqe, void *ctx);
	void *foreign_ctx;
	/**
	 * Receive buffers of stream-mode connections, shared by all of the
	 * ring's: how many (a power of two, 8..32768; 0 means 64) and the
	 * bytes of each (a multiple of 8, 4352..16 MiB; 0 means 64 KiB + 256;
	 * a read fills all but the first 4 bytes). One read fills at most one
	 * buffer, so larger buffers mean fewer reads and fewer messages
	 * reassembled across two;
	 * more buffers let more connections receive in one pass before the
	 * kernel reports -ENOBUFS (recovered: the data waits in the socket).
	 * Memory: count x size, mapped when the first stream connection
	 * attaches (4.1 MiB by default). Bad values: -EINVAL.
	 */
	unsigned int stream_bufs;
	unsigned int stream_buf_size;
	/**
	 * Application operations (struct vhu_op) expected in flight at once;
	 * the CQ is sized for them on top of the connections' (0: none).
	 */
	unsigned int max_ops;
	/**
	 * vhu_ring_wait(): spin this many microseconds (vhu_ring_poll()
	 * passes, which make no system call while the kernel flags nothing)
	 * before blocking, when the previous wait returned work; 0 (the
	 * default) blocks at once. Where a wake-up is dear (a VM whose idle
	 * vCPUs halt: the waker pays an IPI, the woken 10 µs or more), a
	 * server whose next message usually comes within the interval takes
	 * it without either, and so does its peer. The cost: up to this much
	 * CPU each time traffic stops; a ring that found nothing blocks at
	 * once. The spin counts toward vhu_ring_wait()'s timeout. Not used
	 * with device poll mode (vhu_dev_opts.poll), which has its own
	 * interval, nor where every poll enters the kernel.
	 */
	unsigned int wait_spin_us;
};

/** Counters, for benchmarks and tests. */
struct vhu_ring_stats {
	uint64_t enters;	/**< io_uring_enter calls made */
	uint64_t sqes;		/**< SQEs submitted */
	uint64_t cqes;		/**< vhu CQEs handled */
	uint64_t msgs_in;	/**< messages delivered to on_message */
	uint64_t msgs_out;	/**< messages fully sent */
	uint64_t short_sends;	/**< sends resubmitted after a short transfer */
	uint64_t rearms;	/**< stream-mode reads armed */
	uint64_t enobufs;	/**< provided-buffer exhaustions recovered */
	uint64_t accept_errors;	/**< listener accepts that failed (-EMFILE, ...) */
	uint64_t accept_backoffs; /**< listener pauses for lack of fds or memory */
	uint64_t sendmsgs;	/**< sendmsg operations submitted (messages_out / sendmsgs: batching) */
	uint64_t direct_reads;	/**< exact-mode reads done with plain recvmsg while the socket held more */
	uint64_t poll_sleeps;	/**< device poll mode: fall-backs from spinning to waiting */
	/** device poll mode: returns to spinning (a kick, a push, or a request the fall-back's re-check found) */
	uint64_t poll_wakes;
	/** vhu_ring_opts.wait_spin_us: waits whose work came while spinning (no sleep) */
	uint64_t wait_spin_hits;
};

/**
 * Create a ring.
 * \return 0, -ENOSYS if the kernel has no io_uring, -EPERM if io_uring is
 *         disabled (kernel.io_uring_disabled) or forbidden by a seccomp
 *         filter, -EOPNOTSUPP if the kernel lacks a required operation
 *         (SENDMSG/RECVMSG with fds, provided buffer rings), -ENOMEM.
 *         vhu_ring_error_hint() explains the code in words.
 */
int vhu_ring_create(const struct vhu_ring_opts *opts, struct vhu_ring **out);

/** \return a sentence naming the likely cause of a vhu_ring_create() error. */
const char *vhu_ring_error_hint(int err);

/**
 * Close every connection and listener (each on_close fires with reason 0),
 * wait for all of vhu's outstanding completions, then free the ring (and
 * the io_uring, unless it was borrowed). Application operations still in
 * flight are cancelled and their done runs (vhu_op_sqe() returns NULL from
 * then on). Must not be called from a callback.
 */
void vhu_ring_destroy(struct vhu_ring *ring);

/**
 * Non-blocking: reap completions, run handlers, submit what they queued.
 * One io_uring_enter at most per call submits every SQE queued since the
 * last poll()/wait() (by callbacks, vhu_conn_send(), vhu_conn_close(),
 * attach, listen) and fetches completions; so an application calls
 * poll() or wait() in its loop for anything to move. With device queues
 * in poll mode (<vhu/device.h>) it also looks at their avail rings.
 * \return the number of completions handled, plus the messages delivered
 *         and connections closed by work queued between calls
 *         (vhu_conn_resume_recv(), vhu_conn_shutdown()); 0 when idle; or
 *         -errno.
 */
int vhu_ring_poll(struct vhu_ring *ring);

/**
 * Block until at least one completion arrives or timeout_ms passes (< 0:
 * no timeout), then do what vhu_ring_poll() does. Stalled-message deadlines
 * shorten the wait as needed.
 * If work queued between calls (vhu_conn_resume_recv(), vhu_conn_shutdown())
 * delivers messages or closes connections, it does not block. Nor while
 * device queues in poll mode (<vhu/device.h>) are spun on: then it makes
 * one vhu_ring_poll() pass, and blocks only once their idle interval has
 * passed and their notifications are back on.
 * \return completions handled plus what that work did (0 on timeout), or
 *         -errno.
 */
int vhu_ring_wait(struct vhu_ring *ring, int timeout_ms);

/**
 * For applications that reap a borrowed ring themselves: hand one CQE to
 * vhu (do not mark it seen before calling).
 * \return 1 if it was vhu's and has been handled, 0 if it is not vhu's.
 */
int vhu_ring_handle_cqe(struct vhu_ring *ring, struct io_uring_cqe *cqe);

/** \return the number of attached connections. */
unsigned int vhu_ring_conn_count(const struct vhu_ring *ring);

/** Copy out the ring's counters. */
void vhu_ring_get_stats(const struct vhu_ring *ring, struct vhu_ring_stats *st);

/* ------------------------------------------------------------------ */
/* Application operations                                              */

/**
 * An io_uring operation of the application's own (a read of a kick
 * eventfd, a write of a call eventfd, a readv/writev/fsync/fallocate of a
 * disk file) on vhu's ring, completed through a callback. The caller embeds
 * the struct in its own object (container_of in done) and keeps it there,
 * unmoved, from vhu_op_sqe() until done has been called for the completion
 * without IORING_CQE_F_MORE: no allocation per operation. An op carries one
 * operation at a time (vhu_op_busy()).
 */
struct vhu_op {
	/**
	 * The operation completed: res is the CQE's res (bytes, or -errno;
	 * -ECANCELED after vhu_op_cancel()), flags its flags. Runs inside
	 * vhu_ring_poll() / vhu_ring_wait(); may call any vhu function,
	 * vhu_op_sqe() on this same op included (the op is free again unless
	 * flags has IORING_CQE_F_MORE).
	 */
	void (*done)(struct vhu_op *op, int res, uint32_t flags);
	/** Engine-private: the operation's slot and its place among the ring's ops. */
	struct {
		uint32_t kind;
		uint32_t busy;
		void *link[2];
	} priv;
};

/**
 * Start an operation: an SQE of vhu's ring whose completion will call
 * op->done. Prepare it with any io_uring_prep_*() (they leave user_data
 * alone); do not set its user_data. Prepare it at once, before calling
 * any other vhu function: vhu may submit what the SQ holds at any of
 * them (a full SQ, replies sent in the middle of a pass). It is submitted
 * at the latest by the next vhu_ring_poll() / vhu_ring_wait() (at the end
 * of the current reaping pass when called from a callback). Buffers the
 * operation reads or writes must stay valid until done runs. The ring's CQ
 * is sized for vhu_ring_opts.max_ops such operations in flight at once;
 * beyond that the kernel keeps the overflow (IORING_FEAT_NODROP) and
 * nothing is lost, it is only slower.
 * 
eturn the SQE, or NULL if op is already in flight (op->done unset, or a
 *         busy op: a caller bug) or the submission queue stays full (the
 *         op is not started; retry after the next poll).
 */
struct io_uring_sqe *vhu_op_sqe(struct vhu_ring *ring, struct vhu_op *op);

/** \return whether op has an operation in flight (from vhu_op_sqe() to its last done). */
bool vhu_op_busy(const struct vhu_op *op);

/**
 * Ask the kernel to cancel op's operation (IORING_OP_ASYNC_CANCEL by its
 * user_data). Its done still runs, with -ECANCELED, or with its own result
 * if it completed first. No-op when op is not in flight.
 * \return 0, -EBUSY if the submission queue stays full.
 */
int vhu_op_cancel(struct vhu_ring *ring, struct vhu_op *op);

/** \return the number of application operations in flight on the ring. */
unsigned int vhu_ring_op_count(const struct vhu_ring *ring);

/* ------------------------------------------------------------------ */
/* Connections                                                         */

/** A delivered message. Valid only during on_message. */
struct vhu_msg {
	struct vhu_hdr hdr;
	/** hdr.size body bytes; points into engine memory, 8-byte aligned. */
	void *body;
	/**
	 * The fds that came with the message; the handler owns them. Move one
	 * out with vhu_fds_take() to keep it: whatever is left in the set
	 * when on_message returns is closed by the engine.
	 */
	struct vhu_fds fds;
};

/** Receive modes. */
enum vhu_recv_mode {
	/**
	 * recvmsg of exactly the 12-byte header (with a control buffer), then
	 * of exactly size bytes; fds on a body read are rejected. Correct with
	 * every peer; two operations per message.
	 */
	VHU_RECV_EXACT = 0,
	/**
	 * recvmsg into a buffer the kernel picks from the ring's provided
	 * buffers, one read at a time; a framer splits the byte stream into
	 * messages, several per completion. fds are attributed to the last
	 * message that begins in the read that brought them, which is exact
	 * for every peer that sends each fd-carrying message in its own
	 * sendmsg (QEMU, libvhost-user, DPDK, crosvm, rust-vmm, vhu). The
	 * control space holds one fd more than VHU_MAX_FDS, so a 33rd fd is
	 * refused as -VHU_EFDS (exact mode: -VHU_ECTRUNC); more than that is
	 * -VHU_ECTRUNC in both modes.
	 */
	VHU_RECV_STREAM = 1,
};

/**
 * on_message's return value for "not now": the engine keeps the message
 * (header, body and fds, which the handler must leave in msg->fds as they
 * were), pauses the connection's receive as vhu_conn_pause_recv() does, and
 * delivers the same message again, first, after vhu_conn_resume_recv().
 */
#define VHU_MSG_HOLD	1

struct vhu_conn_ops {
	/**
	 * A whole message arrived and passed validation (header, body, fd
	 * count; with vhu_conn_opts.frames_only only size and fd limits).
	 * Return 0 to go on, VHU_MSG_HOLD to have it delivered again later,
	 * or a negative error to close the connection with that reason.
	 *
	 * Flow control: a request (REPLY flag clear) is delivered only while
	 * the send queue has a free entry and room for a reply of
	 * VHU_REPLY_RESERVE bytes, so vhu_conn_send() of one reply from here
	 * cannot fail with -VHU_EQFULL; replies are always delivered. Without room the engine stops reading
	 * the connection (its bytes wait in the socket and the peer's writes
	 * block) and resumes by itself when sends make room. With frames_only
	 * the engine cannot tell what a message needs: only pauses apply.
	 */
	int (*on_message)(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx);
	/**
	 * The connection is gone; called exactly once, after every operation
	 * of the connection completed and its socket was closed. The conn
	 * pointer must not be used after this returns.
	 *
	 * reason: 0 after vhu_conn_close() or vhu_ring_destroy();
	 * -VHU_EDISCONNECT when the peer closed between messages (once the
	 * replies queued before its hang-up were sent: a peer that only shut
	 * down its sending side still gets them);
	 * -VHU_EPARTIAL when it closed inside a message; -ETIMEDOUT when a
	 * message stalled past msg_timeout_ms; a validation error
	 * (-VHU_EOVERSIZED, -VHU_EVERSION, -VHU_EFDS, ...); a socket error
	 * (-ECONNRESET, -EPIPE, ...); or on_message's return value.
	 */
	void (*on_close)(struct vhu_conn *conn, int reason, void *ctx);
	/**
	 * Optional: after vhu_conn_send() refused a message with -VHU_EQFULL,
	 * called once when the queue is at most half full again (a proxy
	 * resumes the connection it paused for want of room here).
	 */
	void (*on_writable)(struct vhu_conn *conn, void *ctx);
	/**
	 * Optional: the peer shut down its sending side (reason
	 * -VHU_EDISCONNECT, or -VHU_EPARTIAL inside a message). Without this
	 * callback the connection closes once the replies queued before the
	 * hang-up are sent. With it the connection stays open for sending
	 * (a proxy forwards the half-close and keeps relaying the other way);
	 * it closes, with that reason, once vhu_conn_shutdown() has taken
	 * effect, or on vhu_conn_close().
	 */
	void (*on_hangup)(struct vhu_conn *conn, int reason, void *ctx);
};

/**
 * Room kept in a connection's send queue for the reply of a message before
 * that message is delivered (at most half the queue's bytes).
 */
#define VHU_REPLY_RESERVE	512u

/**
 * Largest rules.max_size a connection accepts (16 MiB). Each connection
 * allocates a receive buffer of max_size bytes at attach, so a larger limit
 * ("no limit", UINT32_MAX) cannot be honoured and attach refuses it.
 */
#define VHU_CONN_MAX_SIZE	(16u * 1024u * 1024u)

struct vhu_conn_opts {
	uint8_t recv_mode;		/**< enum vhu_recv_mode */
	/**
	 * What this side receives (channel, expect, max size). max_size 0
	 * means VHU_DEFAULT_MAX_SIZE; above VHU_CONN_MAX_SIZE attach fails
	 * with -EINVAL.
	 */
	struct vhu_rules rules;
	/**
	 * Queued messages at most; 0 means 256. A peer that pipelines more
	 * requests than this is not refused: receiving pauses until replies
	 * have left (see on_message).
	 */
	uint32_t sendq_msgs;
	uint32_t sendq_bytes;		/**< queued bytes at most; 0 means 64 KiB */
	uint32_t msg_timeout_ms;	/**< close a message stalled this long; 0: never */
	/**
	 * Deliver every message that frames, unjudged: a header whose size is
	 * at most rules.max_size and at most VHU_MAX_FDS fds (attributed as
	 * usual) is handed to on_message without vhu_hdr_check() or
	 * vhu_msg_check(), so a bad version, reserved flags, an unknown code,
	 * a body or fd count that does not fit the request all arrive intact.
	 * For proxies and tracers that forward what the peer would get and
	 * judge it themselves. Framing safety is unchanged: a size above
	 * rules.max_size still closes with -VHU_EOVERSIZED, too many fds with
	 * -VHU_EFDS or -VHU_ECTRUNC. rules.channel and rules.expect are unused.
	 */
	bool frames_only;
};

/**
 * Attach a connected AF_UNIX stream socket to the ring and start receiving.
 * The connection takes ownership of fd (also on failure: it is closed).
 * \return 0 with *out set, -EMFILE past max_conns, -EINVAL for bad options
 *         (among them rules.max_size > VHU_CONN_MAX_SIZE), -ENOTSOCK, -ENOMEM.
 */
int vhu_conn_attach(struct vhu_ring *ring, int fd, const struct vhu_conn_opts *opts,
		    const struct vhu_conn_ops *ops, void *ctx, struct vhu_conn **out);

/**
 * Connect to a listening path (the front-end side) and attach. Never
 * blocks: a listener whose backlog is full is -EAGAIN at once (retry later,
 * or give up), not a wait that would stall the ring.
 * \return 0, -EAGAIN (backlog full), or -errno from socket()/connect()
 *         (-ENOENT, -ECONNREFUSED, -EACCES...), or an attach error.
 */
int vhu_conn_connect(struct vhu_ring *ring, const char *path, const struct vhu_conn_opts *opts,
		     const struct vhu_conn_ops *ops, void *ctx, struct vhu_conn **out);

/**
 * Queue one message. Header, body and payload are copied into the
 * connection's preallocated send queue, so the caller's buffers are free
 * on return. hdr->size must equal body_len + payload_len.
 *
 * fds: on success the connection owns them and closes them once the
 * sendmsg that carries them has completed (so the kernel has its own
 * references); on failure the caller still owns them. A message with fds
 * always goes alone in its sendmsg; fd-less messages are coalesced.
 *
 * \return 0; -VHU_EQFULL if the queue lacks room (nothing was queued, and
 *         nothing already queued is lost); -VHU_EFDS for > VHU_MAX_FDS fds;
 *         -VHU_EOVERSIZED for a message larger than the queue;
 *         -EINVAL on a size mismatch; -ENOTCONN if the connection is closing;
 *         -EPIPE after vhu_conn_shutdown().
 */
int vhu_conn_send(struct vhu_conn *conn, const struct vhu_hdr *hdr,
		  const void *body, size_t body_len, const void *payload, size_t payload_len,
		  const int *fds, unsigned int nfds);

/**
 * Half-close: no more sends (vhu_conn_send() returns -EPIPE); once what is
 * queued has been sent, the socket's sending side is shut down, so the
 * peer reads EOF after the last message. Receiving goes on. If the peer has
 * hung up too (on_hangup), the connection then closes. Idempotent.
 */
void vhu_conn_shutdown(struct vhu_conn *conn);

/**
 * Stop delivering this connection's messages: no further on_message until
 * vhu_conn_resume_recv(), and no more bytes are read, so they wait in the
 * socket and the peer's writes block or return EAGAIN. A read already in
 * flight may still complete; what it brought (at most one message in exact
 * mode, one buffer in stream mode) is kept and delivered after the resume,
 * in order, fds included. Called from on_message, the message being
 * handled is the last delivered. Idempotent (not counted).
 */
void vhu_conn_pause_recv(struct vhu_conn *conn);

/**
 * Resume delivery: held messages first, then new reads. Runs at the end
 * of the current reaping pass, or in the next vhu_ring_poll() /
 * vhu_ring_wait() when called outside one.
 */
void vhu_conn_resume_recv(struct vhu_conn *conn);

/** \return whether vhu_conn_pause_recv() or VHU_MSG_HOLD paused the connection. */
bool vhu_conn_recv_paused(const struct vhu_conn *conn);

/**
 * Close: cancel the connection's operations, wait for their completions,
 * close the socket, then call on_close(conn, 0). Messages still queued are
 * dropped (their fds closed). Safe inside callbacks, and more than once.
 */
void vhu_conn_close(struct vhu_conn *conn);

/** Close with a reason, which on_close will see (e.g. a handler's error). */
void vhu_conn_close_reason(struct vhu_conn *conn, int reason);

/** \return the connection's socket fd (owned by the connection). */
int vhu_conn_fd(const struct vhu_conn *conn);

/** \return the ctx given at attach, or the last vhu_conn_set_ctx(). */
void *vhu_conn_ctx(const struct vhu_conn *conn);
void vhu_conn_set_ctx(struct vhu_conn *conn, void *ctx);

/** \return the ring the connection is attached to. */
struct vhu_ring *vhu_conn_ring(const struct vhu_conn *conn);

/** \return messages waiting in the send queue (not yet fully sent). */
unsigned int vhu_conn_sendq_len(const struct vhu_conn *conn);

/* ------------------------------------------------------------------ */
/* Listener                                                            */

struct vhu_ulistener_opts {
	const char *path;		/**< socket path */
	bool unlink_stale;		/**< remove a stale socket file first */
	unsigned int max_conns;		/**< accepted connections alive at once; 0: ring limit */
	struct vhu_conn_opts conn;	/**< options of each accepted connection */
	struct vhu_conn_ops ops;	/**< callbacks of each accepted connection */
	void *ctx;			/**< ctx of each accepted connection */
	/** Optional: a connection was accepted and attached (set its ctx here). */
	void (*on_accept)(struct vhu_ulistener *l, struct vhu_conn *conn, void *ctx);
};

/**
 * Listen on a path with multishot accept (re-armed whenever it ends). A
 * connection beyond max_conns is accepted and closed at once.
 *
 * When accept fails for lack of resources (-EMFILE, -ENFILE at the fd
 * limit; -ENOBUFS, -ENOMEM) the listener pauses instead of retrying at
 * once (which would spin a core while clients wait in the backlog): it
 * resumes when a connection of the ring closes, or after 50 ms, whichever
 * comes first. Clients wait in the backlog meanwhile.
 * \return 0, or -errno (bind/listen), -EADDRINUSE if path exists and
 *         unlink_stale is false.
 */
int vhu_ring_listen(struct vhu_ring *ring, const struct vhu_ulistener_opts *opts,
		    struct vhu_ulistener **out);

/** Stop listening, remove the path, free. Accepted connections stay. */
void vhu_ulistener_close(struct vhu_ulistener *l);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
