/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user-blk driver (<vhu/blkdrv.h>) against an in-process fake
 * back-end: a thread answers the control messages on the socket, and the
 * test plays the device on the shared rings itself (driver and device are
 * one process, so the driver's virtual addresses are the device's too).
 * Round trips of every request type, a full queue, and the hostile
 * device: a used id never issued, a used length above the buffers, a used
 * index that jumps, a status byte out of range, a back-end that vanishes
 * mid-request (waiting and polling), a back-end that never answers.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <liburing.h>

#include <vhu/blkdrv.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#define F(n)	(1ull << (n))
#define PF(n)	(1ull << VHU_PROTOCOL_F_##n)
#define NQ	2u
#define CAP	(1u << 20)	/* the fake disk, bytes */

struct fq {
	struct vhu_virtq_desc *desc;
	struct vhu_virtq_avail *avail;
	struct vhu_virtq_used *used;
	unsigned int num;
	uint16_t last_avail;
	int kick, call;
};

struct fake {
	char path[108];
	int lfd;
	pthread_t thr;
	uint64_t features;
	uint64_t pf;
	struct fq q[NQ];
	unsigned int nregions;
	unsigned int table_msgs;	/* SET_MEM_TABLE seen */
	unsigned int add_regs;		/* ADD_MEM_REG seen */
	unsigned int acks;
	int conn;			/* the accepted socket, for vanishing */
	uint8_t disk[CAP];
};

static struct fake g_fake;

static void *
serve(void *arg)
{
	struct fake *f = arg;
	struct vhu_endpoint *ep;
	union {
		uint64_t align;
		uint8_t b[4096];
	} buf;
	int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0 || vhu_endpoint_from_fd(fd, NULL, &ep) < 0) {
		return NULL;
	}
	f->conn = fd;
	for (;;) {
		struct vhu_hdr h, r;
		struct vhu_fds fds;
		uint64_t v = 0;
		ssize_t n = vhu_endpoint_recv_body_into_buf(ep, &h, buf.b, sizeof(buf.b), &fds);
		bool reply_u64 = false;
		int taken = -1;

		if (n < 0) {
			break;
		}
		switch (h.request) {
		case VHU_REQ_GET_FEATURES:
			v = f->features;
			reply_u64 = true;
			break;
		case VHU_REQ_GET_PROTOCOL_FEATURES:
			v = f->pf;
			reply_u64 = true;
			break;
		case VHU_REQ_GET_QUEUE_NUM:
			v = NQ;
			reply_u64 = true;
			break;
		case VHU_REQ_GET_MAX_MEM_SLOTS:
			v = 16;
			reply_u64 = true;
			break;
		case VHU_REQ_GET_CONFIG: {
			uint64_t cap = CAP / 512;
			uint32_t bs = 4096;
			uint16_t nq = NQ;

			memset(buf.b + VHU_CONFIG_HDR_SIZE, 0, (size_t)n - VHU_CONFIG_HDR_SIZE);
			memcpy(buf.b + VHU_CONFIG_HDR_SIZE, &cap, 8);
			memcpy(buf.b + VHU_CONFIG_HDR_SIZE + 20, &bs, 4);
			memcpy(buf.b + VHU_CONFIG_HDR_SIZE + 34, &nq, 2);
			r = vhu_hdr_reply(h.request, (uint32_t)n);
			vhu_endpoint_send_message(ep, &r, buf.b, (size_t)n, NULL, 0);
			break;
		}
		case VHU_REQ_GET_VRING_BASE: {
			struct vhu_vring_state s;

			memcpy(&s, buf.b, sizeof(s));
			s.num = s.index < NQ ? f->q[s.index].last_avail : 0;
			r = vhu_hdr_reply(h.request, sizeof(s));
			vhu_endpoint_send_message(ep, &r, &s, sizeof(s), NULL, 0);
			break;
		}
		case VHU_REQ_SET_MEM_TABLE:
			f->table_msgs++;
			f->nregions = ((struct vhu_mem_table *)(void *)buf.b)->nregions;
			break;
		case VHU_REQ_ADD_MEM_REG:
			f->add_regs++;
			f->nregions++;
			break;
		case VHU_REQ_SET_VRING_NUM: {
			struct vhu_vring_state s;

			memcpy(&s, buf.b, sizeof(s));
			if (s.index < NQ) {
				f->q[s.index].num = s.num;
			}
			break;
		}
		case VHU_REQ_SET_VRING_ADDR: {
			struct vhu_vring_addr a;

			memcpy(&a, buf.b, sizeof(a));
			if (a.index < NQ) {
				f->q[a.index].desc = (void *)(uintptr_t)a.desc;
				f->q[a.index].avail = (void *)(uintptr_t)a.avail;
				f->q[a.index].used = (void *)(uintptr_t)a.used;
			}
			break;
		}
		case VHU_REQ_SET_VRING_KICK:
		case VHU_REQ_SET_VRING_CALL:
			memcpy(&v, buf.b, 8);
			if ((v & 0xff) < NQ) {
				taken = vhu_fds_take(&fds, 0);
				if (h.request == VHU_REQ_SET_VRING_KICK) {
					f->q[v & 0xff].kick = taken;
				} else {
					f->q[v & 0xff].call = taken;
				}
			}
			v = 0;
			break;
		default:
			break;
		}
		vhu_fds_close(&fds);
		if (reply_u64) {
			r = vhu_hdr_reply(h.request, 8);
			vhu_endpoint_send_message(ep, &r, &v, 8, NULL, 0);
		} else if (h.flags & VHU_FLAG_NEED_REPLY) {
			v = 0;
			f->acks++;
			r = vhu_hdr_reply(h.request, 8);
			vhu_endpoint_send_message(ep, &r, &v, 8, NULL, 0);
		}
	}
	vhu_endpoint_destroy(ep);
	return NULL;
}

static void
fake_start(struct fake *f, uint64_t features, uint64_t pf)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(f, 0, sizeof(*f));
	f->features = features;
	f->pf = pf;
	f->conn = -1;
	for (unsigned int i = 0; i < NQ; i++) {
		f->q[i].kick = f->q[i].call = -1;
	}
	snprintf(f->path, sizeof(f->path), "%s", t_path("blk.sock"));
	strcpy(sa.sun_path, f->path);
	unlink(f->path);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(f->lfd, 0);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f->lfd, 4), 0);
	cr_assert_eq(pthread_create(&f->thr, NULL, serve, f), 0);
}

static void
fake_stop(struct fake *f)
{
	pthread_join(f->thr, NULL);
	close(f->lfd);
	for (unsigned int i = 0; i < NQ; i++) {
		if (f->q[i].kick >= 0) {
			close(f->q[i].kick);
		}
		if (f->q[i].call >= 0) {
			close(f->q[i].call);
		}
	}
}

/* The device side ------------------------------------------------------ */

struct dreq {
	uint16_t head;
	uint32_t type;
	uint64_t sector;
	struct iovec data[40];
	unsigned int ndata;
	uint8_t *status;
	uint32_t wlen;
	bool found;
};

/* Pop the next available request of queue qi, walking its chain (or indirect table). */
static bool
dev_pop(struct fake *f, unsigned int qi, struct dreq *r)
{
	struct fq *q = &f->q[qi];
	uint16_t idx = __atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE);
	struct vhu_virtq_desc *tab = q->desc, *d;
	unsigned int i = 0, n = 0, cap = q->num;

	memset(r, 0, sizeof(*r));
	if (idx == q->last_avail) {
		return false;
	}
	r->head = q->avail->ring[q->last_avail++ & (q->num - 1)];
	d = &tab[r->head];
	if (d->flags & VHU_VIRTQ_DESC_F_INDIRECT) {
		tab = (void *)(uintptr_t)d->addr;
		cap = d->len / 16;
		d = &tab[0];
	}
	for (;;) {
		cr_assert_lt(n++, cap, "chain loops");
		if (i == 0) {
			const uint8_t *h = (void *)(uintptr_t)d->addr;

			cr_assert_eq(d->len, 16);
			memcpy(&r->type, h, 4);
			memcpy(&r->sector, h + 8, 8);
		} else if (!(d->flags & VHU_VIRTQ_DESC_F_NEXT)) {
			cr_assert(d->flags & VHU_VIRTQ_DESC_F_WRITE);
			cr_assert_eq(d->len, 1);
			r->status = (void *)(uintptr_t)d->addr;
			r->wlen++;
			break;
		} else {
			r->data[r->ndata].iov_base = (void *)(uintptr_t)d->addr;
			r->data[r->ndata++].iov_len = d->len;
			if (d->flags & VHU_VIRTQ_DESC_F_WRITE) {
				r->wlen += d->len;
			}
		}
		i++;
		d = &tab[d->next];
	}
	r->found = true;
	return true;
}

static void
dev_push(struct fake *f, unsigned int qi, uint32_t id, uint32_t len)
{
	struct fq *q = &f->q[qi];
	uint16_t u = q->used->idx;

	q->used->ring[u & (q->num - 1)].id = id;
	q->used->ring[u & (q->num - 1)].len = len;
	__atomic_store_n(&q->used->idx, (uint16_t)(u + 1), __ATOMIC_RELEASE);
}

static void
dev_call(struct fake *f, unsigned int qi)
{
	uint64_t one = 1;

	cr_assert_eq(write(f->q[qi].call, &one, 8), 8);
}

/* Serve one request as a disk would: data to/from f->disk, status OK. */
static void
dev_serve(struct fake *f, unsigned int qi, struct dreq *r)
{
	uint64_t off = r->sector * 512;
	uint32_t len = 1;

	for (unsigned int i = 0; i < r->ndata; i++) {
		size_t l = r->data[i].iov_len;

		switch (r->type) {
		case VHU_BLKDRV_READ:
			memcpy(r->data[i].iov_base, f->disk + off, l);
			len += (uint32_t)l;
			break;
		case VHU_BLKDRV_WRITE:
			memcpy(f->disk + off, r->data[i].iov_base, l);
			break;
		case VHU_BLKDRV_GET_ID:
			memcpy(r->data[i].iov_base, "fake-blk-serial", 16);
			len += (uint32_t)l;
			break;
		case VHU_BLKDRV_WRITE_ZEROES: {
			uint64_t sec;
			uint32_t ns;

			memcpy(&sec, r->data[i].iov_base, 8);
			memcpy(&ns, (uint8_t *)r->data[i].iov_base + 8, 4);
			memset(f->disk + sec * 512, 0, (size_t)ns * 512);
			break;
		}
		default:
			break;
		}
		off += l;
	}
	*r->status = 0;
	dev_push(f, qi, r->head, len);
}

/* Fixture -------------------------------------------------------------- */

#define BASE_F	(F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES) | F(9) | F(13) | F(14) | F(6))
#define BASE_PF	(PF(MQ) | PF(REPLY_ACK) | PF(CONFIG) | PF(CONFIGURE_MEM_SLOTS))

TestSuite(blkdrv, .init = t_setup, .fini = t_teardown, .timeout = 60);

static struct vhu_blkdrv *
start(uint64_t features, uint64_t pf, unsigned int queues, unsigned int qsize)
{
	struct vhu_blkdrv_opts o = { .num_queues = queues, .queue_size = qsize,
				     .timeout_ms = 2000 };
	struct vhu_blkdrv *d;
	int rc;

	fake_start(&g_fake, features, pf);
	rc = vhu_blkdrv_connect(g_fake.path, &o, &d);
	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	return d;
}

static void
finish(struct vhu_blkdrv *d)
{
	vhu_blkdrv_destroy(d);
	fake_stop(&g_fake);
}

static int
wait1(struct vhu_blkdrv *d, unsigned int q, void **cookie)
{
	struct vhu_blkdrv_completion c;
	int n = vhu_blkdrv_wait(d, q, &c, 1, 1, 2000);

	cr_assert_eq(n, 1, "wait: %s", n < 0 ? vhu_strerror(n) : "none");
	if (cookie != NULL) {
		*cookie = c.cookie;
	}
	return c.ret;
}

Test(blkdrv, handshake_config_and_memory)
{
	struct vhu_blkdrv *d = start(BASE_F | F(VHU_F_RING_INDIRECT_DESC), BASE_PF, 2, 64);
	const struct vhu_blkdrv_info *in = vhu_blkdrv_info(d);
	void *m;

	cr_assert_eq(in->capacity, CAP / 512);
	cr_assert_eq(in->blk_size, 4096);
	cr_assert_eq(in->num_queues, NQ);
	cr_assert_eq(in->queues, 2);
	cr_assert(in->mem_slots);
	cr_assert_eq(in->protocol_features, BASE_PF);
	cr_assert_eq(vhu_blkdrv_peer_pid(d), getpid());
	cr_assert_eq(vhu_blkdrv_alloc(d, 4096, &m), 0);
	cr_assert_eq(g_fake.add_regs, 2, "ring region then the application's, by ADD_MEM_REG");
	cr_assert_eq(g_fake.table_msgs, 0);
	/* Every SET_* asked for an ack (REPLY_ACK): owner, features, 2 regions, 6 per queue. */
	cr_assert_eq(g_fake.acks, 1 + 1 + 2 + 2 * 6);
	cr_assert_eq(g_fake.q[1].num, 64);
	finish(d);
}

Test(blkdrv, set_mem_table_without_mem_slots)
{
	struct vhu_blkdrv *d = start(BASE_F, PF(REPLY_ACK) | PF(CONFIG), 1, 16);
	void *a, *b;

	cr_assert_not(vhu_blkdrv_info(d)->mem_slots);
	cr_assert_eq(vhu_blkdrv_alloc(d, 8192, &a), 0);
	cr_assert_eq(vhu_blkdrv_alloc(d, 100, &b), 0);
	cr_assert_eq(g_fake.table_msgs, 3);
	cr_assert_eq(g_fake.nregions, 3, "each SET_MEM_TABLE carries every region");
	cr_assert_eq(g_fake.add_regs, 0);
	finish(d);
}

static void
round_trips(uint64_t features)
{
	struct vhu_blkdrv *d = start(features, BASE_PF, 2, 32);
	struct dreq r;
	uint8_t *m;
	void *ck;
	struct iovec v[3];

	cr_assert_eq(vhu_blkdrv_alloc(d, 65536, (void **)&m), 0);
	for (unsigned int i = 0; i < 8192; i++) {
		m[i] = (uint8_t)(i * 7 + 1);
	}
	/* A write of three iovecs on queue 1, then a read back into another buffer. */
	v[0] = (struct iovec){ m, 512 };
	v[1] = (struct iovec){ m + 512, 1024 };
	v[2] = (struct iovec){ m + 1536, 2560 };
	cr_assert_eq(vhu_blkdrv_writev(d, 1, 8, v, 3, (void *)1), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 1), 0);
	cr_assert(dev_pop(&g_fake, 1, &r));
	cr_assert_eq(r.type, VHU_BLKDRV_WRITE);
	cr_assert_eq(r.sector, 8);
	cr_assert_eq(r.ndata, 3);
	dev_serve(&g_fake, 1, &r);
	dev_call(&g_fake, 1);
	cr_assert_eq(wait1(d, 1, &ck), 0);
	cr_assert_eq(ck, (void *)1);
	cr_assert_eq(memcmp(g_fake.disk + 4096, m, 4096), 0);

	cr_assert_eq(vhu_blkdrv_read(d, 1, 8, m + 8192, 4096, (void *)2), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 1), 0);
	cr_assert(dev_pop(&g_fake, 1, &r));
	dev_serve(&g_fake, 1, &r);
	cr_assert_eq(wait1(d, 1, &ck), 0, "completion found by polling, no call needed");
	cr_assert_eq(memcmp(m + 8192, m, 4096), 0);

	/* flush, discard, write-zeroes, get-id on queue 0. */
	cr_assert_eq(vhu_blkdrv_flush(d, 0, (void *)3), 0);
	cr_assert_eq(vhu_blkdrv_discard(d, 0, 16, 8, (void *)4), 0);
	cr_assert_eq(vhu_blkdrv_write_zeroes(d, 0, 8, 1, false, (void *)5), 0);
	cr_assert_eq(vhu_blkdrv_get_id(d, 0, m + 16384, (void *)6), 0);
	cr_assert_eq(vhu_blkdrv_inflight(d, 0), 4);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	for (uint32_t want = VHU_BLKDRV_FLUSH, i = 0; i < 4; i++) {
		const uint32_t types[] = { VHU_BLKDRV_FLUSH, VHU_BLKDRV_DISCARD,
					   VHU_BLKDRV_WRITE_ZEROES, VHU_BLKDRV_GET_ID };

		(void)want;
		cr_assert(dev_pop(&g_fake, 0, &r));
		cr_assert_eq(r.type, types[i]);
		dev_serve(&g_fake, 0, &r);
	}
	dev_call(&g_fake, 0);
	for (uintptr_t i = 3; i <= 6; i++) {
		cr_assert_eq(wait1(d, 0, &ck), 0);
		cr_assert_eq(ck, (void *)i);
	}
	cr_assert_str_eq((char *)m + 16384, "fake-blk-serial");
	cr_assert_eq(g_fake.disk[4096], 0, "write-zeroes reached the disk");
	cr_assert_eq(g_fake.disk[4096 + 512], m[512]);
	finish(d);
}

Test(blkdrv, round_trips_indirect)
{
	round_trips(BASE_F | F(VHU_F_RING_INDIRECT_DESC));
}

Test(blkdrv, round_trips_direct_chains_event_idx)
{
	round_trips(BASE_F | F(VHU_F_RING_EVENT_IDX));
}

Test(blkdrv, full_queue_is_eagain_and_bad_buffers_refused)
{
	struct vhu_blkdrv *d = start(BASE_F | F(VHU_F_RING_INDIRECT_DESC), BASE_PF, 1, 8);
	uint8_t *m, stack[512];
	struct dreq r;
	unsigned int i;

	cr_assert_eq(vhu_blkdrv_alloc(d, 65536, (void **)&m), 0);
	for (i = 0; i < 8; i++) {
		cr_assert_eq(vhu_blkdrv_read(d, 0, i, m + 512 * i, 512, NULL), 0);
	}
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), -EAGAIN);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, stack, 512, NULL), -EFAULT);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m + 65536 - 256, 512, NULL), -EFAULT);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 100, NULL), -EINVAL);
	cr_assert_eq(vhu_blkdrv_read(d, 5, 0, m, 512, NULL), -EINVAL);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert(dev_pop(&g_fake, 0, &r));
	dev_serve(&g_fake, 0, &r);
	cr_assert_eq(wait1(d, 0, NULL), 0);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), 0, "room again");
	finish(d);
}

Test(blkdrv, no_flush_offered_is_enotsup)
{
	struct vhu_blkdrv *d = start(F(VHU_F_VERSION_1) | F(VHU_F_PROTOCOL_FEATURES), BASE_PF,
				     1, 8);

	cr_assert_eq(vhu_blkdrv_flush(d, 0, NULL), -ENOTSUP);
	cr_assert_eq(vhu_blkdrv_discard(d, 0, 0, 1, NULL), -ENOTSUP);
	cr_assert_eq(vhu_blkdrv_write_zeroes(d, 0, 0, 1, true, NULL), -ENOTSUP);
	finish(d);
}

/* Hostile devices ------------------------------------------------------- */

/* Submit two reads on queue 0 (cookies 1 and 2) and pop both on the device side. */
static struct vhu_blkdrv *
two_reads(struct dreq *r1, struct dreq *r2, uint8_t **mem)
{
	struct vhu_blkdrv *d = start(BASE_F | F(VHU_F_RING_INDIRECT_DESC), BASE_PF, 1, 8);

	cr_assert_eq(vhu_blkdrv_alloc(d, 8192, (void **)mem), 0);
	memset(*mem, 0xaa, 8192);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, *mem, 512, (void *)1), 0);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 1, *mem + 512, 512, (void *)2), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert(dev_pop(&g_fake, 0, r1));
	cr_assert(dev_pop(&g_fake, 0, r2));
	return d;
}

/* Both requests complete with err (order free), then the queue refuses work. */
static void
expect_queue_broken(struct vhu_blkdrv *d, uint8_t *m, int err)
{
	struct vhu_blkdrv_completion c[4];
	int n = vhu_blkdrv_wait(d, 0, c, 2, 4, 2000);

	cr_assert_eq(n, 2, "got %d", n);
	cr_assert_eq(c[0].ret, err, "%s", vhu_strerror(c[0].ret));
	cr_assert_eq(c[1].ret, err);
	cr_assert_eq((uintptr_t)c[0].cookie + (uintptr_t)c[1].cookie, 3);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), err);
	cr_assert_eq(vhu_blkdrv_poll(d, 0, c, 4), 0, "nothing handed out twice");
}

Test(blkdrv, hostile_used_id_never_issued)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);

	dev_push(&g_fake, 0, 5, 1);	/* in range, but never issued */
	expect_queue_broken(d, m, -VHU_EUSEDID);
	finish(d);
}

Test(blkdrv, hostile_used_id_out_of_range)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);

	dev_push(&g_fake, 0, 0xffffffffu, 1);
	expect_queue_broken(d, m, -VHU_EUSEDID);
	finish(d);
}

Test(blkdrv, hostile_used_id_twice)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);
	struct vhu_blkdrv_completion c[4];

	*r1.status = 0;
	dev_push(&g_fake, 0, r1.head, 513);
	dev_push(&g_fake, 0, r1.head, 513);	/* completed already */
	cr_assert_eq(vhu_blkdrv_wait(d, 0, c, 2, 4, 2000), 2);
	cr_assert_eq(c[0].ret, 0);
	cr_assert_eq(c[0].cookie, (void *)1);
	cr_assert_eq(c[1].ret, -VHU_EUSEDID);
	cr_assert_eq(c[1].cookie, (void *)2);
	finish(d);
}

Test(blkdrv, hostile_used_len_above_buffers)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);
	struct vhu_blkdrv_completion c[4];

	*r1.status = 0;
	*r2.status = 0;
	dev_push(&g_fake, 0, r1.head, 514);	/* 512 bytes + status = 513 at most */
	dev_push(&g_fake, 0, r2.head, 513);
	cr_assert_eq(vhu_blkdrv_wait(d, 0, c, 2, 4, 2000), 2);
	cr_assert_eq(c[0].ret, -VHU_EUSEDLEN);
	cr_assert_eq(c[1].ret, 0, "only the lying request fails; the queue goes on");
	cr_assert_eq(m[1024], 0xaa, "nothing written past the buffers");
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), 0);
	finish(d);
}

Test(blkdrv, hostile_used_idx_jumps)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);

	__atomic_store_n(&g_fake.q[0].used->idx, (uint16_t)9, __ATOMIC_RELEASE);	/* size 8 */
	expect_queue_broken(d, m, -VHU_EUSEDIDX);
	finish(d);
}

Test(blkdrv, hostile_status_out_of_range)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);
	struct vhu_blkdrv_completion c[4];

	*r1.status = 7;
	dev_push(&g_fake, 0, r1.head, 513);
	/* r2: status never written (the driver preset it to an invalid value). */
	dev_push(&g_fake, 0, r2.head, 0);
	cr_assert_eq(vhu_blkdrv_wait(d, 0, c, 2, 4, 2000), 2);
	cr_assert_eq(c[0].ret, -VHU_EBLKSTATUS);
	cr_assert_eq(c[1].ret, -VHU_EBLKSTATUS);
	/* IOERR and UNSUPP map to errnos. */
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), 0);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert(dev_pop(&g_fake, 0, &r1));
	cr_assert(dev_pop(&g_fake, 0, &r2));
	*r1.status = 1;
	*r2.status = 2;
	dev_push(&g_fake, 0, r1.head, 1);
	dev_push(&g_fake, 0, r2.head, 1);
	cr_assert_eq(vhu_blkdrv_wait(d, 0, c, 2, 4, 2000), 2);
	cr_assert_eq(c[0].ret, -EIO);
	cr_assert_eq(c[1].ret, -ENOTSUP);
	finish(d);
}

Test(blkdrv, hostile_backend_vanishes_while_waiting)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);
	struct vhu_blkdrv_completion c[4];
	int n;

	*r1.status = 0;
	dev_push(&g_fake, 0, r1.head, 513);	/* one completed before it went */
	shutdown(g_fake.conn, SHUT_RDWR);
	n = vhu_blkdrv_wait(d, 0, c, 2, 4, 10000);
	cr_assert_eq(n, 2);
	cr_assert_eq(c[0].ret, 0);
	cr_assert_eq(c[1].ret, -VHU_EDISCONNECT);
	cr_assert_eq(c[1].cookie, (void *)2);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 512, NULL), -VHU_EDISCONNECT);
	finish(d);
}

Test(blkdrv, hostile_backend_vanishes_while_polling)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);
	struct vhu_blkdrv_completion c[4];
	unsigned int got = 0, spins;

	shutdown(g_fake.conn, SHUT_RDWR);
	for (spins = 0; spins < 1000000 && got < 2; spins++) {
		int n = vhu_blkdrv_poll(d, 0, c + got, 4 - got);

		cr_assert_geq(n, 0);
		got += (unsigned int)n;
	}
	cr_assert_eq(got, 2, "a polling driver notices within a bounded number of polls");
	cr_assert_eq(c[0].ret, -VHU_EDISCONNECT);
	cr_assert_eq(c[1].ret, -VHU_EDISCONNECT);
	finish(d);
}

Test(blkdrv, silent_backend_wait_has_a_deadline)
{
	struct dreq r1, r2;
	uint8_t *m;
	struct vhu_blkdrv *d = two_reads(&r1, &r2, &m);
	struct vhu_blkdrv_completion c[2];

	cr_assert_eq(vhu_blkdrv_wait(d, 0, c, 1, 2, 100), -ETIMEDOUT);
	cr_assert_eq(vhu_blkdrv_inflight(d, 0), 2);
	finish(d);
}

Test(blkdrv, connect_deadline_and_refusals)
{
	struct vhu_blkdrv_opts o = { .num_queues = 3, .timeout_ms = 500 };
	struct vhu_blkdrv *d;

	/* More queues than the back-end has. */
	fake_start(&g_fake, BASE_F, BASE_PF);
	cr_assert_eq(vhu_blkdrv_connect(g_fake.path, &o, &d), -EINVAL);
	fake_stop(&g_fake);
	/* No CONFIG protocol feature. */
	o.num_queues = 1;
	fake_start(&g_fake, BASE_F, PF(REPLY_ACK));
	cr_assert_eq(vhu_blkdrv_connect(g_fake.path, &o, &d), -ENOTSUP);
	fake_stop(&g_fake);
	/* Nobody listening. */
	cr_assert_lt(vhu_blkdrv_connect(t_path("nobody.sock"), &o, &d), 0);
}

/*
 * Completions waited for on an io_uring: vhu_blkdrv_arm_call(), then an
 * 8-byte read of the call eventfd as an application operation on vhu's
 * ring, then vhu_blkdrv_poll(). A completion published before the arm is
 * reported by it (no wait); one published after arrives as the read.
 */
struct call_watch {
	struct vhu_op op;
	uint64_t count;
	int res;
	unsigned int done;
};

static void
call_done(struct vhu_op *op, int res, uint32_t flags)
{
	struct call_watch *w = (struct call_watch *)op;

	w->res = res;
	w->done++;
}

Test(blkdrv, wait_on_the_ring)
{
	struct vhu_blkdrv *d = start(BASE_F, BASE_PF, 1, 16);
	struct vhu_ring_opts ro = { .max_ops = 4 };
	struct call_watch w = { .op.done = call_done };
	struct vhu_blkdrv_completion c;
	struct vhu_ring *ring = NULL;
	struct io_uring_sqe *sqe;
	struct dreq r;
	uint8_t *m;

	cr_assert_eq(vhu_ring_create(&ro, &ring), 0);
	cr_assert_eq(vhu_blkdrv_alloc(d, 4096, (void **)&m), 0);
	/* Nothing pending yet: the arm says wait, and the read waits for the call. */
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 4096, (void *)7), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert_eq(vhu_blkdrv_arm_call(d, 0), 0);
	sqe = vhu_op_sqe(ring, &w.op);
	cr_assert_not_null(sqe);
	io_uring_prep_read(sqe, vhu_blkdrv_call_fd(d, 0), &w.count, sizeof(w.count), 0);
	cr_assert_eq(vhu_ring_poll(ring) >= 0, true);
	cr_assert_eq(w.done, 0, "the call read completed before any call");
	cr_assert(dev_pop(&g_fake, 0, &r));
	dev_serve(&g_fake, 0, &r);
	dev_call(&g_fake, 0);
	while (w.done == 0) {
		cr_assert_geq(vhu_ring_wait(ring, 2000), 0);
	}
	cr_assert_eq(w.res, 8);
	cr_assert_eq(vhu_blkdrv_poll(d, 0, &c, 1), 1);
	cr_assert_eq(c.ret, 0);
	cr_assert_eq(c.cookie, (void *)7);
	/* Published before the arm: reported at once. */
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, m, 4096, (void *)8), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert(dev_pop(&g_fake, 0, &r));
	dev_serve(&g_fake, 0, &r);
	cr_assert_eq(vhu_blkdrv_arm_call(d, 0), 1);
	cr_assert_eq(vhu_blkdrv_poll(d, 0, &c, 1), 1);
	cr_assert_eq(c.cookie, (void *)8);
	cr_assert_eq(vhu_blkdrv_arm_call(d, 5), -EINVAL);
	vhu_ring_destroy(ring);
	finish(d);
}
