/* SPDX-License-Identifier: MIT */
/*
 * vhu-backend: a reference vhost-user back-end on the vhu device layer.
 * It answers the device-initialisation handshake of a VMM for a virtio-blk
 * disk with no data path (vhu-blk's target, a null disk offering no
 * discard or write-zeroes, whose requests are never popped), serving any
 * number of front-ends on one ring. The protocol is <vhu/device.h>'s, the
 * same code vhu-blk runs; this file is options, logging and the loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/device.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "common/exit.h"
#include "common/fdlimit.h"
#include "common/log.h"
#include "common/num.h"
#include "common/output.h"
#include "common/serve.h"
#include "blk/target.h"

#define DEFAULT_CAPACITY	(64ull << 20)
#define MAX_QUEUES		VHU_DEV_MAX_QUEUES

struct options {
	const char *socket;
	uint8_t recv_mode;
	bool busy_poll;
	bool quiet;
	unsigned int max_conns;
	uint32_t msg_timeout_ms;
	unsigned int queues;
	uint64_t capacity;
};

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-backend --socket PATH [options]\n"
		"A vhost-user back-end (virtio-blk, no data path) on the vhu io_uring engine.\n"
		"\n"
		"  -s, --socket PATH        listen on PATH (a stale socket file is replaced)\n"
		"  -r, --recv-mode MODE     exact or stream (default stream)\n"
		"  -b, --busy-poll          spin on the ring instead of sleeping in it\n"
		"  -m, --max-conns N        serve at most N front-ends at once (default: as\n"
		"                           many as RLIMIT_NOFILE holds at their fd budget)\n"
		"  -t, --msg-timeout MS     close a front-end whose message stalls MS ms\n"
		"                           (default 0: never; set it for untrusted front-ends)\n"
		"  -n, --queues N           virtqueues offered, 1..%u (default 1)\n"
		"  -c, --capacity SIZE      disk size in bytes, K/M/G suffixes (default 64M)\n"
		"  -q, --quiet              log faults only\n"
		"  -V, --version            print the version and exit\n"
		"  -h, --help               show this help\n"
		"\n"
		"Exit status: 0 stopped by SIGINT, SIGTERM or SIGHUP (the socket is removed);\n"
		"1 failure (the ring); 2 usage, or --max-conns beyond RLIMIT_NOFILE; 3 cannot\n"
		"listen on PATH; 7 a live back-end already listens on PATH.\n",
		MAX_QUEUES);
}

/* \return 0 to run, 1 after --help or --version, or 2 on a usage error (message printed). */
static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "recv-mode", required_argument, NULL, 'r' },
		{ "busy-poll", no_argument, NULL, 'b' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "msg-timeout", required_argument, NULL, 't' },
		{ "queues", required_argument, NULL, 'n' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->recv_mode = VHU_RECV_STREAM;
	o->queues = 1;
	o->capacity = DEFAULT_CAPACITY;
	while ((c = getopt_long(argc, argv, "s:r:bm:t:n:c:qVh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->socket = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "exact") == 0) {
				o->recv_mode = VHU_RECV_EXACT;
			} else if (strcmp(optarg, "stream") == 0) {
				o->recv_mode = VHU_RECV_STREAM;
			} else {
				fprintf(stderr, "vhu-backend: --recv-mode must be exact or stream, "
					"not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'b':
			o->busy_poll = true;
			break;
		case 'm':
			if (tool_parse_u64(optarg, 1, 1u << 20, &v) < 0) {
				fprintf(stderr, "vhu-backend: --max-conns needs a number from 1 to "
					"%u, not '%s'\n", 1u << 20, optarg);
				return 2;
			}
			o->max_conns = (unsigned int)v;
			break;
		case 't':
			if (tool_parse_u64(optarg, 0, UINT32_MAX, &v) < 0) {
				fprintf(stderr, "vhu-backend: --msg-timeout needs milliseconds, "
					"0 to %u, not '%s'\n", UINT32_MAX, optarg);
				return 2;
			}
			o->msg_timeout_ms = (uint32_t)v;
			break;
		case 'n':
			if (tool_parse_u64(optarg, 1, MAX_QUEUES, &v) < 0) {
				fprintf(stderr, "vhu-backend: --queues needs a number from 1 "
					"to %u, not '%s'\n", MAX_QUEUES, optarg);
				return 2;
			}
			o->queues = (unsigned int)v;
			break;
		case 'c':
			if (tool_parse_size(optarg, 1, UINT64_MAX, &v) < 0 ||
			    v % BLK_SECTOR != 0) {
				fprintf(stderr, "vhu-backend: --capacity needs a non-zero "
					"multiple of %u bytes, not '%s'\n", BLK_SECTOR, optarg);
				return 2;
			}
			o->capacity = v;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'V':
			tool_print_version(stdout, "vhu-backend");
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vhu-backend: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o->socket == NULL) {
		fprintf(stderr, "vhu-backend: --socket PATH is required\n");
		usage(stderr);
		return 2;
	}
	return 0;
}

/* Device callbacks --------------------------------------------------- */

static int
on_open(struct vhu_dev *dev, void *ctx)
{
	tool_log_info("conn %u: accepted", vhu_dev_id(dev));
	return 0;
}

/* No data path: the guest's requests stay in its rings. */
static void
on_queue_work(struct vhu_dev *dev, unsigned int q, void *ctx)
{
}

static void
on_request_failed(struct vhu_dev *dev, const struct vhu_dev_failure *f, void *ctx)
{
	const char *name = vhu_req_name(VHU_CHAN_FRONTEND, f->request);
	unsigned int id = vhu_dev_id(dev);

	if (f->error == -EOPNOTSUPP && f->missing_protocol_features != 0) {
		const char *gate = vhu_protocol_feature_name(
			(unsigned int)__builtin_ctzll(f->missing_protocol_features));

		tool_log_err("conn %u: unsupported request %s (%u) without protocol feature %s; "
			     "closing", id, name, f->request, gate != NULL ? gate : "?");
	} else if (f->error == -EOPNOTSUPP && !f->nacked) {
		tool_log_err("conn %u: unsupported request %s (%u); closing", id, name,
			     f->request);
	} else {
		tool_log_err("conn %u: %s failed: %s; %s", id, name, vhu_strerror(f->error),
			     f->nacked ? "sent a failure ack" : "closing");
	}
}

/* Logged once the device is gone, so a reader of the line sees every fd closed. */
static void
on_close(struct vhu_dev *dev, int reason, void *ctx)
{
	if (reason == 0) {
		tool_log_info("conn %u: closed", vhu_dev_id(dev));
	} else {
		tool_log_info("conn %u: closed: %s", vhu_dev_id(dev), vhu_strerror(reason));
	}
}

static const struct vhu_dev_ops backend_ops = {
	.open = on_open,
	.queue_work = on_queue_work,
	.close = on_close,
	.request_failed = on_request_failed,
};

/* Main --------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	struct vhu_ring_opts ropts;
	struct vhu_dev_opts dopts;
	struct vhu_dev_server *srv = NULL;
	struct vhu_ring *ring = NULL;
	uint8_t config[BLK_CONFIG_SIZE];
	struct blk_target t;
	struct options o;
	int rc;

	rc = parse_options(argc, argv, &o);
	if (rc == 1) {
		return tool_output_close(stdout, "vhu-backend", "standard output") < 0 ?
		       TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
	}
	if (rc != 0) {
		return rc;
	}
	tool_log_init("vhu-backend", o.quiet);
	/* Replace a socket file a dead back-end left, never a live back-end's. */
	rc = tool_serve_check_path(o.socket);
	if (rc != 0) {
		return rc;
	}
	if (tool_fit_fd_limit("vhu-backend", TOOL_MEM_SLOTS, o.queues, &o.max_conns) < 0) {
		return TOOL_EXIT_USAGE;
	}
	if (tool_serve_prepare() < 0) {
		tool_log_drain(1000);
		return TOOL_EXIT_FAILURE;
	}
	/* The disk it pretends to be: a null disk with nothing to discard or zero. */
	rc = blk_target_open(&t, NULL, false, o.capacity, o.queues);
	if (rc < 0) {
		tool_log_err("cannot make the disk: %s", vhu_strerror(rc));
		return TOOL_EXIT_FAILURE;
	}
	t.discard = false;
	t.write_zeroes = false;
	blk_target_config(&t, config);

	memset(&ropts, 0, sizeof(ropts));
	ropts.busy_poll = o.busy_poll;
	ropts.max_conns = o.max_conns;
	/* A kick read and a call write per queue (of one device; beyond, the kernel keeps them). */
	ropts.max_ops = 2u * o.queues;
	rc = vhu_ring_create(&ropts, &ring);
	if (rc < 0) {
		tool_log_err("cannot create the io_uring: %s (%s)", vhu_strerror(rc),
			     vhu_ring_error_hint(rc));
		tool_log_drain(1000);
		return TOOL_EXIT_FAILURE;
	}

	memset(&dopts, 0, sizeof(dopts));
	dopts.path = o.socket;
	dopts.unlink_stale = true;
	dopts.max_conns = o.max_conns;
	dopts.recv_mode = o.recv_mode;
	dopts.msg_timeout_ms = o.msg_timeout_ms;
	dopts.features = blk_target_features(&t);
	dopts.num_queues = o.queues;
	dopts.max_mem_slots = TOOL_MEM_SLOTS;
	dopts.config = config;
	dopts.config_size = BLK_CONFIG_SIZE;
	dopts.ops = &backend_ops;
	dopts.inflight = true;
	rc = vhu_dev_server_create(ring, &dopts, &srv);
	if (rc < 0) {
		tool_log_err("cannot listen on %s: %s", o.socket, vhu_strerror(rc));
		vhu_ring_destroy(ring);
		tool_log_drain(1000);
		return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : TOOL_EXIT_CONNECT;
	}
	tool_log_info("listening on %s", o.socket);

	rc = tool_serve(ring, o.busy_poll);
	vhu_dev_server_destroy(srv);
	vhu_ring_destroy(ring);
	blk_target_close(&t);
	/* The last lines (front-ends closed, shutting down) get a second to leave. */
	tool_log_drain(1000);
	return rc < 0 ? TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
}
