/* SPDX-License-Identifier: MIT */
/*
 * The blocking endpoint against real back-ends: qemu-storage-daemon's
 * vhost-user-blk export and virtiofsd, both built on libvhost-user. Every
 * reply goes through vhu_endpoint_call, so it is validated (code, flags,
 * size, fds) before the test looks at it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <vhu/endpoint.h>
#include <vhu/error.h>

#include "helpers.h"

TestSuite(peer_blocking, .init = t_setup, .fini = t_teardown, .timeout = 30);

/* What vhu's blocking client knows how to use. */
#define CLIENT_PROTOCOL_FEATURES \
	((1ull << VHU_PROTOCOL_F_MQ) | (1ull << VHU_PROTOCOL_F_REPLY_ACK) | \
	 (1ull << VHU_PROTOCOL_F_CONFIG))

static uint64_t
get_u64(struct vhu_endpoint *ep, uint32_t request)
{
	struct vhu_hdr hdr = vhu_hdr_request(request, 0, false);
	uint64_t v = 0;
	ssize_t n = vhu_endpoint_call(ep, &hdr, NULL, 0, NULL, 0, &v, sizeof(v), NULL);

	cr_assert_eq(n, 8, "%s: %s", vhu_req_name(VHU_CHAN_FRONTEND, request),
		     vhu_strerror((int)n));
	return v;
}

/*
 * The start of QEMU's device init: GET_FEATURES, GET/SET_PROTOCOL_FEATURES
 * (acked when REPLY_ACK is agreed), GET_QUEUE_NUM. Returns the queue count.
 */
static uint64_t
handshake(struct vhu_endpoint *ep, uint64_t *agreed)
{
	uint64_t features, offered, want, ack = 0xdead;
	struct vhu_hdr hdr;
	ssize_t n;

	features = get_u64(ep, VHU_REQ_GET_FEATURES);
	cr_assert(features & (1ull << VHU_F_VERSION_1), "features 0x%llx",
		  (unsigned long long)features);
	cr_assert(features & (1ull << VHU_F_PROTOCOL_FEATURES));

	offered = get_u64(ep, VHU_REQ_GET_PROTOCOL_FEATURES);
	cr_assert(offered & (1ull << VHU_PROTOCOL_F_MQ), "protocol 0x%llx",
		  (unsigned long long)offered);
	want = offered & CLIENT_PROTOCOL_FEATURES;

	hdr = vhu_hdr_request(VHU_REQ_SET_PROTOCOL_FEATURES, 8, true);
	if (want & (1ull << VHU_PROTOCOL_F_REPLY_ACK)) {
		n = vhu_endpoint_call(ep, &hdr, &want, 8, NULL, 0, &ack, sizeof(ack), NULL);
		cr_assert_eq(n, 8, "SET_PROTOCOL_FEATURES: %s", vhu_strerror((int)n));
		cr_assert_eq(ack, 0, "the back-end refused the protocol features");
	} else {
		cr_assert_eq(vhu_endpoint_send_message(ep, &hdr, &want, 8, NULL, 0), 0);
	}
	*agreed = want;
	return get_u64(ep, VHU_REQ_GET_QUEUE_NUM);
}

Test(peer_blocking, qsd_handshake_and_config)
{
	struct t_peer p;
	struct vhu_endpoint *ep;
	struct vhu_hdr hdr;
	union {
		uint64_t align;
		uint8_t b[VHU_CONFIG_HDR_SIZE + 60];
	} req, rep;
	struct vhu_config cfg = { .offset = 0, .size = 60, .flags = 0 };
	uint64_t agreed = 0, capacity, queues;
	ssize_t n;

	t_peer_start_qsd(&p);
	cr_assert_eq(vhu_endpoint_connect(p.path, NULL, &ep), 0);
	queues = handshake(ep, &agreed);
	cr_assert(agreed & (1ull << VHU_PROTOCOL_F_CONFIG), "qsd offers CONFIG");
	cr_assert(agreed & (1ull << VHU_PROTOCOL_F_REPLY_ACK));
	cr_assert_eq(queues, 1, "num-queues=1");

	/* GET_CONFIG: 12-byte config header, then a zeroed payload of the size asked for. */
	memset(&req, 0, sizeof(req));
	memcpy(req.b, &cfg, VHU_CONFIG_HDR_SIZE);
	hdr = vhu_hdr_request(VHU_REQ_GET_CONFIG, sizeof(req.b), false);
	memset(&rep, 0xff, sizeof(rep));
	n = vhu_endpoint_call(ep, &hdr, req.b, sizeof(req.b), NULL, 0, rep.b, sizeof(rep.b), NULL);
	cr_assert_eq(n, (ssize_t)sizeof(rep.b), "GET_CONFIG: %s", vhu_strerror((int)n));
	memcpy(&cfg, rep.b, VHU_CONFIG_HDR_SIZE);
	cr_assert_eq(cfg.size, 60);
	/* virtio-blk config: capacity in 512-byte sectors at offset 0. */
	memcpy(&capacity, rep.b + VHU_CONFIG_HDR_SIZE, sizeof(capacity));
	cr_assert_eq(capacity, 64ull * 1024 * 1024 / 512);

	vhu_endpoint_destroy(ep);
	t_peer_stop(&p);
}

Test(peer_blocking, virtiofsd_handshake)
{
	struct t_peer p;
	struct vhu_endpoint *ep;
	uint64_t agreed = 0, queues;

	t_peer_start_virtiofsd(&p);
	cr_assert_eq(vhu_endpoint_connect(p.path, NULL, &ep), 0);
	queues = handshake(ep, &agreed);
	cr_assert(agreed & (1ull << VHU_PROTOCOL_F_MQ));
	cr_assert_geq(queues, 2, "a hiprio queue plus at least one request queue");
	vhu_endpoint_destroy(ep);
	t_peer_stop(&p);
}

/*
 * Walking away mid-handshake: a request sent and its reply never read, then
 * a header cut short. Nothing of ours leaks, and the daemon is still there
 * for the next front-end.
 */
Test(peer_blocking, qsd_disconnect_mid_handshake)
{
	struct t_peer p;
	struct vhu_endpoint *ep;
	struct vhu_hdr hdr = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	uint64_t features;

	t_peer_start_qsd(&p);
	cr_assert_eq(vhu_endpoint_connect(p.path, NULL, &ep), 0);
	cr_assert_eq(vhu_endpoint_send_header(ep, &hdr, NULL, 0), 0);
	vhu_endpoint_destroy(ep);

	cr_assert_eq(vhu_endpoint_connect(p.path, NULL, &ep), 0);
	features = get_u64(ep, VHU_REQ_GET_PROTOCOL_FEATURES);
	cr_assert(features & (1ull << VHU_PROTOCOL_F_MQ));
	cr_assert_eq(write(vhu_endpoint_fd(ep), &hdr, 5), 5);
	vhu_endpoint_destroy(ep);

	cr_assert_eq(vhu_endpoint_connect(p.path, NULL, &ep), 0);
	features = get_u64(ep, VHU_REQ_GET_FEATURES);
	cr_assert(features & (1ull << VHU_F_VERSION_1));
	vhu_endpoint_destroy(ep);
	t_peer_stop(&p);
}
