/* SPDX-License-Identifier: MIT */
/*
 * Private state of the device layer, shared by its files:
 *  - device.c: the server, a device's lifecycle (open, close, drain, free);
 *  - device_msg.c: the protocol (one handler per request, one place that
 *    replies, acks or closes);
 *  - device_queue.c: kicks, calls and the data path;
 *  - device_inflight.c: the inflight region (GET/SET_INFLIGHT_FD);
 *  - device_poll.c: poll mode (the queues a ring spins on).
 * Writers: device_msg.c the negotiated state and the queues' configuration;
 * device_queue.c the kick and call operations; device.c the lifecycle.
 */
#ifndef VHU_URING_DEVICE_INTERNAL_H
#define VHU_URING_DEVICE_INTERNAL_H

#include <vhu/device.h>
#include <vhu/guest_mem.h>
#include <vhu/vq.h>

#include "internal.h"

struct dev_queue {
	struct vhu_dev *dev;
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
	struct vlist call_link;		/* ring->dev_calls */
	struct vlist poll_link;		/* ring->poll.queues (device_poll.c) */
	bool polled;			/* listed there */
	int err_fd;
};

struct vhu_dev_server {
	struct vhu_ring *ring;
	struct vhu_ulistener *lis;
	struct vhu_dev_opts o;
	struct vhu_dev_ops ops;
	uint8_t *config;
	struct vlist devs;
	unsigned int ndevs;
	unsigned int next_id;
	bool destroyed;
};

struct vhu_dev {
	struct vhu_dev_server *srv;
	struct vhu_ring *ring;
	struct vhu_conn *conn;		/* NULL once closed */
	struct vlist link;		/* srv->devs */
	unsigned int id;
	void *ctx;
	bool opened;			/* ops->open ran and accepted it */
	bool closing;
	int reason;
	bool held;			/* a message waits (VHU_MSG_HOLD) for the requests to drain */
	uint64_t features;
	uint64_t protocol_features;
	bool protocol_set;
	bool owner;
	uint8_t status;
	int backend_fd;
	struct vhu_mem *mem;
	void *ifl_map;			/* the inflight region (SET_INFLIGHT_FD), or NULL */
	size_t ifl_len;
	unsigned int nq;
	struct dev_queue q[];
};

/* device.c */
void vhu__dev_maybe_free(struct vhu_dev *d);
unsigned int vhu__dev_inflight(const struct vhu_dev *d);

/* device_msg.c */
int vhu__dev_on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx);
void vhu__dev_reset_state(struct vhu_dev *d);

/* device_inflight.c */
int vhu__dev_inflight_create(struct vhu_dev *d, struct vhu_inflight *b, int *fd);
int vhu__dev_inflight_set(struct vhu_dev *d, const struct vhu_inflight *b, int fd);
void vhu__dev_inflight_release(struct vhu_dev *d);

/* device_queue.c */
void vhu__dq_init(struct dev_queue *q, struct vhu_dev *d, unsigned int idx);
int vhu__dq_set_kick(struct dev_queue *q, int fd);
void vhu__dq_set_call(struct dev_queue *q, int fd);
void vhu__dq_stop(struct dev_queue *q);
void vhu__dq_shutdown(struct dev_queue *q);
bool vhu__dq_idle(const struct dev_queue *q);
bool vhu__dq_kick_idle(const struct dev_queue *q);
void vhu__dq_fini(struct dev_queue *q);
void vhu__dq_work(struct dev_queue *q);

/* device_poll.c */
void vhu__dq_poll_join(struct dev_queue *q);
void vhu__dq_poll_leave(struct dev_queue *q);
void vhu__dev_poll_wake(struct vhu_ring *r);

#endif
