/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk requests on the ring. A request is: an out header (type,
 * ioprio, sector) in the device-readable buffers, then data (readable for
 * T_OUT, writable for T_IN), then one writable status byte, the chain's
 * last. Reads and writes go straight from the guest's translated iovecs to
 * preadv/pwritev on the ring (no bounce copy), O_DIRECT when the file has
 * it and every buffer is sector-aligned, else buffered; a direct request
 * the file refuses (-EINVAL: a larger logical block) is retried buffered.
 * FLUSH is an fsync on the ring, DISCARD an fallocate that punches a
 * hole. WRITE_ZEROES punches a hole only with the UNMAP flag (and where
 * holes can be punched); without it the range must stay allocated, so it
 * is FALLOC_FL_ZERO_RANGE, or, where the file system refuses that, zeroes
 * written from a shared zero buffer.
 */
#define _GNU_SOURCE
#include "blkdev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/error.h>

#define BLK_OUTHDR	16u
#define WZ_F_UNMAP	1u
/* Zeroes written per operation where the file system cannot zero a range. */
#define ZERO_CHUNK	(64u * 1024u)

static const uint8_t zero_chunk[ZERO_CHUNK];

/* How a DISCARD or WRITE_ZEROES is done (blk_req.zmode). */
enum zmode { Z_PUNCH, Z_ZERO_RANGE, Z_WRITE };

struct blk_queue;

struct blk_req {
	struct vhu_op op;
	struct blk_queue *q;
	struct blk_req *next_free;
	struct vhu_vq_req vr;
	struct iovec iov[BLK_IOV_MAX];
	struct iovec *data;	/* the data iovecs, inside iov */
	unsigned int ndata;
	uint8_t *status;
	uint32_t type;
	uint32_t used;		/* bytes written to the guest, status included */
	uint64_t off;		/* file offset of the next transfer */
	uint64_t left;		/* bytes still to transfer */
	uint32_t wz_flags;
	enum zmode zmode;
	bool direct;
};

/* Cache-line aligned: with reactors, each queue's counters are written by its own thread. */
struct blk_queue {
	_Alignas(64) struct blk_dev *bd;
	unsigned int idx;
	struct blk_req *reqs;
	unsigned int nreqs;
	struct blk_req *free;
	unsigned int inflight;
	bool pumping;
};

struct blk_dev {
	struct blk_target *t;
	struct vhu_dev *dev;
	unsigned int nq;
	struct blk_queue q[];
};

static void req_submit(struct blk_req *r);
static void queue_pump(struct blk_queue *q);

/* Copy len bytes from the front of iov[0, n) into dst; \return false if short. */
static bool
iov_gather(const struct iovec *iov, unsigned int n, uint64_t skip, void *dst, size_t len)
{
	uint8_t *out = dst;
	unsigned int i;

	for (i = 0; i < n && len > 0; i++) {
		size_t l = iov[i].iov_len;
		size_t c;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		c = l - skip < len ? l - skip : len;
		memcpy(out, (uint8_t *)iov[i].iov_base + skip, c);
		out += c;
		len -= c;
		skip = 0;
	}
	return len == 0;
}

/* Drop bytes from the front of *iov (n entries), in place. */
static void
iov_skip(struct iovec **iov, unsigned int *n, uint64_t bytes)
{
	while (*n > 0 && bytes >= (*iov)->iov_len) {
		bytes -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n > 0 && bytes > 0) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + bytes;
		(*iov)->iov_len -= bytes;
	}
}

static bool
iov_aligned(const struct iovec *iov, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) % BLK_SECTOR != 0) {
			return false;
		}
	}
	return true;
}

/* The request is done: status, back to the pool, then to the guest. */
static void
req_finish(struct blk_req *r, uint8_t status)
{
	struct blk_queue *q = r->q;
	struct vhu_dev *dev = q->bd->dev;
	bool closing = vhu_dev_closing(dev);

	if (r->status != NULL) {
		*r->status = status;
		r->used++;
	}
	r->next_free = q->free;
	q->free = r;
	q->inflight--;
	/* On a closing device this may free everything (ops->close): touch nothing after. */
	(void)vhu_dev_push(dev, q->idx, &r->vr, r->used);
	if (!closing) {
		queue_pump(q);
	}
}

static void
req_done(struct vhu_op *op, int res, uint32_t flags)
{
	struct blk_req *r = (struct blk_req *)(void *)((char *)op - offsetof(struct blk_req, op));
	const struct blk_target *t = r->q->bd->t;

	if (res == -EINVAL && r->direct) {
		r->direct = false;	/* the file refused this alignment: buffered */
		req_submit(r);
		return;
	}
	if (res == -EOPNOTSUPP && r->zmode == Z_ZERO_RANGE) {
		/* No ZERO_RANGE here: write the zeroes, now and from now on. */
		/* The target is shared by every reactor thread: a relaxed flag. */
		__atomic_store_n(&r->q->bd->t->zero_range, false, __ATOMIC_RELAXED);
		r->zmode = Z_WRITE;
		req_submit(r);
		return;
	}
	if (res < 0) {
		req_finish(r, BLK_S_IOERR);
		return;
	}
	if (r->type == BLK_T_WRITE_ZEROES && r->zmode == Z_WRITE) {
		if (res == 0 || (uint64_t)res > r->left) {
			req_finish(r, BLK_S_IOERR);
			return;
		}
		r->left -= (uint64_t)res;
		r->off += (uint64_t)res;
		if (r->left > 0) {
			req_submit(r);
			return;
		}
	}
	if (r->type == BLK_T_IN || r->type == BLK_T_OUT) {
		if (res == 0 || (uint64_t)res > r->left) {
			req_finish(r, BLK_S_IOERR);
			return;
		}
		if (r->type == BLK_T_IN) {
			r->used += (uint32_t)res;
		}
		r->left -= (uint64_t)res;
		r->off += (uint64_t)res;
		if (r->left > 0) {
			/* A short transfer: the rest, from where it stopped. */
			iov_skip(&r->data, &r->ndata, (uint64_t)res);
			req_submit(r);
			return;
		}
	}
	(void)t;
	req_finish(r, BLK_S_OK);
}

static void
req_submit(struct blk_req *r)
{
	const struct blk_target *t = r->q->bd->t;
	struct io_uring_sqe *sqe = vhu_op_sqe(vhu_dev_queue_ring(r->q->bd->dev, r->q->idx), &r->op);
	int fd = r->direct ? t->fd_direct : t->fd;
	int mode;

	if (sqe == NULL) {
		req_finish(r, BLK_S_IOERR);
		return;
	}
	switch (r->type) {
	case BLK_T_IN:
		io_uring_prep_readv(sqe, fd, r->data, r->ndata, r->off);
		break;
	case BLK_T_OUT:
		io_uring_prep_writev(sqe, fd, r->data, r->ndata, r->off);
		break;
	case BLK_T_FLUSH:
		io_uring_prep_fsync(sqe, t->fd, 0);
		break;
	default:
		if (r->zmode == Z_WRITE) {
			io_uring_prep_write(sqe, t->fd, zero_chunk,
					    r->left < ZERO_CHUNK ? (unsigned int)r->left : ZERO_CHUNK,
					    r->off);
			break;
		}
		mode = FALLOC_FL_KEEP_SIZE |
		       (r->zmode == Z_PUNCH ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
		io_uring_prep_fallocate(sqe, t->fd, mode, r->off, r->left);
		break;
	}
}

/* The request header every virtio-blk request starts with. */
struct blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

_Static_assert(sizeof(struct blk_outhdr) == BLK_OUTHDR, "virtio-blk's out header is 16 bytes");

/* One range of a DISCARD or WRITE_ZEROES request. */
struct blk_range {
	uint64_t sector;
	uint32_t num;
	uint32_t flags;
};

/* IN and OUT: the data between header and status, within the disk. */
static void
start_rw(struct blk_req *r, const struct blk_outhdr *hdr)
{
	const struct blk_target *t = r->q->bd->t;
	struct vhu_vq_req *vr = &r->vr;
	uint64_t bytes;

	if (hdr->type == BLK_T_IN) {
		r->data = &vr->iov[vr->nread];
		r->ndata = vr->nwrite;
		bytes = vr->write_len - 1;
	} else {
		if (t->read_only) {
			req_finish(r, BLK_S_IOERR);
			return;
		}
		r->data = vr->iov;
		r->ndata = vr->nread;
		iov_skip(&r->data, &r->ndata, BLK_OUTHDR);
		bytes = vr->read_len - BLK_OUTHDR;
	}
	if (bytes % BLK_SECTOR != 0 || hdr->sector > t->sectors ||
	    bytes / BLK_SECTOR > t->sectors - hdr->sector) {
		req_finish(r, BLK_S_IOERR);
		return;
	}
	r->left = bytes;
	if (bytes == 0) {
		req_finish(r, BLK_S_OK);
		return;
	}
	if (t->null) {
		if (hdr->type == BLK_T_IN) {
			for (unsigned int i = 0; i < r->ndata; i++) {
				memset(r->data[i].iov_base, 0, r->data[i].iov_len);
			}
			r->used += (uint32_t)bytes;
		}
		req_finish(r, BLK_S_OK);
		return;
	}
	r->direct = t->fd_direct >= 0 && iov_aligned(r->data, r->ndata);
	req_submit(r);
}

/* GET_ID: the serial, as much of it as the buffers hold. */
static void
start_get_id(struct blk_req *r)
{
	static const char id[BLK_ID_BYTES] = "vhu-blk";
	struct vhu_vq_req *vr = &r->vr;
	struct iovec *w = &vr->iov[vr->nread];
	uint32_t done = 0;

	for (unsigned int i = 0; i < vr->nwrite && done < BLK_ID_BYTES; i++) {
		size_t c = w[i].iov_len < BLK_ID_BYTES - done ? w[i].iov_len : BLK_ID_BYTES - done;

		memcpy(w[i].iov_base, id + done, c);
		done += (uint32_t)c;
	}
	r->used = done;
	req_finish(r, BLK_S_OK);
}

/* DISCARD and WRITE_ZEROES: one range (max_discard_seg = max_write_zeroes_seg = 1). */
static void
start_range(struct blk_req *r, const struct blk_outhdr *hdr)
{
	const struct blk_target *t = r->q->bd->t;
	struct vhu_vq_req *vr = &r->vr;
	struct blk_range seg;

	if (t->read_only || (hdr->type == BLK_T_DISCARD ? !t->discard : !t->write_zeroes)) {
		req_finish(r, BLK_S_UNSUPP);
		return;
	}
	if (vr->read_len != BLK_OUTHDR + sizeof(seg) ||
	    !iov_gather(vr->iov, vr->nread, BLK_OUTHDR, &seg, sizeof(seg)) ||
	    seg.num > BLK_MAX_DISCARD_SECTORS || seg.sector > t->sectors ||
	    seg.num > t->sectors - seg.sector ||
	    (hdr->type == BLK_T_DISCARD && seg.flags != 0) ||
	    (seg.flags & ~WZ_F_UNMAP) != 0) {
		req_finish(r, BLK_S_IOERR);
		return;
	}
	r->off = seg.sector * BLK_SECTOR;
	r->left = (uint64_t)seg.num * BLK_SECTOR;
	if (t->null || r->left == 0) {
		req_finish(r, BLK_S_OK);
		return;
	}
	/*
	 * A punched hole reads back as zeroes, but deallocates: for
	 * WRITE_ZEROES only when the driver allows it (UNMAP).
	 */
	if (hdr->type == BLK_T_WRITE_ZEROES && !((seg.flags & WZ_F_UNMAP) && t->punch)) {
		r->zmode = __atomic_load_n(&t->zero_range, __ATOMIC_RELAXED) ? Z_ZERO_RANGE
									      : Z_WRITE;
	}
	req_submit(r);
}

/* A popped chain: find its header and status byte, then start it by type. */
static void
req_start(struct blk_req *r)
{
	const struct blk_target *t = r->q->bd->t;
	struct vhu_vq_req *vr = &r->vr;
	struct blk_outhdr hdr;
	struct iovec *last;

	r->status = NULL;
	r->used = 0;
	r->direct = false;
	r->zmode = Z_PUNCH;
	if (vr->nwrite == 0 || !iov_gather(vr->iov, vr->nread, 0, &hdr, sizeof(hdr))) {
		/* No status byte to answer with, or no header: complete it empty. */
		if (vr->nwrite > 0) {
			last = &vr->iov[vr->nread + vr->nwrite - 1];
			r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
		}
		req_finish(r, BLK_S_IOERR);
		return;
	}
	/* The status byte is the last writable byte; the data is what lies between. */
	last = &vr->iov[vr->nread + vr->nwrite - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	last->iov_len--;
	r->type = hdr.type;
	r->off = hdr.sector * BLK_SECTOR;
	switch (hdr.type) {
	case BLK_T_IN:
	case BLK_T_OUT:
		start_rw(r, &hdr);
		return;
	case BLK_T_FLUSH:
		if (t->null) {
			req_finish(r, BLK_S_OK);
			return;
		}
		req_submit(r);
		return;
	case BLK_T_GET_ID:
		start_get_id(r);
		return;
	case BLK_T_DISCARD:
	case BLK_T_WRITE_ZEROES:
		start_range(r, &hdr);
		return;
	default:
		req_finish(r, BLK_S_UNSUPP);
		return;
	}
}

/* Pop while the pool has room; a full pool waits for a completion, never drops. */
static void
queue_pump(struct blk_queue *q)
{
	struct vhu_dev *dev = q->bd->dev;

	if (q->pumping) {
		return;
	}
	q->pumping = true;
	while (q->free != NULL && !vhu_dev_closing(dev)) {
		struct blk_req *r = q->free;
		int rc = vhu_dev_pop(dev, q->idx, &r->vr, r->iov, BLK_IOV_MAX);

		if (rc <= 0) {
			break;
		}
		q->free = r->next_free;
		q->inflight++;
		req_start(r);
	}
	q->pumping = false;
}

/* The pool follows the queue size (set before the queue starts; resized only when idle). */
static int
queue_pool(struct blk_queue *q, unsigned int num)
{
	unsigned int i;

	if (q->nreqs == num) {
		return 0;
	}
	if (q->inflight > 0) {
		return 0;	/* keep the old pool until its requests are back */
	}
	free(q->reqs);
	q->reqs = calloc(num, sizeof(q->reqs[0]));
	q->nreqs = q->reqs != NULL ? num : 0;
	q->free = NULL;
	for (i = 0; i < q->nreqs; i++) {
		q->reqs[i].q = q;
		q->reqs[i].op.done = req_done;
		q->reqs[i].next_free = q->free;
		q->free = &q->reqs[i];
	}
	return q->reqs != NULL ? 0 : -ENOMEM;
}

static int
blk_open(struct vhu_dev *dev, void *ctx)
{
	struct blk_target *t = ctx;
	unsigned int i, nq = vhu_dev_num_queues(dev);
	size_t size = sizeof(struct blk_dev) + nq * sizeof(struct blk_queue);
	struct blk_dev *bd = aligned_alloc(64, (size + 63) / 64 * 64);

	if (bd == NULL) {
		return -ENOMEM;
	}
	memset(bd, 0, size);
	bd->t = t;
	bd->dev = dev;
	bd->nq = nq;
	for (i = 0; i < nq; i++) {
		bd->q[i].bd = bd;
		bd->q[i].idx = i;
	}
	vhu_dev_set_ctx(dev, bd);
	return 0;
}

static void
blk_queue_work(struct vhu_dev *dev, unsigned int qi, void *ctx)
{
	struct blk_dev *bd = vhu_dev_ctx(dev);
	struct blk_queue *q = &bd->q[qi];

	if (queue_pool(q, vhu_vq_num(vhu_dev_vq(dev, qi))) < 0) {
		vhu_dev_close(dev, -ENOMEM);
		return;
	}
	queue_pump(q);
}

static int
blk_get_config(struct vhu_dev *dev, uint32_t offset, void *buf, uint32_t len, void *ctx)
{
	uint8_t cfg[BLK_CONFIG_SIZE];

	if ((uint64_t)offset + len > sizeof(cfg)) {
		return -ERANGE;
	}
	blk_target_config(ctx, cfg);
	memcpy(buf, cfg + offset, len);
	return 0;
}

static void
blk_close(struct vhu_dev *dev, int reason, void *ctx)
{
	struct blk_dev *bd = vhu_dev_ctx(dev);
	unsigned int i;

	if (bd == NULL) {
		return;
	}
	for (i = 0; i < bd->nq; i++) {
		free(bd->q[i].reqs);
	}
	free(bd);
	vhu_dev_set_ctx(dev, NULL);
}

const struct vhu_dev_ops blk_dev_ops = {
	.open = blk_open,
	.queue_work = blk_queue_work,
	.get_config = blk_get_config,
	.close = blk_close,
};

void
blk_dev_opts(struct blk_target *t, uint8_t config[BLK_CONFIG_SIZE], struct vhu_dev_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->features = blk_target_features(t);
	o->num_queues = t->queues;
	blk_target_config(t, config);
	o->config = config;
	o->config_size = BLK_CONFIG_SIZE;
	o->ops = &blk_dev_ops;
	o->ctx = t;
	o->recv_mode = VHU_RECV_STREAM;
	/* Every request is pushed when its I/O ends: a restart may resubmit. */
	o->inflight = true;
}
