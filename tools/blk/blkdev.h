/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk's device: virtio-blk requests of every queue of every front-end,
 * done on the ring as the disk completes them (out of order), from a
 * per-queue pool of requests sized to the queue (no allocation per
 * request; a full pool stops popping until a request completes).
 */
#ifndef VHU_BLK_BLKDEV_H
#define VHU_BLK_BLKDEV_H

#include <vhu/device.h>

#include "target.h"

/* virtio-blk request types and status (virtio 1.2 5.2.6). */
#define BLK_T_IN		0u
#define BLK_T_OUT		1u
#define BLK_T_FLUSH		4u
#define BLK_T_GET_ID		8u
#define BLK_T_DISCARD		11u
#define BLK_T_WRITE_ZEROES	13u
#define BLK_S_OK		0u
#define BLK_S_IOERR		1u
#define BLK_S_UNSUPP		2u
#define BLK_ID_BYTES		20u

/* The device callbacks; their ctx is the struct blk_target served. */
extern const struct vhu_dev_ops blk_dev_ops;

/*
 * Device options for target t: features, queues, config space (into
 * config, which must outlive the server's creation), ops and ctx.
 */
void blk_dev_opts(struct blk_target *t, uint8_t config[BLK_CONFIG_SIZE],
		  struct vhu_dev_opts *o);

#endif
