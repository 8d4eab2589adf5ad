/* SPDX-License-Identifier: MIT */
/* vhu-probe's command line. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/num.h"
#include "common/output.h"
#include "probe.h"

void
probe_usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-probe [options] SOCKET\n"
		"Connect to the vhost-user back-end listening on SOCKET as a front-end, run the\n"
		"negotiation a VMM would (without starting the device) and report what it offers.\n"
		"\n"
		"Requests: GET_FEATURES; if PROTOCOL_FEATURES (bit 30) is offered,\n"
		"GET_PROTOCOL_FEATURES and SET_PROTOCOL_FEATURES acking only MQ, REPLY_ACK,\n"
		"CONFIG, CONFIGURE_MEM_SLOTS and STATUS among those offered; then\n"
		"GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, GET_CONFIG and GET_STATUS, each only if\n"
		"its feature is offered.\n"
		"\n"
		"Options:\n"
		"  -t, --timeout MS       limit for connecting and for each request, 1..%d ms\n"
		"                         (default %d)\n"
		"  -c, --config-size N    GET_CONFIG size in bytes, 1..%u (default %u)\n"
		"  -d, --device TYPE      decode the config space as TYPE (blk); if GET_CONFIG\n"
		"                         is refused, retry once with the size TYPE has (blk: %u)\n"
		"  -j, --json             print the report as one JSON object\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             show this help\n"
		"\n"
		"Exit status:\n"
		"  0  success\n"
		"  1  other failure (out of memory, standard output could not be written, ...)\n"
		"  2  usage error\n"
		"  3  cannot connect to SOCKET: no such file, not a socket, not permitted,\n"
		"     refused (nothing listens), or not accepted within --timeout\n"
		"  4  the back-end closed the connection\n"
		"  5  protocol error (the offending message is printed, decoded)\n"
		"  6  timeout: a request was not answered within --timeout\n"
		"\n"
		"Examples:\n"
		"  vhu-probe /run/vhost-user-blk.sock\n"
		"  vhu-probe --device blk --timeout 500 /run/vhost-user-blk.sock\n"
		"  vhu-probe --json --config-size 60 /tmp/vfsd.sock\n",
		MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, VHU_CONFIG_MAX_PAYLOAD, DEFAULT_CONFIG_SIZE,
		BLK_CONFIG_SIZE);
}

int
probe_parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "config-size", required_argument, NULL, 'c' },
		{ "device", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int v;
	int c;

	o->timeout_ms = DEFAULT_TIMEOUT_MS;
	o->config_size = DEFAULT_CONFIG_SIZE;
	o->device = DEV_NONE;
	o->json = false;
	o->socket = NULL;
	while ((c = getopt_long(argc, argv, "t:c:d:jVh", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (tool_parse_uint(optarg, 1, MAX_TIMEOUT_MS, &v) < 0) {
				fprintf(stderr, "vhu-probe: --timeout needs a number of ms "
					"from 1 to %d, not \"%s\"\n", MAX_TIMEOUT_MS, optarg);
				return ST_USAGE;
			}
			o->timeout_ms = (int)v;
			break;
		case 'c':
			if (tool_parse_uint(optarg, 1, VHU_CONFIG_MAX_PAYLOAD, &v) < 0) {
				fprintf(stderr, "vhu-probe: --config-size needs a number "
					"from 1 to %u, not \"%s\"\n", VHU_CONFIG_MAX_PAYLOAD,
					optarg);
				return ST_USAGE;
			}
			o->config_size = (uint32_t)v;
			break;
		case 'd':
			if (strcmp(optarg, "blk") != 0) {
				fprintf(stderr, "vhu-probe: --device knows blk only, not \"%s\"\n",
					optarg);
				return ST_USAGE;
			}
			o->device = DEV_BLK;
			break;
		case 'j':
			o->json = true;
			break;
		case 'V':
			tool_print_version(stdout, "vhu-probe");
			return tool_output_close(stdout, "vhu-probe", "standard output") < 0 ?
			       ST_FAIL : ST_OK;
		case 'h':
			probe_usage(stdout);
			return tool_output_close(stdout, "vhu-probe", "standard output") < 0 ?
			       ST_FAIL : ST_OK;
		default:
			probe_usage(stderr);
			return ST_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "vhu-probe: %s\n",
			optind >= argc ? "SOCKET is required" : "only one SOCKET is allowed");
		probe_usage(stderr);
		return ST_USAGE;
	}
	o->socket = argv[optind];
	return -1;
}
