/* SPDX-License-Identifier: MIT */
/*
 * A userspace vhost-user-blk driver (see blkdrv.h).
 *
 * Security model: the back-end is untrusted. Its control replies go
 * through the endpoint's validation; everything it writes into shared
 * memory (used ring, status bytes) is read once and range-checked by
 * vq_driver.c and complete() below. The driver never copies payload, so a
 * lying used length cannot make it read or write outside the buffers the
 * application handed over; it only fails the request.
 *
 * Memory: one driver-owned memfd region ("ring region") holds, per queue,
 * the rings, the indirect tables and a request header block per
 * descriptor (out header, discard/write-zeroes range, status byte).
 * Guest-physical addresses are the driver's virtual addresses.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vhu/blkdrv.h>
#include <vhu/endpoint.h>
#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/virtq.h>
#include <vhu/vq_driver.h>
#include <vhu/wire.h>

#define F(n)			(1ull << (n))
#define PF(name)		F(VHU_PROTOCOL_F_##name)

/* virtio-blk feature bits. */
#define BLK_F_SIZE_MAX		1
#define BLK_F_SEG_MAX		2
#define BLK_F_RO		5
#define BLK_F_BLK_SIZE		6
#define BLK_F_FLUSH		9
#define BLK_F_TOPOLOGY		10
#define BLK_F_MQ		12
#define BLK_F_DISCARD		13
#define BLK_F_WRITE_ZEROES	14

#define WANT_FEATURES	(F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | \
			 F(VHU_F_RING_INDIRECT_DESC) | F(VHU_F_RING_EVENT_IDX) | \
			 F(BLK_F_SIZE_MAX) | F(BLK_F_SEG_MAX) | F(BLK_F_RO) | \
			 F(BLK_F_BLK_SIZE) | F(BLK_F_FLUSH) | F(BLK_F_TOPOLOGY) | \
			 F(BLK_F_MQ) | F(BLK_F_DISCARD) | F(BLK_F_WRITE_ZEROES))
#define WANT_PF		(PF(MQ) | PF(REPLY_ACK) | PF(CONFIG) | PF(CONFIGURE_MEM_SLOTS))

#define DEFAULT_QUEUE_SIZE	256u
#define DEFAULT_TIMEOUT_MS	5000
#define CONFIG_LEN		60u
#define MAX_REGIONS		32u	/* ring region included */
#define TABLE_REGIONS		8u	/* SET_MEM_TABLE: libvhost-user's baseline */
#define INDIRECT		(VHU_BLKDRV_MAX_SEGS + 2u)
/* Empty polls between checks that the back-end is still there. */
#define GONE_CHECK_POLLS	4096u

/* The per-descriptor request block in the ring region. */
struct req_hdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct dwz_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;		/* bit 0: unmap (write-zeroes) */
};

struct req_block {
	struct req_hdr hdr;
	struct dwz_range range;
	uint8_t status;
	uint8_t pad[15];
};
_Static_assert(sizeof(struct req_block) == 48, "req_block");

#define ST_OK		0
#define ST_IOERR	1
#define ST_UNSUPP	2
#define ST_UNSET	0xffu

struct slot {
	void *cookie;
};

struct bq {
	struct vhu_vqd *vq;
	struct req_block *blocks;
	struct slot *slots;
	int kick;
	int call;
	int dead;			/* sticky error: the queue is being failed */
	unsigned int fail_cursor;	/* next head to fail while dead */
	unsigned int empty_polls;
	uint64_t kicks;			/* kick eventfd writes */
};

struct region {
	uint8_t *addr;
	size_t len;
	int fd;
};

struct vhu_blkdrv {
	struct vhu_endpoint *ep;
	struct vhu_blkdrv_info info;
	int timeout_ms;
	bool acking;
	bool no_event_idx;		/* vhu_blkdrv_opts.no_event_idx */
	int gone;			/* atomic: 0, or -VHU_EDISCONNECT */
	int peer_pid;
	unsigned int max_regions;
	unsigned int nregions;
	struct region regions[MAX_REGIONS];	/* [0] is the ring region */
	unsigned int nq;
	struct bq q[VHU_BLKDRV_MAX_QUEUES];
};

/* Control channel ------------------------------------------------------ */

/*
 * Send a request. GET-style requests wait for their reply into reply;
 * the others ask for an ack when REPLY_ACK was negotiated (a non-zero ack
 * is -EPROTO) and otherwise are only sent.
 */
static ssize_t
ctl(struct vhu_blkdrv *d, uint32_t req, const void *body, size_t len, const int *fds,
    unsigned int nfds, void *reply, size_t rlen)
{
	const struct vhu_req_info *ri = vhu_req_info(VHU_CHAN_FRONTEND, req);
	struct vhu_hdr h;
	uint64_t ack = 1;
	ssize_t n;

	if (ri != NULL && ri->reply == VHU_REPLY_ALWAYS) {
		h = vhu_hdr_request(req, (uint32_t)len, false);
		return vhu_endpoint_call(d->ep, &h, body, len, fds, nfds, reply, rlen, NULL);
	}
	if (!d->acking) {
		h = vhu_hdr_request(req, (uint32_t)len, false);
		if (len == 0) {
			return vhu_endpoint_send_header(d->ep, &h, fds, nfds);
		}
		return vhu_endpoint_send_message(d->ep, &h, body, len, fds, nfds);
	}
	h = vhu_hdr_request(req, (uint32_t)len, true);
	n = vhu_endpoint_call(d->ep, &h, body, len, fds, nfds, &ack, sizeof(ack), NULL);
	if (n < 0) {
		return n;
	}
	if (n != sizeof(ack)) {
		return -VHU_EBODYSIZE;
	}
	return ack == 0 ? 0 : -EPROTO;
}

static int
ctl_get_u64(struct vhu_blkdrv *d, uint32_t req, uint64_t *v)
{
	ssize_t n = ctl(d, req, NULL, 0, NULL, 0, v, sizeof(*v));

	if (n < 0) {
		return (int)n;
	}
	return n == sizeof(*v) ? 0 : -VHU_EBODYSIZE;
}

static int
ctl_set_u64(struct vhu_blkdrv *d, uint32_t req, uint64_t v)
{
	return (int)ctl(d, req, &v, sizeof(v), NULL, 0, NULL, 0);
}

static int
ctl_vring_state(struct vhu_blkdrv *d, uint32_t req, unsigned int idx, unsigned int num)
{
	struct vhu_vring_state s = { .index = idx, .num = num };

	return (int)ctl(d, req, &s, sizeof(s), NULL, 0, NULL, 0);
}

static int
ctl_vring_fd(struct vhu_blkdrv *d, uint32_t req, unsigned int idx, int fd)
{
	uint64_t v = idx;

	return (int)ctl(d, req, &v, sizeof(v), &fd, 1, NULL, 0);
}

static struct vhu_mem_region
region_desc(const struct region *r)
{
	struct vhu_mem_region m = {
		.guest_phys_addr = (uint64_t)(uintptr_t)r->addr,
		.size = r->len,
		.user_addr = (uint64_t)(uintptr_t)r->addr,
		.mmap_offset = 0,
	};
	return m;
}

/* Share region i with the back-end: ADD_MEM_REG, or the whole table again. */
static int
share_region(struct vhu_blkdrv *d, unsigned int i)
{
	struct vhu_mem_table t;
	int fds[MAX_REGIONS];
	unsigned int k;

	if (d->info.mem_slots) {
		struct vhu_single_region s = { .padding = 0, .region = region_desc(&d->regions[i]) };

		return (int)ctl(d, VHU_REQ_ADD_MEM_REG, &s, sizeof(s), &d->regions[i].fd, 1,
				NULL, 0);
	}
	memset(&t, 0, sizeof(t));
	t.nregions = i + 1;
	for (k = 0; k <= i; k++) {
		t.regions[k] = region_desc(&d->regions[k]);
		fds[k] = d->regions[k].fd;
	}
	return (int)ctl(d, VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(i + 1), fds, i + 1,
			NULL, 0);
}

/* Memory ---------------------------------------------------------------- */

static int
region_new(struct region *r, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	int err;

	len = (len + (size_t)page - 1) & ~((size_t)page - 1);
	r->fd = memfd_create("vhu-blkdrv", MFD_CLOEXEC);
	if (r->fd < 0) {
		return -errno;
	}
	if (ftruncate(r->fd, (off_t)len) != 0) {
		err = -errno;
		goto fail;
	}
	r->addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	if (r->addr == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	r->len = len;
	return 0;
fail:
	close(r->fd);
	r->fd = -1;
	r->addr = NULL;
	return err;
}

static void
region_free(struct region *r)
{
	if (r->addr != NULL) {
		munmap(r->addr, r->len);
	}
	if (r->fd >= 0) {
		close(r->fd);
	}
	r->addr = NULL;
	r->fd = -1;
}

int
vhu_blkdrv_alloc(struct vhu_blkdrv *d, size_t len, void **out)
{
	struct region *r;
	unsigned int i;
	int rc;

	*out = NULL;
	if (len == 0) {
		return -EINVAL;
	}
	if (d->nregions >= d->max_regions) {
		return -ENOSPC;
	}
	if (!d->info.mem_slots) {
		for (i = 0; i < d->nq; i++) {
			if (vhu_vqd_inflight(d->q[i].vq) > 0) {
				return -EBUSY;
			}
		}
	}
	r = &d->regions[d->nregions];
	rc = region_new(r, len);
	if (rc < 0) {
		return rc;
	}
	rc = share_region(d, d->nregions);
	if (rc < 0) {
		region_free(r);
		return rc;
	}
	d->nregions++;
	*out = r->addr;
	return 0;
}

/* Is [p, p + len) inside one application region? */
static bool
in_region(const struct vhu_blkdrv *d, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;
	unsigned int i;

	for (i = 1; i < d->nregions; i++) {
		uintptr_t b = (uintptr_t)d->regions[i].addr;

		if (a >= b && len <= d->regions[i].len && a - b <= d->regions[i].len - len) {
			return true;
		}
	}
	return false;
}

/* Set-up --------------------------------------------------------------- */

static size_t
queue_mem(unsigned int num)
{
	return vhu_vqd_mem_size(num, INDIRECT) + (size_t)num * sizeof(struct req_block);
}

static int
negotiate(struct vhu_blkdrv *d, unsigned int want_queues)
{
	uint64_t features, pf, v;
	int rc;

	rc = ctl_get_u64(d, VHU_REQ_GET_FEATURES, &features);
	if (rc < 0) {
		return rc;
	}
	if (!(features & F(VHU_F_VERSION_1)) || !(features & F(VHU_F_PROTOCOL_FEATURES))) {
		return -ENOTSUP;
	}
	rc = ctl_get_u64(d, VHU_REQ_GET_PROTOCOL_FEATURES, &pf);
	if (rc < 0) {
		return rc;
	}
	pf &= WANT_PF;
	if (!(pf & PF(CONFIG))) {
		return -ENOTSUP;
	}
	/* As QEMU: no ack asked for the message that turns acks on. */
	rc = ctl_set_u64(d, VHU_REQ_SET_PROTOCOL_FEATURES, pf);
	if (rc < 0) {
		return rc;
	}
	d->info.protocol_features = pf;
	d->acking = (pf & PF(REPLY_ACK)) != 0;
	d->info.num_queues = 1;
	if (pf & PF(MQ)) {
		rc = ctl_get_u64(d, VHU_REQ_GET_QUEUE_NUM, &v);
		if (rc < 0) {
			return rc;
		}
		d->info.num_queues = (uint16_t)(v > 0xffff ? 0xffff : v);
	}
	if (want_queues > d->info.num_queues) {
		return -EINVAL;
	}
	d->max_regions = TABLE_REGIONS;
	if ((pf & PF(CONFIGURE_MEM_SLOTS))) {
		rc = ctl_get_u64(d, VHU_REQ_GET_MAX_MEM_SLOTS, &v);
		if (rc < 0) {
			return rc;
		}
		if (v >= 2) {
			d->info.mem_slots = true;
			d->max_regions = v < MAX_REGIONS ? (unsigned int)v : MAX_REGIONS;
		}
	}
	rc = (int)ctl(d, VHU_REQ_SET_OWNER, NULL, 0, NULL, 0, NULL, 0);
	if (rc < 0) {
		return rc;
	}
	features &= WANT_FEATURES;
	if (d->no_event_idx) {
		features &= ~F(VHU_F_RING_EVENT_IDX);
	}
	rc = ctl_set_u64(d, VHU_REQ_SET_FEATURES, features);
	if (rc < 0) {
		return rc;
	}
	d->info.features = features;
	return 0;
}

static uint32_t
cfg32(const uint8_t *c, size_t off)
{
	uint32_t v;

	memcpy(&v, c + off, sizeof(v));
	return v;
}

static int
read_config(struct vhu_blkdrv *d)
{
	union {
		uint64_t align;
		uint8_t b[VHU_CONFIG_HDR_SIZE + CONFIG_LEN];
	} req, rep;
	struct vhu_config cfg = { .offset = 0, .size = CONFIG_LEN, .flags = 0 };
	const uint8_t *c = rep.b + VHU_CONFIG_HDR_SIZE;
	uint64_t f = d->info.features;
	ssize_t n;

	memset(&req, 0, sizeof(req));
	memset(&rep, 0, sizeof(rep));
	memcpy(req.b, &cfg, VHU_CONFIG_HDR_SIZE);
	n = ctl(d, VHU_REQ_GET_CONFIG, req.b, sizeof(req.b), NULL, 0, rep.b, sizeof(rep.b));
	if (n < 0) {
		return (int)n;
	}
	if (n < (ssize_t)(VHU_CONFIG_HDR_SIZE + 8)) {
		return -VHU_EBODYSIZE;
	}
	memcpy(&d->info.capacity, c, sizeof(d->info.capacity));
	d->info.seg_max = (f & F(BLK_F_SEG_MAX)) ? cfg32(c, 12) : 0;
	d->info.blk_size = (f & F(BLK_F_BLK_SIZE)) ? cfg32(c, 20) : 512;
	if (d->info.blk_size < 512 || (d->info.blk_size & (d->info.blk_size - 1)) != 0) {
		d->info.blk_size = 512;
	}
	if (f & F(BLK_F_DISCARD)) {
		d->info.max_discard_sectors = cfg32(c, 36);
	}
	if (f & F(BLK_F_WRITE_ZEROES)) {
		d->info.max_write_zeroes_sectors = cfg32(c, 48);
	}
	return 0;
}

static int
start_queue(struct vhu_blkdrv *d, unsigned int i, uint8_t *mem, unsigned int num)
{
	struct bq *q = &d->q[i];
	struct vhu_vring_addr a;
	uint32_t flags = VHU_VQD_F_INDIRECT;
	int rc;

	if (d->info.features & F(VHU_F_RING_EVENT_IDX)) {
		flags |= VHU_VQD_F_EVENT_IDX;
	}
	rc = vhu_vqd_create(num, mem, vhu_vqd_mem_size(num, INDIRECT),
			    (d->info.features & F(VHU_F_RING_INDIRECT_DESC)) ? INDIRECT : 0,
			    (d->info.features & F(VHU_F_RING_INDIRECT_DESC)) ? flags
									    : flags & ~VHU_VQD_F_INDIRECT,
			    &q->vq);
	if (rc < 0) {
		return rc;
	}
	q->blocks = (struct req_block *)(void *)(mem + vhu_vqd_mem_size(num, INDIRECT));
	q->slots = calloc(num, sizeof(*q->slots));
	q->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->slots == NULL || q->kick < 0 || q->call < 0) {
		return q->slots == NULL ? -ENOMEM : -errno;
	}
	vhu_vqd_disable_calls(q->vq);

	rc = ctl_vring_state(d, VHU_REQ_SET_VRING_NUM, i, num);
	if (rc == 0) {
		rc = ctl_vring_state(d, VHU_REQ_SET_VRING_BASE, i, 0);
	}
	if (rc == 0) {
		memset(&a, 0, sizeof(a));
		a.index = i;
		a.desc = vhu_vqd_desc_addr(q->vq);
		a.used = vhu_vqd_used_addr(q->vq);
		a.avail = vhu_vqd_avail_addr(q->vq);
		rc = (int)ctl(d, VHU_REQ_SET_VRING_ADDR, &a, sizeof(a), NULL, 0, NULL, 0);
	}
	if (rc == 0) {
		rc = ctl_vring_fd(d, VHU_REQ_SET_VRING_KICK, i, q->kick);
	}
	if (rc == 0) {
		rc = ctl_vring_fd(d, VHU_REQ_SET_VRING_CALL, i, q->call);
	}
	if (rc == 0) {
		rc = ctl_vring_state(d, VHU_REQ_SET_VRING_ENABLE, i, 1);
	}
	return rc;
}

int
vhu_blkdrv_connect(const char *path, const struct vhu_blkdrv_opts *opts,
		   struct vhu_blkdrv **out)
{
	struct vhu_blkdrv_opts o = { 0 };
	struct vhu_blkdrv *d;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	size_t per_queue;
	unsigned int i;
	int rc;

	*out = NULL;
	if (opts != NULL) {
		o = *opts;
	}
	if (o.num_queues == 0) {
		o.num_queues = 1;
	}
	if (o.queue_size == 0) {
		o.queue_size = DEFAULT_QUEUE_SIZE;
	}
	if (o.timeout_ms == 0) {
		o.timeout_ms = DEFAULT_TIMEOUT_MS;
	}
	if (o.num_queues > VHU_BLKDRV_MAX_QUEUES || !vhu_virtq_size_valid(o.queue_size) ||
	    o.timeout_ms < 0) {
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return -ENOMEM;
	}
	d->peer_pid = -1;
	d->timeout_ms = o.timeout_ms;
	d->no_event_idx = o.no_event_idx;
	for (i = 0; i < MAX_REGIONS; i++) {
		d->regions[i].fd = -1;
	}
	for (i = 0; i < VHU_BLKDRV_MAX_QUEUES; i++) {
		d->q[i].kick = d->q[i].call = -1;
	}
	rc = vhu_endpoint_connect_timeout(path, NULL, o.timeout_ms, &d->ep);
	if (rc < 0) {
		goto fail;
	}
	if (getsockopt(vhu_endpoint_fd(d->ep), SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
		d->peer_pid = (int)cred.pid;
	}
	rc = negotiate(d, o.num_queues);
	if (rc < 0) {
		goto fail;
	}
	if (o.no_mem_slots) {
		d->info.mem_slots = false;
		d->max_regions = TABLE_REGIONS;
	}
	rc = read_config(d);
	if (rc < 0) {
		goto fail;
	}
	/* The ring region: every queue's rings, indirect tables and request blocks. */
	per_queue = (queue_mem(o.queue_size) + 4095u) & ~(size_t)4095u;
	rc = region_new(&d->regions[0], per_queue * o.num_queues);
	if (rc < 0) {
		goto fail;
	}
	d->nregions = 1;
	rc = share_region(d, 0);
	if (rc < 0) {
		goto fail;
	}
	d->info.queues = (uint16_t)o.num_queues;
	d->info.queue_size = (uint16_t)o.queue_size;
	for (i = 0; i < o.num_queues; i++) {
		d->nq = i + 1;
		rc = start_queue(d, i, d->regions[0].addr + per_queue * i, o.queue_size);
		if (rc < 0) {
			goto fail;
		}
	}
	*out = d;
	return 0;
fail:
	d->gone = -VHU_EDISCONNECT;	/* no GET_VRING_BASE on a half-made driver */
	vhu_blkdrv_destroy(d);
	return rc;
}

void
vhu_blkdrv_destroy(struct vhu_blkdrv *d)
{
	unsigned int i;

	if (d == NULL) {
		return;
	}
	if (d->ep != NULL && __atomic_load_n(&d->gone, __ATOMIC_RELAXED) == 0) {
		/* Stop the queues so the back-end lets go of the rings; best effort. */
		vhu_endpoint_set_timeout(d->ep, d->timeout_ms < 1000 ? d->timeout_ms : 1000);
		for (i = 0; i < d->nq; i++) {
			struct vhu_vring_state s = { .index = i, .num = 0 };
			struct vhu_vring_state r;
			struct vhu_hdr h = vhu_hdr_request(VHU_REQ_GET_VRING_BASE, sizeof(s), false);

			if (vhu_endpoint_call(d->ep, &h, &s, sizeof(s), NULL, 0, &r, sizeof(r),
					      NULL) < 0) {
				break;
			}
		}
	}
	vhu_endpoint_destroy(d->ep);
	for (i = 0; i < VHU_BLKDRV_MAX_QUEUES; i++) {
		struct bq *q = &d->q[i];

		vhu_vqd_destroy(q->vq);
		free(q->slots);
		if (q->kick >= 0) {
			close(q->kick);
		}
		if (q->call >= 0) {
			close(q->call);
		}
	}
	for (i = 0; i < MAX_REGIONS; i++) {
		region_free(&d->regions[i]);
	}
	free(d);
}

const struct vhu_blkdrv_info *
vhu_blkdrv_info(const struct vhu_blkdrv *d)
{
	return &d->info;
}

int
vhu_blkdrv_peer_pid(const struct vhu_blkdrv *d)
{
	return d->peer_pid;
}

int
vhu_blkdrv_call_fd(const struct vhu_blkdrv *d, unsigned int q)
{
	return q < d->nq ? d->q[q].call : -EINVAL;
}

unsigned int
vhu_blkdrv_inflight(const struct vhu_blkdrv *d, unsigned int q)
{
	return q < d->nq ? vhu_vqd_inflight(d->q[q].vq) : 0;
}

/* Data path ------------------------------------------------------------ */

static int
submit(struct vhu_blkdrv *d, unsigned int qi, uint32_t type, uint64_t sector,
       const struct iovec *data, unsigned int ndata, bool data_in, const struct dwz_range *range,
       void *cookie)
{
	struct iovec out[2 + VHU_BLKDRV_MAX_SEGS], in[1 + VHU_BLKDRV_MAX_SEGS];
	unsigned int nout = 0, nin = 0, i;
	struct req_block *b;
	struct bq *q;
	uint16_t head;
	int rc, gone;

	if (qi >= d->nq) {
		return -EINVAL;
	}
	q = &d->q[qi];
	gone = __atomic_load_n(&d->gone, __ATOMIC_RELAXED);
	if (gone) {
		return gone;
	}
	if (q->dead) {
		return q->dead;
	}
	if (ndata > VHU_BLKDRV_MAX_SEGS) {
		return -E2BIG;
	}
	for (i = 0; i < ndata; i++) {
		if (data[i].iov_len == 0 || !in_region(d, data[i].iov_base, data[i].iov_len)) {
			return -EFAULT;
		}
	}
	/* The head this request will get: its block is where the header goes. */
	rc = vhu_vqd_next_head(q->vq);
	if (rc < 0) {
		return rc;
	}
	head = (uint16_t)rc;
	b = &q->blocks[head];
	out[nout].iov_base = &b->hdr;
	out[nout++].iov_len = sizeof(b->hdr);
	if (range != NULL) {
		out[nout].iov_base = &b->range;
		out[nout++].iov_len = sizeof(b->range);
	}
	for (i = 0; i < ndata; i++) {
		if (data_in) {
			in[nin++] = data[i];
		} else {
			out[nout++] = data[i];
		}
	}
	in[nin].iov_base = &b->status;
	in[nin++].iov_len = 1;
	b->hdr.type = type;
	b->hdr.ioprio = 0;
	b->hdr.sector = sector;
	if (range != NULL) {
		b->range = *range;
	}
	b->status = ST_UNSET;
	rc = vhu_vqd_add(q->vq, out, nout, in, nin);
	if (rc < 0) {
		return rc;
	}
	q->slots[head].cookie = cookie;
	return 0;
}

static size_t
iov_total(const struct iovec *iov, unsigned int n)
{
	size_t t = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		t += iov[i].iov_len;
	}
	return t;
}

int
vhu_blkdrv_readv(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
		 const struct iovec *iov, unsigned int iovcnt, void *cookie)
{
	if (iovcnt == 0 || iov_total(iov, iovcnt) % 512 != 0) {
		return -EINVAL;
	}
	return submit(d, q, VHU_BLKDRV_READ, sector, iov, iovcnt, true, NULL, cookie);
}

int
vhu_blkdrv_writev(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
		  const struct iovec *iov, unsigned int iovcnt, void *cookie)
{
	if (iovcnt == 0 || iov_total(iov, iovcnt) % 512 != 0) {
		return -EINVAL;
	}
	return submit(d, q, VHU_BLKDRV_WRITE, sector, iov, iovcnt, false, NULL, cookie);
}

int
vhu_blkdrv_read(struct vhu_blkdrv *d, unsigned int q, uint64_t sector, void *buf, size_t len,
		void *cookie)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };

	return vhu_blkdrv_readv(d, q, sector, &v, 1, cookie);
}

int
vhu_blkdrv_write(struct vhu_blkdrv *d, unsigned int q, uint64_t sector, const void *buf,
		 size_t len, void *cookie)
{
	struct iovec v = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };

	return vhu_blkdrv_writev(d, q, sector, &v, 1, cookie);
}

int
vhu_blkdrv_flush(struct vhu_blkdrv *d, unsigned int q, void *cookie)
{
	if (!(d->info.features & F(BLK_F_FLUSH))) {
		return -ENOTSUP;
	}
	return submit(d, q, VHU_BLKDRV_FLUSH, 0, NULL, 0, false, NULL, cookie);
}

int
vhu_blkdrv_discard(struct vhu_blkdrv *d, unsigned int q, uint64_t sector, uint32_t nsectors,
		   void *cookie)
{
	struct dwz_range r = { .sector = sector, .num_sectors = nsectors, .flags = 0 };

	if (!(d->info.features & F(BLK_F_DISCARD))) {
		return -ENOTSUP;
	}
	return submit(d, q, VHU_BLKDRV_DISCARD, 0, NULL, 0, false, &r, cookie);
}

int
vhu_blkdrv_write_zeroes(struct vhu_blkdrv *d, unsigned int q, uint64_t sector,
			uint32_t nsectors, bool may_unmap, void *cookie)
{
	struct dwz_range r = { .sector = sector, .num_sectors = nsectors,
			       .flags = may_unmap ? 1u : 0u };

	if (!(d->info.features & F(BLK_F_WRITE_ZEROES))) {
		return -ENOTSUP;
	}
	return submit(d, q, VHU_BLKDRV_WRITE_ZEROES, 0, NULL, 0, false, &r, cookie);
}

int
vhu_blkdrv_get_id(struct vhu_blkdrv *d, unsigned int q, void *buf, void *cookie)
{
	struct iovec v = { .iov_base = buf, .iov_len = VHU_BLKDRV_ID_LEN };

	return submit(d, q, VHU_BLKDRV_GET_ID, 0, &v, 1, true, NULL, cookie);
}

int
vhu_blkdrv_kick(struct vhu_blkdrv *d, unsigned int qi)
{
	uint64_t one = 1;

	if (qi >= d->nq) {
		return -EINVAL;
	}
	if (vhu_vqd_publish(d->q[qi].vq)) {
		if (write(d->q[qi].kick, &one, sizeof(one)) < 0 && errno != EAGAIN) {
			return -errno;
		}
		d->q[qi].kicks++;
	}
	return 0;
}

/* Has the back-end closed the socket? Nothing is ever sent to us unasked. */
static bool
peer_gone(struct vhu_blkdrv *d)
{
	struct pollfd p = { .fd = vhu_endpoint_fd(d->ep), .events = POLLIN | POLLRDHUP };

	if (__atomic_load_n(&d->gone, __ATOMIC_RELAXED)) {
		return true;
	}
	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) {
		__atomic_store_n(&d->gone, -VHU_EDISCONNECT, __ATOMIC_RELAXED);
		return true;
	}
	return false;
}

static int
status_ret(uint8_t st)
{
	switch (st) {
	case ST_OK:
		return 0;
	case ST_IOERR:
		return -EIO;
	case ST_UNSUPP:
		return -ENOTSUP;
	default:
		return -VHU_EBLKSTATUS;
	}
}

/* Hand out the requests of a dead queue, max at a time, each once. */
static unsigned int
fail_inflight(struct bq *q, struct vhu_blkdrv_completion *c, unsigned int max)
{
	unsigned int n = 0, num = vhu_vqd_num(q->vq);

	while (n < max && q->fail_cursor < num) {
		unsigned int h = q->fail_cursor++;

		if (vhu_vqd_head_inflight(q->vq, h)) {
			c[n].cookie = q->slots[h].cookie;
			c[n].ret = q->dead;
			n++;
		}
	}
	return n;
}

int
vhu_blkdrv_poll(struct vhu_blkdrv *d, unsigned int qi, struct vhu_blkdrv_completion *c,
		unsigned int max)
{
	struct vhu_vqd_used u;
	struct bq *q;
	unsigned int n = 0;
	int rc;

	if (qi >= d->nq) {
		return -EINVAL;
	}
	q = &d->q[qi];
	if (q->dead) {
		return (int)fail_inflight(q, c, max);
	}
	while (n < max) {
		rc = vhu_vqd_next_used(q->vq, &u);
		if (rc == 0) {
			break;
		}
		if (rc < 0) {
			q->dead = rc;
			return (int)(n + fail_inflight(q, c + n, max - n));
		}
		c[n].cookie = q->slots[u.head].cookie;
		c[n].ret = u.err != 0 ? u.err
				      : status_ret(__atomic_load_n(&q->blocks[u.head].status,
								   __ATOMIC_RELAXED));
		n++;
	}
	if (n > 0) {
		q->empty_polls = 0;
	} else if (vhu_vqd_inflight(q->vq) > 0 && ++q->empty_polls >= GONE_CHECK_POLLS) {
		q->empty_polls = 0;
		if (peer_gone(d)) {
			q->dead = -VHU_EDISCONNECT;
			return (int)fail_inflight(q, c, max);
		}
	}
	return (int)n;
}

uint64_t
vhu_blkdrv_kicks(const struct vhu_blkdrv *d, unsigned int qi)
{
	return qi < d->nq ? d->q[qi].kicks : 0;
}

int
vhu_blkdrv_arm_call(struct vhu_blkdrv *d, unsigned int qi)
{
	struct bq *q;

	if (qi >= d->nq) {
		return -EINVAL;
	}
	q = &d->q[qi];
	if (q->dead) {
		return 1;	/* what is in flight is handed out by the next poll */
	}
	return vhu_vqd_enable_calls(q->vq) ? 1 : 0;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
vhu_blkdrv_wait(struct vhu_blkdrv *d, unsigned int qi, struct vhu_blkdrv_completion *c,
		unsigned int min, unsigned int max, int timeout_ms)
{
	int64_t deadline;
	unsigned int n = 0;
	struct bq *q;
	int rc;

	if (qi >= d->nq || min > max) {
		return -EINVAL;
	}
	q = &d->q[qi];
	deadline = now_ms() + (timeout_ms < 0 ? d->timeout_ms : timeout_ms);
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = q->call, .events = POLLIN },
			{ .fd = vhu_endpoint_fd(d->ep), .events = POLLIN | POLLRDHUP },
		};
		int64_t left;
		uint64_t cnt;

		rc = vhu_blkdrv_poll(d, qi, c + n, max - n);
		if (rc < 0) {
			return rc;
		}
		n += (unsigned int)rc;
		if (n >= min || n == max) {
			break;
		}
		if (q->dead) {
			if (rc == 0) {
				break;	/* every request of the dead queue was handed out */
			}
			continue;
		}
		if (vhu_vqd_inflight(q->vq) == 0) {
			break;
		}
		if (vhu_vqd_enable_calls(q->vq)) {
			continue;
		}
		left = deadline - now_ms();
		if (left <= 0) {
			vhu_vqd_disable_calls(q->vq);
			return n > 0 ? (int)n : -ETIMEDOUT;
		}
		rc = poll(p, 2, (int)(left > 1000000 ? 1000000 : left));
		vhu_vqd_disable_calls(q->vq);
		if (rc < 0 && errno != EINTR) {
			return -errno;
		}
		if (rc > 0 && (p[0].revents & POLLIN)) {
			if (read(q->call, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN) {
				return -errno;
			}
		}
		if (rc > 0 && p[1].revents != 0) {
			__atomic_store_n(&d->gone, -VHU_EDISCONNECT, __ATOMIC_RELAXED);
			/* Harvest what the back-end published before it went, then fail the rest. */
			rc = vhu_blkdrv_poll(d, qi, c + n, max - n);
			if (rc > 0) {
				n += (unsigned int)rc;
			}
			if (!q->dead) {
				q->dead = -VHU_EDISCONNECT;
			}
		}
	}
	return (int)n;
}
