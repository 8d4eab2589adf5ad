/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "target.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/wire.h>

#define BIT(n)	(1ull << (n))

/* virtio-blk config space offsets (virtio 1.2 5.2.4). */
#define CFG_CAPACITY		0
#define CFG_SEG_MAX		12
#define CFG_BLK_SIZE		20
#define CFG_NUM_QUEUES		34
#define CFG_MAX_DISCARD_SECTORS	36
#define CFG_MAX_DISCARD_SEG	40
#define CFG_DISCARD_ALIGN	44
#define CFG_MAX_WZ_SECTORS	48
#define CFG_MAX_WZ_SEG		52
#define CFG_WZ_MAY_UNMAP	56

static int
file_bytes(int fd, uint64_t *bytes)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		return -errno;
	}
	if (S_ISBLK(st.st_mode)) {
		return ioctl(fd, BLKGETSIZE64, bytes) == 0 ? 0 : -errno;
	}
	if (!S_ISREG(st.st_mode)) {
		return -EINVAL;
	}
	*bytes = (uint64_t)st.st_size;
	return 0;
}

int
blk_target_open(struct blk_target *t, const char *path, bool read_only, uint64_t null_bytes,
		unsigned int queues)
{
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	uint64_t bytes = null_bytes;
	int rc;

	memset(t, 0, sizeof(*t));
	t->fd = t->fd_direct = -1;
	t->read_only = read_only;
	t->queues = queues;
	t->zero_range = true;
	if (path == NULL) {
		t->null = true;
		t->punch = true;
	} else {
		t->fd = open(path, flags);
		if (t->fd < 0) {
			return -errno;
		}
		rc = file_bytes(t->fd, &bytes);
		if (rc < 0) {
			blk_target_close(t);
			return rc;
		}
		/* O_DIRECT where the file system has it; requests fall back per request. */
		t->fd_direct = open(path, flags | O_DIRECT);
		/* Punching beyond the end with KEEP_SIZE changes nothing: a probe. */
		t->punch = !read_only && fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						   (off_t)bytes, 4096) == 0;
	}
	t->discard = !read_only && t->punch;
	t->write_zeroes = !read_only;
	t->sectors = bytes / BLK_SECTOR;
	if (t->sectors == 0) {
		blk_target_close(t);
		return -EINVAL;
	}
	return 0;
}

void
blk_target_close(struct blk_target *t)
{
	if (t->fd >= 0) {
		close(t->fd);
	}
	if (t->fd_direct >= 0) {
		close(t->fd_direct);
	}
	t->fd = t->fd_direct = -1;
}

uint64_t
blk_target_features(const struct blk_target *t)
{
	uint64_t f = BIT(BLK_F_SEG_MAX) | BIT(BLK_F_BLK_SIZE) | BIT(BLK_F_FLUSH) | BIT(BLK_F_MQ) |
		     BIT(VHU_F_RING_INDIRECT_DESC) | BIT(VHU_F_RING_EVENT_IDX) |
		     BIT(VHU_F_VERSION_1);

	if (t->read_only) {
		f |= BIT(BLK_F_RO);
	}
	if (!t->read_only && t->discard) {
		f |= BIT(BLK_F_DISCARD);
	}
	if (!t->read_only && t->write_zeroes) {
		f |= BIT(BLK_F_WRITE_ZEROES);
	}
	return f;
}

static void
put32(uint8_t *out, unsigned int off, uint32_t v)
{
	memcpy(out + off, &v, sizeof(v));
}

void
blk_target_config(const struct blk_target *t, uint8_t out[BLK_CONFIG_SIZE])
{
	uint16_t nq = (uint16_t)t->queues;

	/* Little-endian fields, as every host vhu builds on. */
	memset(out, 0, BLK_CONFIG_SIZE);
	memcpy(out + CFG_CAPACITY, &t->sectors, sizeof(t->sectors));
	put32(out, CFG_SEG_MAX, BLK_SEG_MAX);
	put32(out, CFG_BLK_SIZE, BLK_SECTOR);
	memcpy(out + CFG_NUM_QUEUES, &nq, sizeof(nq));
	if (!t->read_only && t->discard) {
		put32(out, CFG_MAX_DISCARD_SECTORS, BLK_MAX_DISCARD_SECTORS);
		put32(out, CFG_MAX_DISCARD_SEG, 1);
		put32(out, CFG_DISCARD_ALIGN, 1);
	}
	if (!t->read_only && t->write_zeroes) {
		put32(out, CFG_MAX_WZ_SECTORS, BLK_MAX_DISCARD_SECTORS);
		put32(out, CFG_MAX_WZ_SEG, 1);
		/* UNMAP may punch a hole only where holes can be punched. */
		out[CFG_WZ_MAY_UNMAP] = t->punch ? 1 : 0;
	}
}
