/* SPDX-License-Identifier: MIT */
/*
 * The engine as a front-end against real back-ends: qemu-storage-daemon's
 * vhost-user-blk export and virtiofsd (both libvhost-user, from Debian), in
 * both receive modes. A small state machine in on_message sends the next
 * request when the previous one is answered; the test drives the ring with
 * vhu_ring_wait() in a bounded loop and checks what the peers said.
 *
 * (The other direction, the blocking endpoint against vhu-backend on the
 * engine, is test_backend.c.)
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vhu/uring.h>
#include <vhu/vhu.h>

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)

/* What this test front-end can take part in (it does not open a back-end channel). */
#define WANT_PF		(PF(MQ) | PF(REPLY_ACK) | PF(CONFIG) | PF(CONFIGURE_MEM_SLOTS))
#define CONFIG_LEN	60u
#define WAIT_MS		1000
#define MAX_WAITS	60

enum step {
	S_GET_FEATURES,
	S_GET_PROTOCOL_FEATURES,
	S_SET_PROTOCOL_FEATURES,
	S_GET_QUEUE_NUM,
	S_GET_CONFIG,
	S_GET_MAX_MEM_SLOTS,
	S_SET_OWNER,
	S_SET_VRING_CALL,
	S_BARRIER,		/* GET_FEATURES: every earlier request was taken */
	S_DONE,
};

struct fe {
	bool blk;		/* the peer is a virtio-blk device (config, vring call) */
	enum step step;
	uint32_t waiting;	/* request whose reply is due, 0 when none */
	bool closed;
	int close_reason;
	char fault[256];

	uint64_t features;
	uint64_t offered_pf;
	uint64_t acked_pf;
	uint64_t queue_num;
	uint64_t max_mem_slots;
	bool got_max_mem_slots;
	uint64_t capacity;
	uint32_t config_size;
	unsigned int acks;	/* u64 acks received, all 0 */
	uint64_t barrier_features;
};

static int
fault(struct fe *fe, const char *fmt, ...)
{
	va_list ap;

	if (fe->fault[0] == '\0') {
		va_start(ap, fmt);
		vsnprintf(fe->fault, sizeof(fe->fault), fmt, ap);
		va_end(ap);
	}
	return -EPROTO;
}

static bool
acking(const struct fe *fe)
{
	return (fe->acked_pf & PF(REPLY_ACK)) != 0;
}

static int
send_req(struct vhu_conn *conn, struct fe *fe, uint32_t req, bool need_reply,
	 const void *body, size_t len, const int *fds, unsigned int nfds, bool replies)
{
	struct vhu_hdr h = vhu_hdr_request(req, (uint32_t)len, need_reply);
	int rc = vhu_conn_send(conn, &h, body, len, NULL, 0, fds, nfds);

	if (rc < 0) {
		return fault(fe, "send %s: %s", vhu_req_name(VHU_CHAN_FRONTEND, req),
			     vhu_strerror(rc));
	}
	fe->waiting = replies ? req : 0;
	return 0;
}

/* Send requests from fe->step on until one is awaiting its reply. */
static int
advance(struct vhu_conn *conn, struct fe *fe)
{
	uint64_t v;
	int rc = 0;

	while (rc == 0 && fe->waiting == 0 && fe->step != S_DONE) {
		switch (fe->step) {
		case S_GET_FEATURES:
		case S_BARRIER:
			rc = send_req(conn, fe, VHU_REQ_GET_FEATURES, false, NULL, 0, NULL, 0,
				      true);
			break;
		case S_GET_PROTOCOL_FEATURES:
			rc = send_req(conn, fe, VHU_REQ_GET_PROTOCOL_FEATURES, false, NULL, 0, NULL,
				      0, true);
			break;
		case S_SET_PROTOCOL_FEATURES:
			/* libvhost-user acks this one when the value it sets has REPLY_ACK. */
			fe->acked_pf = fe->offered_pf & WANT_PF;
			v = fe->acked_pf;
			rc = send_req(conn, fe, VHU_REQ_SET_PROTOCOL_FEATURES, acking(fe), &v,
				      sizeof(v), NULL, 0, acking(fe));
			break;
		case S_GET_QUEUE_NUM:
			if ((fe->acked_pf & PF(MQ)) == 0) {
				return fault(fe, "the peer does not offer MQ");
			}
			rc = send_req(conn, fe, VHU_REQ_GET_QUEUE_NUM, false, NULL, 0, NULL, 0,
				      true);
			break;
		case S_GET_CONFIG: {
			uint8_t body[VHU_CONFIG_HDR_SIZE + CONFIG_LEN] = { 0 };
			uint32_t size = CONFIG_LEN;

			if (!fe->blk) {
				break;
			}
			if ((fe->acked_pf & PF(CONFIG)) == 0) {
				return fault(fe, "the virtio-blk peer does not offer CONFIG");
			}
			/* As QEMU asks: offset 0, a zeroed payload of the length wanted. */
			memcpy(body + 4, &size, sizeof(size));
			rc = send_req(conn, fe, VHU_REQ_GET_CONFIG, false, body, sizeof(body), NULL,
				      0, true);
			break;
		}
		case S_GET_MAX_MEM_SLOTS:
			if ((fe->acked_pf & PF(CONFIGURE_MEM_SLOTS)) == 0) {
				break;
			}
			rc = send_req(conn, fe, VHU_REQ_GET_MAX_MEM_SLOTS, false, NULL, 0, NULL, 0,
				      true);
			break;
		case S_SET_OWNER:
			rc = send_req(conn, fe, VHU_REQ_SET_OWNER, acking(fe), NULL, 0, NULL, 0,
				      acking(fe));
			break;
		case S_SET_VRING_CALL: {
			int efd;

			if (!fe->blk) {
				break;
			}
			efd = t_eventfd();
			v = 0;
			rc = send_req(conn, fe, VHU_REQ_SET_VRING_CALL, acking(fe), &v, sizeof(v),
				      &efd, 1, acking(fe));
			/* Once queued the connection owns the eventfd; on failure it is ours. */
			if (rc < 0) {
				close(efd);
			}
			break;
		}
		case S_DONE:
			break;
		}
		if (rc == 0 && fe->waiting == 0) {
			fe->step++;
		}
	}
	return rc;
}

static int
body_u64(struct fe *fe, const struct vhu_msg *msg, uint64_t *v)
{
	if (msg->hdr.size != sizeof(*v)) {
		return fault(fe, "%s reply of %u bytes",
			     vhu_req_name(VHU_CHAN_FRONTEND, msg->hdr.request), msg->hdr.size);
	}
	memcpy(v, msg->body, sizeof(*v));
	return 0;
}

static int
on_message(struct vhu_conn *conn, struct vhu_msg *msg, void *ctx)
{
	struct fe *fe = ctx;
	uint64_t v = 0;
	int rc;

	if (msg->hdr.flags != (VHU_VERSION | VHU_FLAG_REPLY)) {
		return fault(fe, "reply flags 0x%x", msg->hdr.flags);
	}
	if (fe->waiting == 0 || msg->hdr.request != fe->waiting) {
		return fault(fe, "unexpected %s reply while waiting for %s",
			     vhu_req_name(VHU_CHAN_FRONTEND, msg->hdr.request),
			     vhu_req_name(VHU_CHAN_FRONTEND, fe->waiting));
	}
	if (msg->fds.n != 0) {
		return fault(fe, "%u fds with a reply", msg->fds.n);
	}
	switch (fe->step) {
	case S_GET_CONFIG: {
		uint32_t size;

		if (msg->hdr.size < VHU_CONFIG_HDR_SIZE) {
			return fault(fe, "GET_CONFIG reply of %u bytes", msg->hdr.size);
		}
		memcpy(&size, (uint8_t *)msg->body + 4, sizeof(size));
		fe->config_size = size;
		if (msg->hdr.size != VHU_CONFIG_HDR_SIZE + CONFIG_LEN || size != CONFIG_LEN) {
			return fault(fe, "GET_CONFIG reply of %u bytes, config size %u",
				     msg->hdr.size, size);
		}
		memcpy(&fe->capacity, (uint8_t *)msg->body + VHU_CONFIG_HDR_SIZE,
		       sizeof(fe->capacity));
		break;
	}
	default:
		rc = body_u64(fe, msg, &v);
		if (rc < 0) {
			return rc;
		}
		break;
	}
	switch (fe->step) {
	case S_GET_FEATURES:
		fe->features = v;
		break;
	case S_GET_PROTOCOL_FEATURES:
		fe->offered_pf = v;
		break;
	case S_GET_QUEUE_NUM:
		fe->queue_num = v;
		break;
	case S_GET_MAX_MEM_SLOTS:
		fe->max_mem_slots = v;
		fe->got_max_mem_slots = true;
		break;
	case S_SET_PROTOCOL_FEATURES:
	case S_SET_OWNER:
	case S_SET_VRING_CALL:
		if (v != 0) {
			return fault(fe, "%s acked with %llu",
				     vhu_req_name(VHU_CHAN_FRONTEND, msg->hdr.request),
				     (unsigned long long)v);
		}
		fe->acks++;
		break;
	case S_BARRIER:
		fe->barrier_features = v;
		break;
	default:
		break;
	}
	fe->waiting = 0;
	fe->step++;
	return advance(conn, fe);
}

static void
on_close(struct vhu_conn *conn, int reason, void *ctx)
{
	struct fe *fe = ctx;

	fe->closed = true;
	fe->close_reason = reason;
}

/* Per test process; fini tears them down even after a failed assertion. */
static struct vhu_ring *g_ring;
static struct t_peer g_peer;
static struct fe g_fe;

static void
fini(void)
{
	if (g_ring != NULL) {
		vhu_ring_destroy(g_ring);
		g_ring = NULL;
	}
	t_peer_stop(&g_peer);
	t_teardown();
}

TestSuite(uring_interop, .init = t_setup, .fini = fini, .timeout = 60);

/* Run the handshake against the started peer; fe holds what was learnt. */
static void
run(uint8_t mode)
{
	struct vhu_ring_opts ropts = { .max_conns = 4 };
	struct vhu_conn_opts copts = {
		.recv_mode = mode,
		.rules = { .channel = VHU_CHAN_FRONTEND, .expect = VHU_EXPECT_REPLY },
	};
	struct vhu_conn_ops ops = { .on_message = on_message, .on_close = on_close };
	struct vhu_conn *conn = NULL;
	int rc, i;

	rc = vhu_ring_create(&ropts, &g_ring);
	cr_assert_eq(rc, 0, "vhu_ring_create: %s (%s)", vhu_strerror(rc),
		     vhu_ring_error_hint(rc));
	rc = vhu_conn_connect(g_ring, g_peer.path, &copts, &ops, &g_fe, &conn);
	cr_assert_eq(rc, 0, "connect %s: %s", g_peer.path, vhu_strerror(rc));
	rc = advance(conn, &g_fe);
	cr_assert_eq(rc, 0, "%s", g_fe.fault);

	for (i = 0; i < MAX_WAITS && g_fe.step != S_DONE && !g_fe.closed; i++) {
		rc = vhu_ring_wait(g_ring, WAIT_MS);
		cr_assert(rc >= 0 || rc == -EINTR || rc == -ETIME, "vhu_ring_wait: %s",
			  vhu_strerror(rc));
	}
	cr_assert_str_empty(g_fe.fault, "%s: %s", g_peer.name, g_fe.fault);
	cr_assert(!g_fe.closed, "%s closed the connection at step %d: %s", g_peer.name,
		  (int)g_fe.step, vhu_strerror(g_fe.close_reason));
	cr_assert_eq(g_fe.step, S_DONE, "%s: stuck at step %d", g_peer.name, (int)g_fe.step);

	vhu_ring_destroy(g_ring);
	g_ring = NULL;
	cr_assert(g_fe.closed, "vhu_ring_destroy did not close the connection");
	cr_assert_eq(g_fe.close_reason, 0);
	t_peer_stop(&g_peer);
}

static void
qsd(uint8_t mode)
{
	g_fe.blk = true;
	t_peer_start_qsd(&g_peer);
	run(mode);

	cr_assert(g_fe.features & F(VHU_F_VERSION_1), "features 0x%llx",
		  (unsigned long long)g_fe.features);
	cr_assert(g_fe.features & F(VHU_F_PROTOCOL_FEATURES), "features 0x%llx",
		  (unsigned long long)g_fe.features);
	cr_assert_eq(g_fe.barrier_features, g_fe.features);
	cr_assert(g_fe.offered_pf & PF(REPLY_ACK), "protocol features 0x%llx",
		  (unsigned long long)g_fe.offered_pf);
	/* SET_PROTOCOL_FEATURES, SET_OWNER and SET_VRING_CALL, each acked 0. */
	cr_assert_eq(g_fe.acks, 3);
	cr_assert_eq(g_fe.queue_num, 1);
	cr_assert_eq(g_fe.config_size, CONFIG_LEN);
	cr_assert_eq(g_fe.capacity, 131072, "capacity %llu sectors",
		     (unsigned long long)g_fe.capacity);
	if (g_fe.offered_pf & PF(CONFIGURE_MEM_SLOTS)) {
		cr_assert(g_fe.got_max_mem_slots);
		cr_assert_geq(g_fe.max_mem_slots, 8);
	}
}

Test(uring_interop, qsd_exact)
{
	qsd(VHU_RECV_EXACT);
}

Test(uring_interop, qsd_stream)
{
	qsd(VHU_RECV_STREAM);
}

static void
virtiofsd(uint8_t mode)
{
	g_fe.blk = false;
	t_peer_start_virtiofsd(&g_peer);
	run(mode);

	cr_assert(g_fe.features & F(VHU_F_VERSION_1), "features 0x%llx",
		  (unsigned long long)g_fe.features);
	cr_assert(g_fe.features & F(VHU_F_PROTOCOL_FEATURES));
	cr_assert_eq(g_fe.barrier_features, g_fe.features);
	cr_assert(g_fe.offered_pf & PF(MQ));
	/* A request queue plus the high-priority queue, at least. */
	cr_assert_geq(g_fe.queue_num, 2);
	cr_assert_eq(g_fe.acks, (g_fe.offered_pf & PF(REPLY_ACK)) ? 2u : 0u);
}

Test(uring_interop, virtiofsd_exact)
{
	virtiofsd(VHU_RECV_EXACT);
}

Test(uring_interop, virtiofsd_stream)
{
	virtiofsd(VHU_RECV_STREAM);
}
