/* SPDX-License-Identifier: MIT */
/*
 * tools/vhu-probe, run as a user runs it: the real binary is spawned with
 * fork/exec and judged by its stdout, stderr and exit status. The back-ends
 * are vhu-backend, qemu-storage-daemon, virtiofsd, and fakes played by the
 * test itself on a raw socket, which check the exact bytes the probe sends
 * and answer with exactly the faults under test.
 */
#define _GNU_SOURCE
#include "tool_helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/vhu.h>

#define F(n)		(1ull << (n))
#define PF(name)	F(VHU_PROTOCOL_F_##name)

/* What the probe may ack; anything else offered must be left out. */
#define PROBE_PF	(PF(MQ) | PF(REPLY_ACK) | PF(CONFIG) | PF(CONFIGURE_MEM_SLOTS) | PF(STATUS))

/*
 * vhu-backend's offer (tools/blk/target.c, the device layer): virtio-blk SEG_MAX (2),
 * BLK_SIZE (6), FLUSH (9), MQ (12), INDIRECT_DESC, EVENT_IDX,
 * PROTOCOL_FEATURES, VERSION_1; protocol MQ, REPLY_ACK, BACKEND_REQ, CONFIG,
 * INFLIGHT_SHMFD (opted in), RESET_DEVICE, CONFIGURE_MEM_SLOTS, STATUS (the
 * device layer's); 32 memory
 * slots; a 60-byte config space.
 */
#define BE_FEATURES	"0x0000000170001244"
#define BE_PF		"0x000000000001b229"
#define BE_PF_ACKED	"0x0000000000018209"

TestSuite(probe, .init = t_setup, .fini = t_tool_fini, .timeout = 60);

/* Running the probe -------------------------------------------------- */

/* Start the probe with args (NULL-terminated); its output is collected by probe_wait(). */
static void
probe_start(const char *const *args)
{
	t_proc_spawn(&t_tool.probe, "vhu-probe", args, false);
}

/* Read both pipes to EOF (each wait bounded), then reap the probe. */
static void
probe_wait(struct t_result *r)
{
	t_proc_result(&t_tool.probe, r);
}

/* Run the probe to completion. */
static void
probe_run(const char *const *args, struct t_result *r)
{
	probe_start(args);
	probe_wait(r);
}

static void
expect_exit(const struct t_result *r, int status)
{
	cr_assert_eq(r->status, status,
		     "vhu-probe exited %d, expected %d\nstdout:\n%s\nstderr:\n%s",
		     r->status, status, r->out, r->err);
}

/* JSON ---------------------------------------------------------------- */

/* The whole output is one JSON object on one line. */
static void
expect_json_object(const struct t_result *r)
{
	const char *end;

	cr_assert_eq(r->out[0], '{', "not a JSON object:\n%s", r->out);
	end = t_json_end(r->out);
	cr_assert_not_null(end, "invalid JSON:\n%s", r->out);
	cr_assert_str_eq(end, "\n", "trailing output after the JSON object:\n%s", r->out);
}

/* Copy the JSON array that follows "key":[ into buf (without brackets). */
static void
json_array(const char *json, const char *key, char *buf, size_t len)
{
	char pat[64];
	const char *a, *b;

	snprintf(pat, sizeof(pat), "\"%s\":[", key);
	a = strstr(json, pat);
	cr_assert_not_null(a, "no array %s in:\n%s", key, json);
	a += strlen(pat);
	b = strchr(a, ']');
	cr_assert_not_null(b);
	snprintf(buf, len, "%.*s", (int)(b - a), a);
}

/* The u64 in the hex string that follows "key":" */
static uint64_t
json_hex(const char *json, const char *key)
{
	char pat[64];
	const char *a;

	snprintf(pat, sizeof(pat), "\"%s\":\"0x", key);
	a = strstr(json, pat);
	cr_assert_not_null(a, "no %s in:\n%s", key, json);
	return strtoull(a + strlen(pat), NULL, 16);
}

/* vhu-backend ---------------------------------------------------------- */

/* Start vhu-backend with 2 queues and a 1 MiB disk; returns once it says it listens. */
static const char *
backend_start(void)
{
	t_proc_start_backend(&t_tool.backend, t_path("be.sock"));
	return t_path("be.sock");
}

Test(probe, backend_text_report)
{
	const char *sock = backend_start();
	const char *args[] = { "--device", "blk", sock, NULL };
	struct t_result r;

	probe_run(args, &r);
	expect_exit(&r, 0);
	t_expect_has(r.out, "features          " BE_FEATURES "\n"
		   "   2  SEG_MAX\n   6  BLK_SIZE\n   9  FLUSH\n  12  MQ\n"
		   "  28  RING_INDIRECT_DESC\n  29  RING_EVENT_IDX\n  30  PROTOCOL_FEATURES\n"
		   "  32  VERSION_1\n");
	t_expect_has(r.out, "protocol features " BE_PF "\n"
		   "   0  MQ\n   3  REPLY_ACK\n   5  BACKEND_REQ\n   9  CONFIG\n"
		   "  12  INFLIGHT_SHMFD\n  13  RESET_DEVICE\n  15  CONFIGURE_MEM_SLOTS\n  16  STATUS\n");
	t_expect_has(r.out, "acked             " BE_PF_ACKED "\n");
	t_expect_has(r.out, "queues            2\n");
	t_expect_has(r.out, "memory slots      32\n");
	/* The back-end has 60 bytes of config: 256 is refused, the blk retry succeeds. */
	t_expect_has(r.out, "config            refused for 256 bytes at offset 0\n");
	t_expect_has(r.out, "config            60 bytes at offset 0\n"
		   "  0000  00 08 00 00 00 00 00 00 00 00 00 00 7e 00 00 00  |............~...|\n");
	t_expect_has(r.out, "  capacity                  2048 sectors (1048576 bytes)\n");
	t_expect_has(r.out, "  seg_max                   126\n");
	t_expect_has(r.out, "  blk_size                  512\n");
	t_expect_has(r.out, "  num_queues                2\n");
	t_expect_has(r.out, "status            0x00\n");
	t_expect_has(r.out, "round trips (us)\n  GET_FEATURES  ");
	t_expect_has(r.out, "\n  GET_STATUS  ");
	cr_assert_eq(r.err_len, 0, "unexpected stderr: %s", r.err);
}

Test(probe, backend_json_report)
{
	const char *sock = backend_start();
	const char *args[] = { "--json", "--device", "blk", sock, NULL };
	struct t_result r;
	char want[256];

	probe_run(args, &r);
	expect_exit(&r, 0);
	expect_json_object(&r);
	snprintf(want, sizeof(want), "{\"socket\":\"%s\",", sock);
	t_expect_has(r.out, want);
	t_expect_has(r.out, "\"features\":\"" BE_FEATURES "\"");
	t_expect_has(r.out, "\"feature_names\":[\"SEG_MAX\",\"BLK_SIZE\",\"FLUSH\",\"MQ\","
		   "\"RING_INDIRECT_DESC\",\"RING_EVENT_IDX\",\"PROTOCOL_FEATURES\","
		   "\"VERSION_1\"]");
	t_expect_has(r.out, "\"protocol_features\":\"" BE_PF "\"");
	t_expect_has(r.out, "\"protocol_feature_names\":[\"MQ\",\"REPLY_ACK\",\"BACKEND_REQ\","
		   "\"CONFIG\",\"INFLIGHT_SHMFD\",\"RESET_DEVICE\",\"CONFIGURE_MEM_SLOTS\",\"STATUS\"]");
	t_expect_has(r.out, "\"protocol_features_acked\":\"" BE_PF_ACKED "\"");
	t_expect_has(r.out, "\"queues\":2,");
	t_expect_has(r.out, "\"max_mem_slots\":32,");
	t_expect_has(r.out, "\"config\":{\"refused_sizes\":[256],\"offset\":0,\"size\":60,"
		   "\"hex\":\"0008000000000000000000007e000000");
	t_expect_has(r.out, "\"capacity_sectors\":2048,\"capacity_bytes\":1048576,");
	t_expect_has(r.out, "\"num_queues\":2,");
	t_expect_has(r.out, "\"status\":0,");
	t_expect_has(r.out, "{\"request\":\"SET_PROTOCOL_FEATURES\",\"replied\":true,\"us\":");
	t_expect_has(r.out, "\"exit_status\":0}");
	t_expect_lacks(r.out, "\"error\"");
}

Test(probe, backend_without_device_does_not_retry_config)
{
	const char *sock = backend_start();
	const char *args[] = { "--json", sock, NULL };
	const char *args16[] = { "--json", "--config-size", "16", sock, NULL };
	struct t_result r;

	probe_run(args, &r);
	expect_exit(&r, 0);
	expect_json_object(&r);
	/* Without --device, device bits have no names and a refusal is final. */
	t_expect_has(r.out, "\"feature_names\":[\"bit 2\",\"bit 6\",\"bit 9\",\"bit 12\",");
	t_expect_has(r.out, "\"config\":{\"refused_sizes\":[256]}");
	t_expect_lacks(r.out, "\"blk\"");

	probe_run(args16, &r);
	expect_exit(&r, 0);
	expect_json_object(&r);
	t_expect_has(r.out, "\"config\":{\"refused_sizes\":[],\"offset\":0,\"size\":16,"
		   "\"hex\":\"0008000000000000000000007e000000\"}");
}

/* Real peers ------------------------------------------------------------- */

Test(probe, qemu_storage_daemon)
{
	const char *text_args[] = { "--device", "blk", t_tool.peer.path, NULL };
	const char *json_args[] = { "--device", "blk", "--json", t_tool.peer.path, NULL };
	struct t_result r;
	char names[1024];

	t_peer_start_qsd(&t_tool.peer);

	probe_run(text_args, &r);
	expect_exit(&r, 0);
	t_expect_has(r.out, "  30  PROTOCOL_FEATURES\n");
	t_expect_has(r.out, "  32  VERSION_1\n");
	t_expect_has(r.out, "   0  MQ\n");
	t_expect_has(r.out, "   9  CONFIG\n");
	t_expect_has(r.out, "queues            1\n");
	t_expect_has(r.out, "  capacity                  131072 sectors (67108864 bytes)\n");
	t_expect_has(r.out, "  num_queues                1\n");

	probe_run(json_args, &r);
	expect_exit(&r, 0);
	expect_json_object(&r);
	json_array(r.out, "feature_names", names, sizeof(names));
	t_expect_has(names, "\"VERSION_1\"");
	t_expect_has(names, "\"PROTOCOL_FEATURES\"");
	json_array(r.out, "protocol_feature_names", names, sizeof(names));
	t_expect_has(names, "\"MQ\"");
	t_expect_has(names, "\"CONFIG\"");
	cr_assert_eq(json_hex(r.out, "protocol_features_acked"),
		     json_hex(r.out, "protocol_features") & PROBE_PF);
	t_expect_has(r.out, "\"queues\":1,");
	t_expect_has(r.out, "\"capacity_sectors\":131072,\"capacity_bytes\":67108864,");
}

Test(probe, virtiofsd_text)
{
	const char *args[] = { t_tool.peer.path, NULL };
	struct t_result r;

	t_peer_start_virtiofsd(&t_tool.peer);
	probe_run(args, &r);
	expect_exit(&r, 0);
	t_expect_has(r.out, "  30  PROTOCOL_FEATURES\n");
	t_expect_has(r.out, "  32  VERSION_1\n");
	t_expect_has(r.out, "   0  MQ\n");
	t_expect_has(r.out, "   3  REPLY_ACK\n");
	t_expect_has(r.out, "   5  BACKEND_REQ\n");
	t_expect_has(r.out, "queues            ");
}

Test(probe, virtiofsd_json)
{
	const char *args[] = { "--json", t_tool.peer.path, NULL };
	struct t_result r;
	char names[1024];
	uint64_t offered;

	t_peer_start_virtiofsd(&t_tool.peer);
	probe_run(args, &r);
	expect_exit(&r, 0);
	expect_json_object(&r);
	json_array(r.out, "protocol_feature_names", names, sizeof(names));
	t_expect_has(names, "\"MQ\"");
	t_expect_has(names, "\"REPLY_ACK\"");
	t_expect_has(names, "\"BACKEND_REQ\"");
	offered = json_hex(r.out, "protocol_features");
	cr_assert_neq(offered & PF(BACKEND_REQ), 0);
	/* BACKEND_REQ and the rest are offered but never acked: the probe cannot serve them. */
	cr_assert_eq(json_hex(r.out, "protocol_features_acked"), offered & PROBE_PF);
	t_expect_has(r.out, "{\"request\":\"SET_PROTOCOL_FEATURES\",\"replied\":true,");
	t_expect_has(r.out, "\"queues\":");
}

/* A fake back-end played by the test ------------------------------------ */

/* Read exactly one request and compare every byte: header, then body. */
static void
fake_expect(uint32_t request, uint32_t flags, const void *body, uint32_t size)
{
	uint8_t got[VHU_HDR_SIZE + VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD];
	struct vhu_hdr want = { request, flags, size }, h;
	size_t len = VHU_HDR_SIZE + size;
	ssize_t n;

	cr_assert_leq(len, sizeof(got));
	n = recv(t_tool.cfd, got, len, MSG_WAITALL);
	cr_assert_eq(n, (ssize_t)len, "expected %s: got %zd of %zu bytes",
		     vhu_req_name(VHU_CHAN_FRONTEND, request), n, len);
	memcpy(&h, got, sizeof(h));
	cr_assert_arr_eq(&h, &want, VHU_HDR_SIZE, "header of %s differs: %u 0x%x %u",
			 vhu_req_name(VHU_CHAN_FRONTEND, request), h.request, h.flags, h.size);
	if (size > 0) {
		cr_assert_arr_eq(got + VHU_HDR_SIZE, body, size, "body of %s differs",
				 vhu_req_name(VHU_CHAN_FRONTEND, request));
	}
}

static void
fake_send(const void *buf, size_t len)
{
	cr_assert_eq(send(t_tool.cfd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
fake_reply(uint32_t request, uint32_t flags, const void *body, uint32_t size)
{
	uint8_t msg[VHU_HDR_SIZE + VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD];
	struct vhu_hdr h = { request, flags, size };

	cr_assert_leq(VHU_HDR_SIZE + size, sizeof(msg));
	memcpy(msg, &h, VHU_HDR_SIZE);
	if (size > 0) {
		memcpy(msg + VHU_HDR_SIZE, body, size);
	}
	fake_send(msg, VHU_HDR_SIZE + size);
}

static void
fake_reply_u64(uint32_t request, uint64_t v)
{
	fake_reply(request, VHU_VERSION | VHU_FLAG_REPLY, &v, sizeof(v));
}

/* The probe sent nothing more and closed its end. */
static void
fake_expect_eof(void)
{
	uint8_t b;

	cr_assert_eq(recv(t_tool.cfd, &b, 1, 0), 0, "the probe sent more than expected");
}

/* GET_FEATURES as the probe must send it, answered with features. */
static void
fake_features(uint64_t features)
{
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_FEATURES, features);
}

Test(probe, negotiation_bytes_and_unnamed_bits)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	uint64_t offered = PF(MQ) | PF(LOG_SHMFD) | PF(REPLY_ACK) | PF(STATUS) | F(22);
	uint64_t acked = PF(MQ) | PF(REPLY_ACK) | PF(STATUS);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_PROTOCOL_FEATURES) | F(VHU_F_VERSION_1) | F(41));
	fake_expect(VHU_REQ_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_PROTOCOL_FEATURES, offered);
	/* REPLY_ACK is acked, so this very request asks for the ack. */
	fake_expect(VHU_REQ_SET_PROTOCOL_FEATURES, VHU_VERSION | VHU_FLAG_NEED_REPLY, &acked, 8);
	fake_reply_u64(VHU_REQ_SET_PROTOCOL_FEATURES, 0);
	fake_expect(VHU_REQ_GET_QUEUE_NUM, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_QUEUE_NUM, 4);
	/* No CONFIGURE_MEM_SLOTS, no CONFIG offered: straight to GET_STATUS, then nothing. */
	fake_expect(VHU_REQ_GET_STATUS, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_STATUS, 0x0f);
	fake_expect_eof();
	probe_wait(&r);

	expect_exit(&r, 0);
	t_expect_has(r.out, "features          0x0000020140000000\n"
		   "  30  PROTOCOL_FEATURES\n  32  VERSION_1\n  41  bit 41\n");
	t_expect_has(r.out, "protocol features 0x000000000041000b\n"
		   "   0  MQ\n   1  LOG_SHMFD\n   3  REPLY_ACK\n  16  STATUS\n  22  bit 22\n");
	t_expect_has(r.out, "acked             0x0000000000010009\n");
	t_expect_has(r.out, "queues            4\n");
	t_expect_has(r.out, "status            0x0f ACKNOWLEDGE DRIVER DRIVER_OK FEATURES_OK\n");
	t_expect_lacks(r.out, "memory slots");
	t_expect_lacks(r.out, "config");
}

Test(probe, no_reply_ack_means_no_ack_awaited)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--json", path, NULL };
	uint64_t acked = PF(MQ);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_PROTOCOL_FEATURES));
	fake_expect(VHU_REQ_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_PROTOCOL_FEATURES, PF(MQ) | PF(BACKEND_REQ));
	/* Without REPLY_ACK no NEED_REPLY, and the next request follows without waiting. */
	fake_expect(VHU_REQ_SET_PROTOCOL_FEATURES, VHU_VERSION, &acked, 8);
	fake_expect(VHU_REQ_GET_QUEUE_NUM, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_QUEUE_NUM, 1);
	fake_expect_eof();
	probe_wait(&r);

	expect_exit(&r, 0);
	expect_json_object(&r);
	t_expect_has(r.out, "\"protocol_features_acked\":\"0x0000000000000001\"");
	t_expect_has(r.out, "{\"request\":\"SET_PROTOCOL_FEATURES\",\"replied\":false,");
	t_expect_has(r.out, "\"queues\":1,");
}

Test(probe, without_protocol_features_only_get_features)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--json", path, NULL };
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_VERSION_1));
	fake_expect_eof();
	probe_wait(&r);

	expect_exit(&r, 0);
	expect_json_object(&r);
	t_expect_has(r.out, "\"features\":\"0x0000000100000000\",\"feature_names\":[\"VERSION_1\"],");
	t_expect_lacks(r.out, "\"protocol_features\"");
	t_expect_has(r.out, "\"round_trips_us\":[{\"request\":\"GET_FEATURES\",\"replied\":true,"
		   "\"us\":");
}

/* A GET_CONFIG request of size bytes at offset 0, as QEMU sends it: zeroed payload. */
static void
fake_expect_get_config(uint32_t size)
{
	uint8_t body[VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD] = { 0 };

	memcpy(body + 4, &size, 4);
	fake_expect(VHU_REQ_GET_CONFIG, VHU_VERSION, body, VHU_CONFIG_HDR_SIZE + size);
}

static void
put(uint8_t *b, size_t off, uint64_t v, size_t width)
{
	memcpy(b + off, &v, width);
}

Test(probe, config_refused_then_blk_retry_decoded)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--device", "blk", path, NULL };
	uint8_t cfg[VHU_CONFIG_HDR_SIZE + 60] = { 0 };
	uint64_t capacity = 0x123456789ull;
	struct t_result r;
	char want[128];

	put(cfg, 4, 60, 4);
	put(cfg, 12 + 0, capacity, 8);
	put(cfg, 12 + 8, 65536, 4);	/* size_max */
	put(cfg, 12 + 12, 126, 4);	/* seg_max */
	put(cfg, 12 + 16, 1024, 2);	/* cylinders */
	put(cfg, 12 + 18, 16, 1);	/* heads */
	put(cfg, 12 + 19, 63, 1);	/* sectors */
	put(cfg, 12 + 20, 4096, 4);	/* blk_size */
	put(cfg, 12 + 34, 3, 2);	/* num_queues */

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_PROTOCOL_FEATURES));
	fake_expect(VHU_REQ_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_PROTOCOL_FEATURES, PF(CONFIG));
	fake_expect(VHU_REQ_SET_PROTOCOL_FEATURES, VHU_VERSION, &(uint64_t){ PF(CONFIG) }, 8);
	fake_expect_get_config(256);
	/* libvhost-user's refusal: a reply with no body at all. */
	fake_reply(VHU_REQ_GET_CONFIG, VHU_VERSION | VHU_FLAG_REPLY, NULL, 0);
	fake_expect_get_config(60);
	fake_reply(VHU_REQ_GET_CONFIG, VHU_VERSION | VHU_FLAG_REPLY, cfg, sizeof(cfg));
	fake_expect_eof();
	probe_wait(&r);

	expect_exit(&r, 0);
	t_expect_has(r.out, "config            refused for 256 bytes at offset 0\n");
	t_expect_has(r.out, "config            60 bytes at offset 0\n"
		   "  0000  89 67 45 23 01 00 00 00 00 00 01 00 7e 00 00 00  |.gE#........~...|\n"
		   "  0010  00 04 10 3f 00 10 00 00 00 00 00 00 00 00 00 00  |...?............|\n");
	snprintf(want, sizeof(want), "  capacity                  %" PRIu64 " sectors (%" PRIu64
		 " bytes)\n", capacity, capacity * 512);
	t_expect_has(r.out, want);
	t_expect_has(r.out, "  size_max                  65536\n");
	t_expect_has(r.out, "  seg_max                   126\n");
	t_expect_has(r.out, "  geometry                  1024 cylinders, 16 heads, 63 sectors\n");
	t_expect_has(r.out, "  blk_size                  4096\n");
	t_expect_has(r.out, "  num_queues                3\n");
}

/* Exit statuses ----------------------------------------------------------- */

Test(probe, usage_errors_exit_2)
{
	const char *none[] = { NULL };
	const char *bad_timeout[] = { "--timeout", "0", "x.sock", NULL };
	const char *bad_size[] = { "--config-size", "257", "x.sock", NULL };
	const char *bad_device[] = { "--device", "net", "x.sock", NULL };
	const char *two[] = { "a.sock", "b.sock", NULL };
	const char *help[] = { "--help", NULL };
	struct t_result r;

	probe_run(none, &r);
	expect_exit(&r, 2);
	t_expect_has(r.err, "SOCKET is required");
	probe_run(bad_timeout, &r);
	expect_exit(&r, 2);
	t_expect_has(r.err, "--timeout");
	probe_run(bad_size, &r);
	expect_exit(&r, 2);
	t_expect_has(r.err, "--config-size");
	probe_run(bad_device, &r);
	expect_exit(&r, 2);
	t_expect_has(r.err, "--device");
	probe_run(two, &r);
	expect_exit(&r, 2);

	probe_run(help, &r);
	expect_exit(&r, 0);
	t_expect_has(r.out, "Usage: vhu-probe");
	t_expect_has(r.out, "  3  cannot connect");
	t_expect_has(r.out, "  6  timeout");
	t_expect_has(r.out, "Examples:\n  vhu-probe ");
}

Test(probe, no_listener_exits_3)
{
	const char *missing[] = { t_path("missing.sock"), NULL };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *bound[] = { t_path("bound.sock"), NULL };
	struct t_result r;

	probe_run(missing, &r);
	expect_exit(&r, 3);
	t_expect_has(r.err, "cannot connect");
	t_expect_has(r.err, "(ENOENT)");
	cr_assert_eq(r.out_len, 0);

	/* A socket file nobody listens on. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", bound[0]);
	t_tool.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(t_tool.lfd, 0);
	cr_assert_eq(bind(t_tool.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	probe_run(bound, &r);
	expect_exit(&r, 3);
	t_expect_has(r.err, "(ECONNREFUSED)");
}

Test(probe, peer_closes_at_once_exits_4)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	const char *json[] = { "--json", path, NULL };
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	t_close_fd(&t_tool.cfd);
	probe_wait(&r);
	expect_exit(&r, 4);
	t_expect_has(r.err, "vhu-probe: GET_FEATURES: the back-end closed the connection");

	probe_start(json);
	t_tool.cfd = t_fake_accept();
	t_close_fd(&t_tool.cfd);
	probe_wait(&r);
	expect_exit(&r, 4);
	expect_json_object(&r);
	t_expect_has(r.out, "\"exit_status\":4,\"error\":{\"request\":\"GET_FEATURES\",");
}

Test(probe, peer_closes_inside_reply_exits_4)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	/* A header that promises 8 bytes, then 3 of them, then EOF. */
	fake_send(&h, sizeof(h));
	fake_send("abc", 3);
	t_close_fd(&t_tool.cfd);
	probe_wait(&r);
	expect_exit(&r, 4);
	t_expect_has(r.err, "(VHU_EPARTIAL)");
}

Test(probe, version_2_reply_exits_5)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	uint64_t v = F(VHU_F_VERSION_1);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply(VHU_REQ_GET_FEATURES, 0x2 | VHU_FLAG_REPLY, &v, sizeof(v));
	probe_wait(&r);
	expect_exit(&r, 5);
	t_expect_has(r.err, "vhu-probe: GET_FEATURES: protocol error: "
		   "InvalidMessage: header version is not 1 (VHU_EVERSION)\n");
	t_expect_has(r.err, "vhu-probe: offending message: request GET_FEATURES (1), "
		   "flags 0x6 (version 2, REPLY), size 8\n");
	/* Nothing from a rejected message is reported as the back-end's offer. */
	t_expect_lacks(r.out, "features");
}

Test(probe, version_2_reply_json_names_the_fault)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--json", path, NULL };
	uint64_t v = F(VHU_F_VERSION_1);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply(VHU_REQ_GET_FEATURES, 0x2 | VHU_FLAG_REPLY, &v, sizeof(v));
	probe_wait(&r);
	expect_exit(&r, 5);
	expect_json_object(&r);
	t_expect_has(r.out, "\"exit_status\":5,\"error\":{\"request\":\"GET_FEATURES\","
		   "\"code\":\"VHU_EVERSION\",");
	t_expect_has(r.out, "\"offending_message\":{\"request\":\"GET_FEATURES\",\"code\":1,"
		   "\"flags\":\"0x6\",\"size\":8}}}\n");
	t_expect_lacks(r.out, "\"features\"");
}

Test(probe, oversized_reply_header_exits_5_before_any_body)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 100000);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	/* No body follows: a probe that trusted the size would wait for it and time out. */
	fake_send(&h, sizeof(h));
	probe_wait(&r);
	expect_exit(&r, 5);
	t_expect_has(r.err, "(VHU_EOVERSIZED)");
	t_expect_has(r.err, "offending message: request GET_FEATURES (1), "
		   "flags 0x5 (version 1, REPLY), size 100000\n");
}

Test(probe, reply_to_another_request_exits_5)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_PROTOCOL_FEATURES, 0);
	probe_wait(&r);
	expect_exit(&r, 5);
	t_expect_has(r.err, "(VHU_EREPLY)");
	t_expect_has(r.err, "offending message: request GET_PROTOCOL_FEATURES (15), "
		   "flags 0x5 (version 1, REPLY), size 8\n");
}

Test(probe, reply_with_fd_exits_5)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
	uint8_t msg[VHU_HDR_SIZE + 8] = { 0 };
	union vhu_cmsg_buf cbuf;
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(msg) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int efd = t_eventfd();
	struct t_result r;

	memcpy(msg, &h, sizeof(h));
	cr_assert_eq(vhu_cmsg_build(&mh, &cbuf, &efd, 1), 0);
	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	cr_assert_eq(sendmsg(t_tool.cfd, &mh, MSG_NOSIGNAL), (ssize_t)sizeof(msg));
	close(efd);
	probe_wait(&r);
	expect_exit(&r, 5);
	t_expect_has(r.err, "IncorrectFds");
}

Test(probe, refused_protocol_features_exits_5)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { path, NULL };
	uint64_t acked = PF(REPLY_ACK);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_PROTOCOL_FEATURES));
	fake_expect(VHU_REQ_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_PROTOCOL_FEATURES, PF(REPLY_ACK));
	fake_expect(VHU_REQ_SET_PROTOCOL_FEATURES, VHU_VERSION | VHU_FLAG_NEED_REPLY, &acked, 8);
	fake_reply_u64(VHU_REQ_SET_PROTOCOL_FEATURES, 1);
	probe_wait(&r);
	expect_exit(&r, 5);
	t_expect_has(r.err, "vhu-probe: SET_PROTOCOL_FEATURES: protocol error: the back-end "
		   "refused the protocol features 0x8 (ack 1)");
}

Test(probe, config_of_the_wrong_size_exits_5)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--config-size", "60", path, NULL };
	uint8_t cfg[VHU_CONFIG_HDR_SIZE + 16] = { 0 };
	struct t_result r;

	put(cfg, 4, 16, 4);
	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_PROTOCOL_FEATURES));
	fake_expect(VHU_REQ_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	fake_reply_u64(VHU_REQ_GET_PROTOCOL_FEATURES, PF(CONFIG));
	fake_expect(VHU_REQ_SET_PROTOCOL_FEATURES, VHU_VERSION, &(uint64_t){ PF(CONFIG) }, 8);
	fake_expect_get_config(60);
	fake_reply(VHU_REQ_GET_CONFIG, VHU_VERSION | VHU_FLAG_REPLY, cfg, sizeof(cfg));
	probe_wait(&r);
	expect_exit(&r, 5);
	t_expect_has(r.err, "GET_CONFIG answered offset 0 size 16 for offset 0 size 60 (VHU_EBODY)");
	t_expect_has(r.err, "offending message: request GET_CONFIG (24), flags 0x5 (version 1, "
		   "REPLY), size 28\n");
}

Test(probe, silent_peer_exits_6)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--timeout", "200", path, NULL };
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	/* Hold the connection open and answer nothing; the probe's own clock ends it. */
	probe_wait(&r);
	expect_exit(&r, 6);
	t_expect_has(r.err, "vhu-probe: GET_FEATURES: timeout: not answered within 200 ms\n");
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	fake_expect_eof();
}

Test(probe, peer_stalling_inside_header_exits_6)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--timeout", "200", "--json", path, NULL };
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
	struct t_result r;

	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_expect(VHU_REQ_GET_FEATURES, VHU_VERSION, NULL, 0);
	fake_send(&h, 6);
	probe_wait(&r);
	expect_exit(&r, 6);
	expect_json_object(&r);
	t_expect_has(r.out, "\"exit_status\":6,\"error\":{\"request\":\"GET_FEATURES\","
		   "\"code\":\"ETIMEDOUT\",");
}

Test(probe, peer_stalling_inside_body_exits_6)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--timeout", "200", path, NULL };
	struct vhu_hdr h = vhu_hdr_reply(VHU_REQ_GET_PROTOCOL_FEATURES, 8);
	uint8_t msg[VHU_HDR_SIZE + 4] = { 0 };
	struct t_result r;

	memcpy(msg, &h, sizeof(h));
	probe_start(args);
	t_tool.cfd = t_fake_accept();
	fake_features(F(VHU_F_PROTOCOL_FEATURES));
	fake_expect(VHU_REQ_GET_PROTOCOL_FEATURES, VHU_VERSION, NULL, 0);
	/* A whole header and half of its body; the deadline is per request. */
	fake_send(msg, sizeof(msg));
	probe_wait(&r);
	expect_exit(&r, 6);
	t_expect_has(r.err,
		   "vhu-probe: GET_PROTOCOL_FEATURES: timeout: not answered within 200 ms\n");
	/* What was learnt before the stall is still reported. */
	t_expect_has(r.out, "features          0x0000000040000000\n");
}

Test(probe, full_backlog_connect_times_out_exits_3)
{
	const char *path = t_fake_listen("fake.sock");
	const char *args[] = { "--timeout", "200", path, NULL };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fill[64];
	unsigned int n, i;
	struct t_result r;

	/* Nobody accepts; fill the backlog so that a connect must wait for a slot. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(listen(t_tool.lfd, 0), 0);
	for (n = 0; n < 64; n++) {
		fill[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		cr_assert_geq(fill[n], 0);
		if (connect(fill[n], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fill[n]);
			break;
		}
	}
	cr_assert_lt(n, 64, "the backlog never filled");
	probe_run(args, &r);
	for (i = 0; i < n; i++) {
		close(fill[i]);
	}
	expect_exit(&r, 3);
	t_expect_has(r.err, "cannot connect");
	t_expect_has(r.err, "(ETIMEDOUT)");
}
