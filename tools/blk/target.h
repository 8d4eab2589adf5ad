/* SPDX-License-Identifier: MIT */
/*
 * What vhu-blk serves: a file (or block device) or a null disk, its
 * capacity, the virtio-blk features it can honour and its config space.
 */
#ifndef VHU_BLK_TARGET_H
#define VHU_BLK_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#define BLK_SECTOR		512u
/* Bytes of config space served (virtio 1.2 5.2.4, up to write_zeroes_may_unmap). */
#define BLK_CONFIG_SIZE		60u
/* Data segments per request (seg_max); a request has two descriptors more. */
#define BLK_SEG_MAX		126u
#define BLK_IOV_MAX		(BLK_SEG_MAX + 2u)
/* Discard and write-zeroes: one segment per request, at most this many sectors. */
#define BLK_MAX_DISCARD_SECTORS	(1u << 22)

/* virtio-blk feature bits (virtio 1.2 5.2.3). */
#define BLK_F_SEG_MAX		2
#define BLK_F_RO		5
#define BLK_F_BLK_SIZE		6
#define BLK_F_FLUSH		9
#define BLK_F_MQ		12
#define BLK_F_DISCARD		13
#define BLK_F_WRITE_ZEROES	14

struct blk_target {
	int fd;			/* buffered I/O; -1 for a null disk */
	int fd_direct;		/* O_DIRECT on the same file, or -1 */
	uint64_t sectors;
	bool read_only;
	bool null;		/* reads zeroes, discards writes */
	bool punch;		/* fallocate PUNCH_HOLE works: DISCARD, WRITE_ZEROES with UNMAP */
	bool zero_range;	/* FALLOC_FL_ZERO_RANGE not yet refused (then zeroes are written) */
	bool discard;		/* offer DISCARD (writable and punch) */
	bool write_zeroes;	/* offer WRITE_ZEROES (writable) */
	unsigned int queues;
};

/*
 * Open path (read-only or not), or make a null disk of null_bytes when path
 * is NULL. A writable target offers WRITE_ZEROES (a zeroed range, or
 * zeroes written where the file system has no FALLOC_FL_ZERO_RANGE), and
 * DISCARD and write_zeroes_may_unmap only where holes can be punched; a
 * caller may clear discard and write_zeroes before taking the features.
 * \return 0, or -errno (a capacity below one sector: -EINVAL).
 */
int blk_target_open(struct blk_target *t, const char *path, bool read_only,
		    uint64_t null_bytes, unsigned int queues);

void blk_target_close(struct blk_target *t);

/* The virtio features offered. */
uint64_t blk_target_features(const struct blk_target *t);

/* The config space, little-endian fields. */
void blk_target_config(const struct blk_target *t, uint8_t out[BLK_CONFIG_SIZE]);

#endif
