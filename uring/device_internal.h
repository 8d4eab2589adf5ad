/* SPDX-License-Identifier: MIT */
/*
 * Private state of the device layer, shared by its files:
 *  - device.c: the server, a device's lifecycle (open, close, drain, free);
 *  - device_msg.c: the protocol (one handler per request, one place that
 *    replies, acks or closes), and what a request does to a port's queues
 *    (vhu__port_apply);
 *  - device_queue.c: kicks, calls and the data path;
 *  - device_inflight.c: the inflight region (GET/SET_INFLIGHT_FD);
 *  - device_remote.c: ports on other rings (reactors): commands forwarded
 *    to a queue's home ring and their answers, close requests, release.
 *  - device_poll.c: poll mode (the queues a ring spins on).
 * Writers: device_msg.c the negotiated state and the queues' configuration;
 * device_queue.c the kick and call operations; device.c the lifecycle.
 *
 * Threads (several rings): the device's connection and its negotiated
 * state belong to its control ring: ring (id - 1) mod nrings for a
 * front-end the listener accepted (rings[0] hands the socket over,
 * device.c), rings[0] for vhu_dev_server_attach(). Each queue belongs to its home port: the port
 * of the ring it runs on, with its own view of the guest's memory (a
 * vhu_mem mapping the same region fds), its vq, kick, call and err fds and
 * operations. A port on the control ring is local: everything on one
 * thread, as with a single ring. A remote port's state is touched only on
 * its ring's thread; the control side reaches it by posting a command
 * (struct dev_xmsg) and holding the front-end's message until the answer
 * comes back.
 */
#ifndef VHU_URING_DEVICE_INTERNAL_H
#define VHU_URING_DEVICE_INTERNAL_H

#include <vhu/device.h>
#include <vhu/guest_mem.h>
#include <vhu/vq.h>

#include "internal.h"

struct dev_port;

/* A cache line: what one thread writes per request is kept off another's lines. */
#define DEV_CACHELINE	64u

/*
 * One queue. Cache-line aligned: with reactors, neighbouring queues are
 * written per request by different threads.
 */
struct dev_queue {
	_Alignas(DEV_CACHELINE) struct vhu_dev *dev;
	struct dev_port *port;		/* its home */
	unsigned int idx;
	struct vhu_vq *vq;
	int kick_fd;			/* the fd the next kick read uses */
	int kick_old;			/* the fd of a cancelled read still in flight */
	struct vhu_op kick;
	uint64_t kick_buf;
	int call_fd;
	int call_old;			/* the fd of a call write still in flight */
	struct vhu_op call;
	uint64_t call_buf;
	bool call_again;		/* a call was due while the write was in flight */
	bool pushed;			/* pushes since the last call decision */
	struct vlist call_link;		/* port ring's dev_calls */
	struct vlist poll_link;		/* port ring's poll.queues (device_poll.c) */
	bool polled;			/* listed there */
	int err_fd;
};

/* What a request does to a port's queues (vhu__port_apply, on the port's ring). */
enum dev_op {
	OP_NUM = 1,
	OP_ADDR,
	OP_BASE,
	OP_GET_BASE,		/* stop; answers num once its requests are back */
	OP_ENABLE,
	OP_KICK,
	OP_CALL,
	OP_ERR,
	OP_FEATURES,
	OP_MEM_TABLE,
	OP_MEM_ADD,
	OP_MEM_REM,
	OP_RESET,		/* stop, wait for the requests, reset the queues and memory */
	OP_INFLIGHT,		/* attach the queues' inflight areas */
};

struct dev_cmd {
	uint8_t op;			/* enum dev_op */
	unsigned int q;			/* the queue (queue commands) */
	uint32_t num;			/* NUM, BASE, ENABLE; GET_BASE's answer */
	uint64_t features;
	int fd;				/* KICK, CALL, ERR, MEM_ADD; -1: none */
	struct vhu_vring_addr addr;
	struct vhu_mem_region region;	/* MEM_ADD, MEM_REM */
	struct vhu_mem_table table;	/* MEM_TABLE, with one fd per region */
	int fds[VHU_MAX_MEM_REGIONS];
	uint8_t *ifl_base;		/* INFLIGHT: the areas (mapped by the control ring) */
	uint16_t ifl_queues;
	uint16_t ifl_queue_size;
};

/* A message between the control ring and a remote port's ring. */
struct dev_xmsg {
	struct vhu__xmsg x;
	struct dev_port *port;
	int rc;
};

/* A command forwarded to a port's ring, and its answer. */
struct dev_fwd {
	struct dev_xmsg m;
	struct dev_cmd cmd;
};

struct dev_port {
	struct vhu_dev *dev;
	struct vhu_ring *ring;
	struct vhu_mem *mem;		/* this ring's view of the guest's memory */
	unsigned int nqueues;		/* queues homed here (0: the port is not used) */
	bool remote;			/* not the control ring */
	/*
	 * The port's queues pop no more (the device is closing). Written on
	 * the port's ring: for the local port with the device's closing.
	 */
	bool closing;
	/* Remote ports only. Home side: */
	bool parked;			/* fwd waits for requests to come back */
	bool close_sent;		/* close_req posted */
	bool release_sent;		/* bye posted back: the control side owns everything */
	/* Control side: */
	bool fwd_out;			/* fwd is at the home ring */
	bool bye_out;			/* shutdown posted, release not back yet */
	bool released;
	struct dev_fwd fwd;		/* a command and its answer */
	struct dev_xmsg bye;		/* shutdown, then release */
	struct dev_xmsg close_req;	/* home to control: close the device (reason in rc) */
};

/*
 * A server's part on one ring: the devices whose connection (control
 * port) runs there. Touched on that ring's thread only.
 */
struct dev_part {
	struct vhu_dev_server *srv;
	struct vhu_ring *ring;
	struct vlist devs;		/* devices controlled here */
	unsigned int ndevs;
	bool destroyed;			/* the server's destroy reached this ring */
	bool gone_sent;			/* remote parts: gone posted to rings[0] */
	struct vhu__xmsg destroy;	/* rings[0] to this ring */
	struct vhu__xmsg gone;		/* this ring to rings[0]: nothing left here */
};

/* An accepted socket on its way from rings[0] to the ring that will serve it. */
struct dev_handoff {
	struct vhu__xmsg x;
	struct vhu_dev_server *srv;
	int fd;
	unsigned int id;
	unsigned int part;
};

struct vhu_dev_server {
	struct vhu_ring *ring;		/* rings[0]: the listener, attach, destroy */
	struct vhu_ring *rings[VHU_DEV_MAX_RINGS];
	unsigned int nrings;
	struct vhu_ulistener *lis;
	struct vhu_dev_opts o;
	struct vhu_dev_ops ops;
	uint8_t *config;
	struct dev_part parts[VHU_DEV_MAX_RINGS];
	unsigned int ndevs;		/* devices alive, all rings (atomic) */
	unsigned int handoffs;		/* sockets handed to a ring, not yet devices (atomic) */
	unsigned int next_id;		/* written on rings[0] only (atomic for readers) */
	bool destroyed;			/* written on rings[0] (atomic), read anywhere */
	unsigned int parts_gone;	/* rings[0]: remote parts that let go */
};

struct vhu_dev {
	struct vhu_dev_server *srv;
	struct dev_part *part;		/* the server's part on the control ring */
	struct vhu_ring *ring;		/* the control ring: connection, protocol */
	struct vhu_conn *conn;		/* NULL once closed */
	struct vlist link;		/* part->devs */
	unsigned int id;
	void *ctx;
	bool opened;			/* ops->open ran and accepted it */
	bool closing;			/* written on the control ring (atomic), read anywhere */
	int reason;
	bool held;			/* a message waits (VHU_MSG_HOLD) for the requests to drain */
	/* A message forwarded to remote ports: answers awaited, then collected on redelivery. */
	unsigned int xwait;
	bool xdone;
	int xrc;			/* the first error of the answers */
	uint32_t xnum;			/* GET_BASE's answer */
	uint64_t features;
	uint64_t protocol_features;
	bool protocol_set;
	bool owner;
	uint8_t status;
	int backend_fd;
	struct vhu_mem *mem;		/* the control ring's view (the local port's) */
	void *ifl_map;			/* the inflight region (SET_INFLIGHT_FD), or NULL */
	size_t ifl_len;
	void *ifl_new;			/* one being attached (SET_INFLIGHT_FD held), or NULL */
	size_t ifl_new_len;
	unsigned int nq;
	/*
	 * One per server ring, ports[i] on the ring i after the control ring
	 * (rings[(part + i) mod nrings]): ports[0] is the local one.
	 */
	unsigned int nports;
	struct dev_port *ports;
	struct dev_queue q[];
};

/* Handler results besides 0 and -errno. */
#define DEV_HOLD	1		/* requests in flight: deliver the message again later */

/* device.c */
void vhu__dev_maybe_free(struct vhu_dev *d);
void vhu__dev_set_closing(struct vhu_dev *d, int reason);

/* device_msg.c */
int vhu__dev_on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx);
int vhu__port_apply(struct dev_port *p, struct dev_cmd *c);
void vhu__cmd_release(struct dev_cmd *c);

/* device_inflight.c */
int vhu__dev_inflight_create(struct vhu_dev *d, struct vhu_inflight *b, int *fd);
int vhu__dev_inflight_map(struct vhu_dev *d, const struct vhu_inflight *b, int fd,
			  uint8_t **base);
void vhu__dev_inflight_commit(struct vhu_dev *d, int rc, bool partial);
void vhu__dev_inflight_release(struct vhu_dev *d);
int vhu__port_inflight_attach(struct dev_port *p, uint8_t *base, uint16_t num_queues,
			      uint16_t queue_size);
void vhu__port_inflight_detach(struct dev_port *p);

/* device_queue.c */
void vhu__dq_init(struct dev_queue *q, struct vhu_dev *d, struct dev_port *p, unsigned int idx);
int vhu__dq_set_kick(struct dev_queue *q, int fd);
void vhu__dq_set_call(struct dev_queue *q, int fd);
void vhu__dq_stop(struct dev_queue *q);
void vhu__dq_shutdown(struct dev_queue *q);
bool vhu__dq_idle(const struct dev_queue *q);
bool vhu__dq_kick_idle(const struct dev_queue *q);
void vhu__dq_fini(struct dev_queue *q);
void vhu__dq_work(struct dev_queue *q);
void vhu__dq_fault(struct dev_queue *q, int reason);
unsigned int vhu__port_inflight(const struct dev_port *p);
bool vhu__port_idle(const struct dev_port *p);

/* device_remote.c */
int vhu__port_forward(struct dev_port *p, struct dev_cmd *c);
void vhu__port_event(struct dev_port *p);
void vhu__port_shutdown(struct dev_port *p);
void vhu__port_close_req(struct dev_port *p, int reason);

/* device_poll.c */
void vhu__dq_poll_join(struct dev_queue *q);
void vhu__dq_poll_leave(struct dev_queue *q);
void vhu__dev_poll_wake(struct vhu_ring *r);

#endif
