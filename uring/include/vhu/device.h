/* SPDX-License-Identifier: MIT */
/**
 * \file
 * vhost-user devices on the io_uring engine: vhu runs the back-end's side
 * of the protocol (feature and protocol-feature negotiation with REPLY_ACK,
 * config space, memory table and slots, vring state, kick/call/err fds,
 * status, owner and reset) for every front-end that connects, and hands
 * the application its queues when the guest kicks them.
 *
 * Per front-end there is one struct vhu_dev: the guest's memory
 * (<vhu/guest_mem.h>), one struct vhu_vq per queue (<vhu/vq.h>), and the
 * kick, call and err eventfds. Each queue's kick eventfd is read on the
 * ring (an 8-byte IORING_OP_READ, re-armed after each completion: the read
 * resets the counter, so the loop never spins); after each kick, and when
 * a queue starts or is enabled, ops->queue_work(dev, q) runs, and the
 * application pops requests with vhu_dev_pop() and completes them with
 * vhu_dev_push() whenever its I/O finishes, in any order. At the end of each
 * reaping pass vhu writes each queue's call eventfd at most once, and only
 * if vhu_vq_need_call() says the guest wants it (EVENT_IDX, NO_INTERRUPT).
 *
 * Faults: a message that fails is answered with a failure ack when the
 * front-end asked for one (REPLY_ACK), else the connection closes. A guest
 * fault found by vhu_dev_pop() (<vhu/vq.h>'s named -VHU_EVQ* and
 * -VHU_EGUESTADDR codes) closes that device's connection with the fault as
 * the reason; other devices on the ring go on. Nothing outside a mapped
 * region is read or written.
 *
 * Stopping: GET_VRING_BASE stops the queue (no more pops) and, while
 * requests of the device are still in flight, holds the reply
 * (VHU_MSG_HOLD) until the application has pushed or dropped them, so the
 * reported index and the used ring agree; it also waits for the queue's
 * cancelled kick read, so the kick fd is closed when the reply is sent. RESET_OWNER and RESET_DEVICE wait
 * the same way. A closed connection's device is freed, with every mapping
 * and fd, once its requests are pushed or dropped and its ring operations
 * have completed; ops->close runs then.
 *
 * Poll mode (vhu_dev_opts.poll): instead of waiting for kicks, the ring
 * spins on the avail rings of the running queues of its poll-mode devices
 * (each ring on the queues whose data path runs on it), with the guest's
 * kicks suppressed (used->flags NO_NOTIFY; with EVENT_IDX an avail_event
 * the guest never reaches), and calls ops->queue_work for each queue with
 * new requests. Completions are reaped on the same passes (no system call
 * on a busy_poll ring). vhu_ring_poll() looks at the queues on every call
 * and never blocks. vhu_ring_wait() does not block either while there is
 * work; after poll_idle_us with no new request, no push, no kick and no
 * request in flight it falls back: notifications back on for every polled
 * queue, a full barrier, every avail ring looked at again, and only if
 * nothing arrived does it block (kick reads stay armed, so a request the
 * guest adds after that is kicked). The next kick, or a push, spins it
 * again. No kick is ever lost, and the application sees the same
 * queue_work calls as without poll mode (more of them: one per pass that
 * finds requests). vhu_ring_stats counts the fall-backs and returns.
 *
 * Threading: as <vhu/uring.h>: everything on the ring's thread, callbacks
 * inside vhu_ring_poll() / vhu_ring_wait().
 *
 * Several rings (reactors, vhu_dev_server_create_multi()): one thread per
 * ring, each ring created and driven (vhu_ring_wait()/poll()) by its own
 * thread only. The first ring listens, runs ops->server_gone, and the
 * vhu_dev_server_*() calls are made on its thread. Each accepted
 * connection is handed to a ring (its fd through that ring's inbox, woken
 * with IORING_OP_MSG_RING), the device's control ring, ring
 * (vhu_dev_id() - 1) mod nrings, the ring of its queue 0: it holds the
 * connection and runs the device's protocol, ops->open, ops->get_config,
 * ops->request_failed and ops->close (vhu_dev_ring()); a single-queue
 * front-end is thus served by one thread alone. A device of
 * vhu_dev_server_attach() is controlled by rings[0]. So callbacks of
 * different devices run on different threads at once. max_conns counts
 * the front-ends of every ring. Each queue has a home
 * ring, (vhu_dev_id() - 1 + q) mod nrings (queue q of the first device on
 * ring q mod nrings, the next device shifted by one, so single-queue
 * front-ends spread too): its kick reads, ops->queue_work, the pops and
 * pushes, the call writes run there, and the application submits the
 * queue's I/O on vhu_dev_queue_ring(); nothing of the request path takes a
 * lock or crosses threads. Each home ring maps the guest's memory for
 * itself (one more mapping and fd per region and ring). Messages that
 * touch a queue (SET_VRING_*, GET_VRING_BASE, SET_FEATURES, the memory
 * table, resets) are applied on the queue's home ring and the front-end's
 * message is held until every ring has answered, so its reply (and
 * REPLY_ACK) tells the truth. vhu_dev_close() may also be called from a
 * callback on a queue's home ring; vhu_dev_closing(), vhu_dev_ctx(),
 * vhu_dev_id(), vhu_dev_num_queues() from any of the device's rings;
 * vhu_dev_server_count() from any thread.
 * Stopping: vhu_dev_server_destroy() on rings[0] (it reaches each ring's
 * devices as a message), then keep driving
 * every ring until ops->server_gone has run (each ring's part of each
 * device is handed back first); then stop the threads and destroy each
 * ring on its own thread.
 */
#ifndef VHU_DEVICE_H
#define VHU_DEVICE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vhu/uring.h>
#include <vhu/vq.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/** Queues per device at most (queue indexes are 8 bits in SET_VRING_KICK/CALL/ERR). */
#define VHU_DEV_MAX_QUEUES	256u

/** One front-end's device. */
struct vhu_dev;

/** The devices of one socket path (or of attached sockets). */
struct vhu_dev_server;

/** A request that failed, as ops->request_failed sees it (for logs). */
struct vhu_dev_failure {
	uint32_t request;	/**< the request code (VHU_REQ_*) */
	int error;		/**< -EOPNOTSUPP for a request not implemented or not negotiated */
	/**
	 * Protocol features the request needs that were not acked (so it is
	 * not allowed yet), else 0.
	 */
	uint64_t missing_protocol_features;
	/** Answered with a failure ack (REPLY_ACK); false: the connection closes with error. */
	bool nacked;
};

struct vhu_dev_ops {
	/**
	 * Optional: a front-end connected and its device exists (set per-device
	 * state with vhu_dev_set_ctx()). A negative return closes it at once.
	 */
	int (*open)(struct vhu_dev *dev, void *ctx);
	/**
	 * Queue q may have requests: pop them with vhu_dev_pop() (as many as
	 * the application can take; the rest wait in the ring until it pops
	 * again). Runs after each kick, and when the queue starts or is
	 * enabled. Required.
	 */
	void (*queue_work)(struct vhu_dev *dev, unsigned int q, void *ctx);
	/**
	 * Optional: bytes [offset, offset + len) of the device's config space
	 * (GET_CONFIG). Return 0, or a negative error to answer with an empty
	 * config (the spec's failure answer). Without it, vhu_dev_opts.config
	 * is served.
	 */
	int (*get_config)(struct vhu_dev *dev, uint32_t offset, void *buf, uint32_t len,
			  void *ctx);
	/**
	 * Optional: the device is gone (reason as vhu_conn_ops.on_close: 0,
	 * -VHU_EDISCONNECT, a guest fault, ...). Nothing of it is in flight
	 * any more; every mapping and fd is released, and the device no longer
	 * counts against max_conns (a front-end connecting now fits in its
	 * place); dev is freed after this.
	 */
	void (*close)(struct vhu_dev *dev, int reason, void *ctx);
	/**
	 * Optional: a request failed; f says how and what vhu does about it
	 * (a failure ack, or closing the connection). For logging: do not
	 * close the device from here.
	 */
	void (*request_failed)(struct vhu_dev *dev, const struct vhu_dev_failure *f, void *ctx);
	/**
	 * Optional: after vhu_dev_server_destroy(), the server is freed (its
	 * last device closed; with several rings, every ring has let go of
	 * every device): the threads of the other rings may stop now.
	 */
	void (*server_gone)(void *ctx);
};

struct vhu_dev_opts {
	/** Socket path to listen on; NULL: devices only through vhu_dev_server_attach(). */
	const char *path;
	bool unlink_stale;		/**< remove a stale socket file first */
	unsigned int max_conns;		/**< front-ends at once, all rings; 0: each ring's limit */
	uint8_t recv_mode;		/**< enum vhu_recv_mode */
	uint32_t msg_timeout_ms;	/**< as vhu_conn_opts; 0: never */
	/**
	 * Virtio features offered (GET_FEATURES): the device type's bits and
	 * the ring features the application accepts (VERSION_1,
	 * RING_INDIRECT_DESC, RING_EVENT_IDX). VHOST_USER_F_PROTOCOL_FEATURES
	 * is added by vhu; LOG_ALL and RING_PACKED are refused (-EINVAL).
	 */
	uint64_t features;
	/** Queues, 1..VHU_DEV_MAX_QUEUES (GET_QUEUE_NUM). */
	unsigned int num_queues;
	/**
	 * Memory slots offered (GET_MAX_MEM_SLOTS), and so the regions a
	 * front-end may add with ADD_MEM_REG; 0: VHU_MEM_MAX_SLOTS (509). Each
	 * region keeps an fd open: a lower limit bounds a front-end's fds.
	 */
	unsigned int max_mem_slots;
	/** Config space served by GET_CONFIG (copied; up to VHU_CONFIG_SPACE_SIZE bytes). */
	const void *config;
	uint32_t config_size;
	/**
	 * Offer VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD: GET_INFLIGHT_FD creates
	 * an inflight region (<vhu/inflight.h>) in a sealed memfd, which the
	 * front-end keeps and hands back with SET_INFLIGHT_FD to every later
	 * back-end; each queue start then pops first the requests a previous
	 * back-end took and never completed (same heads, in the order it took
	 * them), so a back-end that is killed and restarted completes each
	 * request exactly once. The application must complete every request
	 * it pops (vhu_dev_drop() leaves one for the next start); with QEMU,
	 * reconnect needs `-chardev socket,...,reconnect=1`.
	 */
	bool inflight;
	const struct vhu_dev_ops *ops;	/**< callbacks; queue_work is required */
	void *ctx;			/**< passed to every callback */
	/**
	 * Poll mode: the ring spins on the avail rings of the devices'
	 * running queues with guest kicks suppressed, and falls back to
	 * waiting for kicks after poll_idle_us without work (see "Poll mode"
	 * above). Best on a ring created with vhu_ring_opts.busy_poll, whose
	 * spinning passes make no system call.
	 */
	bool poll;
	/**
	 * Poll mode: microseconds without a new request, a completion, a kick
	 * or a request in flight on the ring's polled queues after which it
	 * stops spinning; 0: VHU_DEV_POLL_IDLE_US. A ring spinning for queues
	 * of several servers uses the longest.
	 */
	uint32_t poll_idle_us;
};

/**
 * Default of vhu_dev_opts.poll_idle_us: longer than the gap a guest in a
 * tight I/O loop leaves between a completion and its next request (the
 * call, the guest's interrupt and its application, the next submit: tens
 * of microseconds, more when the host is loaded), so a busy queue is
 * still spun on when its next request comes; short enough that a device
 * gone quiet costs at most 0.2 ms of CPU per burst (2% of a core for a
 * guest doing one I/O every 10 ms). Falling asleep costs only the wake-up
 * latency of the next request.
 */
#define VHU_DEV_POLL_IDLE_US	200u

/**
 * Create a device server on a ring; listen on opts->path if set.
 * \return 0; -EINVAL (no queue_work, num_queues out of range, a refused
 *         feature, config too large, max_mem_slots above VHU_MEM_MAX_SLOTS);
 *         -ENOMEM; a vhu_ring_listen() error.
 */
int vhu_dev_server_create(struct vhu_ring *ring, const struct vhu_dev_opts *opts,
			  struct vhu_dev_server **out);

/** Rings a server may spread its devices' queues over at most. */
#define VHU_DEV_MAX_RINGS	64u

/**
 * Create a device server over nrings rings, each driven by its own thread
 * (see Threading above): rings[0] listens and hands each connection to
 * the ring of its queue 0, the queues are spread over all of them. Call
 * on rings[0]'s thread. One ring
 * is vhu_dev_server_create().
 * \return as vhu_dev_server_create(); -EINVAL also for no rings, more than
 *         VHU_DEV_MAX_RINGS, or a ring given twice.
 */
int vhu_dev_server_create_multi(struct vhu_ring *const *rings, unsigned int nrings,
				const struct vhu_dev_opts *opts, struct vhu_dev_server **out);

/**
 * Serve a front-end on an already connected AF_UNIX stream socket (a
 * socketpair, socket activation), on rings[0] (its control ring, whatever
 * its id; its queues spread as usual). Takes fd in every case.
 * \return 0 with *out set (may be NULL if ops->open refused it), or an
 *         attach error.
 */
int vhu_dev_server_attach(struct vhu_dev_server *srv, int fd, struct vhu_dev **out);

/**
 * Stop listening and close every device's connection. The server is freed
 * once its last device is (as its requests finish), or by
 * vhu_ring_destroy(). Not from a callback of its own devices.
 */
void vhu_dev_server_destroy(struct vhu_dev_server *srv);

/** \return devices alive (connected, or closed with requests still in flight). */
unsigned int vhu_dev_server_count(const struct vhu_dev_server *srv);

/** \return the per-device pointer set with vhu_dev_set_ctx() (NULL at first). */
void *vhu_dev_ctx(const struct vhu_dev *dev);
void vhu_dev_set_ctx(struct vhu_dev *dev, void *ctx);

/** \return a number naming the device in logs (1, 2, ... per server). */
unsigned int vhu_dev_id(const struct vhu_dev *dev);

/**
 * \return the ring the device's connection and protocol run on: with
 *         several rings, (vhu_dev_id() - 1) mod nrings for an accepted
 *         front-end, the first for vhu_dev_server_attach().
 */
struct vhu_ring *vhu_dev_ring(const struct vhu_dev *dev);

/**
 * \return the home ring of queue q, on whose thread its queue_work, pops
 *         and pushes run (submit its I/O there with vhu_op_sqe()); NULL if
 *         q is out of range. With one ring, vhu_dev_ring().
 */
struct vhu_ring *vhu_dev_queue_ring(const struct vhu_dev *dev, unsigned int q);

/** \return the virtio features the front-end acked (0 before SET_FEATURES). */
uint64_t vhu_dev_features(const struct vhu_dev *dev);

/** \return the number of queues (vhu_dev_opts.num_queues). */
unsigned int vhu_dev_num_queues(const struct vhu_dev *dev);

/**
 * \return queue q's state (for vhu_vq_num(), notification control), or
 *         NULL; with several rings, for use on q's home ring only.
 */
struct vhu_vq *vhu_dev_vq(struct vhu_dev *dev, unsigned int q);

/**
 * Pop the next request of queue q (vhu_vq_pop()).
 * \return 1 with *req filled (push or drop it with this device); 0 when
 *         nothing is available, the queue is stopped or disabled, or the
 *         device is closing; or a guest fault, after which the device's
 *         connection is closing with that fault as its reason.
 */
int vhu_dev_pop(struct vhu_dev *dev, unsigned int q, struct vhu_vq_req *req,
		struct iovec *iov, unsigned int iov_max);

/**
 * Complete a popped request (vhu_vq_push()): the guest is called at the end
 * of the reaping pass if it wants to be. On a closing device the request is
 * dropped instead; if it was the device's last request and its ring
 * operations are done, the device is freed inside this call: ops->close
 * runs synchronously, before vhu_dev_push returns, and dev must not be
 * used after it. \return 0, or vhu_vq_push()'s error; -VHU_EMEMLOST (the
 * device's memory shrank under its mapping, caught by vhu_mem_sigbus_guard)
 * also closes the device with that reason, as a guest fault in
 * vhu_dev_pop does.
 */
int vhu_dev_push(struct vhu_dev *dev, unsigned int q, struct vhu_vq_req *req, uint32_t len);

/**
 * Give up a popped request without completing it (vhu_vq_drop()). As with
 * vhu_dev_push(), on a closing device ops->close may run inside this call.
 */
void vhu_dev_drop(struct vhu_dev *dev, unsigned int q, struct vhu_vq_req *req);

/** Close the device's connection with a reason (ops->close follows, later). */
void vhu_dev_close(struct vhu_dev *dev, int reason);

/** \return whether the device's connection is gone or going. */
bool vhu_dev_closing(const struct vhu_dev *dev);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
