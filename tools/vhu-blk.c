/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk: a vhost-user-blk back-end on the vhu device layer. Serves a file
 * (or block device), or a null disk, to any number of front-ends on one
 * ring; the request handling is tools/blk/.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhu/device.h>
#include <vhu/uring.h>
#include <vhu/vhu.h>

#include "common/num.h"
#include "common/signals.h"
#include "blk/blkdev.h"
#include "blk/target.h"

#define WAIT_SLICE_MS	200
#define MAX_QUEUES	64u

struct options {
	const char *socket;
	const char *file;
	bool read_only;
	bool quiet;
	uint64_t null_bytes;
	unsigned int queues;
};

static bool quiet;

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-blk --socket PATH (--file PATH | --null SIZE) [options]\n"
		"A vhost-user-blk back-end on the vhu io_uring engine.\n"
		"\n"
		"  -s, --socket PATH   listen on PATH (a stale socket file is replaced)\n"
		"  -f, --file PATH     serve this file or block device (capacity: its size)\n"
		"  -z, --null SIZE     serve a null disk of SIZE bytes (K/M/G): reads zeroes,\n"
		"                      writes are discarded\n"
		"  -r, --read-only     refuse writes (VIRTIO_BLK_F_RO)\n"
		"  -n, --queues N      virtqueues, 1..%u (default 1)\n"
		"  -q, --quiet         log faults only\n"
		"  -h, --help          show this help\n",
		MAX_QUEUES);
}

static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "file", required_argument, NULL, 'f' },
		{ "null", required_argument, NULL, 'z' },
		{ "read-only", no_argument, NULL, 'r' },
		{ "queues", required_argument, NULL, 'n' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->queues = 1;
	while ((c = getopt_long(argc, argv, "s:f:z:rn:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->socket = optarg;
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'z':
			if (tool_parse_size(optarg, BLK_SECTOR, UINT64_MAX, &v) < 0) {
				fprintf(stderr, "vhu-blk: --null needs a size of at least %u "
					"bytes, not '%s'\n", BLK_SECTOR, optarg);
				return 2;
			}
			o->null_bytes = v;
			break;
		case 'r':
			o->read_only = true;
			break;
		case 'n':
			if (tool_parse_u64(optarg, 1, MAX_QUEUES, &v) < 0) {
				fprintf(stderr, "vhu-blk: --queues needs a number from 1 to %u, "
					"not '%s'\n", MAX_QUEUES, optarg);
				return 2;
			}
			o->queues = (unsigned int)v;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vhu-blk: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (o->socket == NULL || (o->file == NULL) == (o->null_bytes == 0)) {
		fprintf(stderr, "vhu-blk: --socket and one of --file or --null are required\n");
		usage(stderr);
		return 2;
	}
	return 0;
}

static int
on_open(struct vhu_dev *dev, void *ctx)
{
	int rc = blk_dev_ops.open(dev, ctx);

	if (!quiet) {
		fprintf(stderr, "vhu-blk: device %u: front-end connected\n", vhu_dev_id(dev));
	}
	return rc;
}

static void
on_close(struct vhu_dev *dev, int reason, void *ctx)
{
	blk_dev_ops.close(dev, reason, ctx);
	if (reason != 0 && reason != -VHU_EDISCONNECT) {
		fprintf(stderr, "vhu-blk: device %u: closed: %s\n", vhu_dev_id(dev),
			vhu_strerror(reason));
	} else if (!quiet) {
		fprintf(stderr, "vhu-blk: device %u: closed\n", vhu_dev_id(dev));
	}
}

int
main(int argc, char **argv)
{
	static struct vhu_dev_ops ops;
	struct vhu_ring_opts ropts;
	struct vhu_dev_server *srv = NULL;
	struct vhu_dev_opts dopts;
	struct vhu_ring *ring = NULL;
	uint8_t config[BLK_CONFIG_SIZE];
	struct blk_target t;
	struct options o;
	int rc;

	rc = parse_options(argc, argv, &o);
	if (rc != 0) {
		return rc == 1 ? 0 : rc;
	}
	quiet = o.quiet;
	rc = blk_target_open(&t, o.file, o.read_only, o.null_bytes, o.queues);
	if (rc < 0) {
		fprintf(stderr, "vhu-blk: cannot open %s: %s\n", o.file ? o.file : "the null disk",
			vhu_strerror(rc));
		return 1;
	}
	rc = tool_signals_install();
	if (rc < 0) {
		fprintf(stderr, "vhu-blk: cannot install signal handlers: %s\n", vhu_strerror(rc));
		blk_target_close(&t);
		return 1;
	}
	memset(&ropts, 0, sizeof(ropts));
	ropts.max_conns = 64;
	/* Kick, call and one request per descriptor of a 256-entry queue, per queue. */
	ropts.max_ops = o.queues * (2u + 256u);
	rc = vhu_ring_create(&ropts, &ring);
	if (rc < 0) {
		fprintf(stderr, "vhu-blk: cannot create the io_uring: %s (%s)\n", vhu_strerror(rc),
			vhu_ring_error_hint(rc));
		blk_target_close(&t);
		return 1;
	}
	blk_dev_opts(&t, config, &dopts);
	ops = blk_dev_ops;
	ops.open = on_open;
	ops.close = on_close;
	dopts.ops = &ops;
	dopts.path = o.socket;
	dopts.unlink_stale = true;
	rc = vhu_dev_server_create(ring, &dopts, &srv);
	if (rc < 0) {
		fprintf(stderr, "vhu-blk: cannot listen on %s: %s\n", o.socket, vhu_strerror(rc));
		vhu_ring_destroy(ring);
		blk_target_close(&t);
		return 1;
	}
	if (!quiet) {
		fprintf(stderr, "vhu-blk: listening on %s: %llu sectors%s%s, %u queue(s)%s\n",
			o.socket, (unsigned long long)t.sectors, t.null ? " (null)" : "",
			t.fd_direct >= 0 ? " (O_DIRECT)" : "", o.queues,
			o.read_only ? ", read-only" : "");
	}
	while (!tool_stop_signal()) {
		rc = vhu_ring_wait(ring, WAIT_SLICE_MS);
		if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EAGAIN) {
			fprintf(stderr, "vhu-blk: the ring failed: %s\n", vhu_strerror(rc));
			break;
		}
		rc = 0;
	}
	vhu_dev_server_destroy(srv);
	vhu_ring_destroy(ring);
	blk_target_close(&t);
	return rc < 0 ? 1 : 0;
}
