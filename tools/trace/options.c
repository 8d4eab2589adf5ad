/* SPDX-License-Identifier: MIT */
/* vhu-trace's command line. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/exit.h"
#include "common/num.h"
#include "common/output.h"
#include "common/sock.h"
#include "trace.h"

static void
usage(FILE *out)
{
	fprintf(out,
		"Usage: vhu-trace --listen PATH --connect PATH [options]\n"
		"Interpose between a vhost-user front-end and back-end and print every message.\n"
		"The front-end connects to the --listen path; vhu-trace connects to the back-end\n"
		"at the --connect path and forwards every message both ways, unmodified, fds\n"
		"included, tracing the back-end channel (SET_BACKEND_REQ_FD) as well.\n"
		"\n"
		"Options:\n"
		"  -l, --listen PATH        socket path the front-end connects to\n"
		"  -c, --connect PATH       socket path of the real back-end\n"
		"  -r, --recv-mode MODE     exact (default) or stream\n"
		"  -s, --strict             close both sides on a message that breaks the rules\n"
		"                           of its direction (default: forward it, flagged)\n"
		"  -k, --keep-listening     go on listening: serve many front-ends at once, each\n"
		"                           with its own back-end connection, until a signal\n"
		"  -m, --max-sessions N     with -k: at most N sessions at once (default %u);\n"
		"                           a front-end over the limit is closed at once\n"
		"  -j, --json               one JSON object per line\n"
		"  -x, --hex                raw bytes of each message after its line\n"
		"  -v, --verbose            name the type of each passed fd (memfd, eventfd, ...)\n"
		"  -o, --output FILE        write the trace to FILE instead of stdout\n"
		"  -V, --version            print the version and exit\n"
		"  -h, --help               show this help\n"
		"\n"
		"Line format:\n"
		"  SECONDS [#SESSION] DIR CHANNEL REQUEST flags=0xF(NAMES) size=N fds=N FIELDS...\n"
		"  DIR is F->B or B->F, CHANNEL main or backend-channel; a message that breaks\n"
		"  the strict rules ends with INVALID and the fault. Lines with ---- are events.\n"
		"  #SESSION is there with --keep-listening, where sessions interleave.\n"
		"\n"
		"Exit status:\n"
		"  0  the session ended because a side closed (or SIGINT, SIGTERM or SIGHUP\n"
		"     stopped vhu-trace; the --listen socket is removed)\n"
		"  1  other failure (out of memory, the ring, the trace could not be\n"
		"     written: a full disk, a closed pipe, ...)\n"
		"  2  usage error\n"
		"  3  cannot listen on --listen, or cannot connect to --connect (no such\n"
		"     socket, not a socket, not permitted, refused, backlog full)\n"
		"  5  protocol error: a message could not be framed, --strict refused one, or\n"
		"     the back-end channel fd led back to vhu-trace's own connection\n"
		"  7  a live listener already answers on --listen (a stale socket file is\n"
		"     replaced)\n"
		"\n"
		"Examples:\n"
		"  vhu-trace --listen /tmp/trace.sock --connect /run/vhost-user-blk.sock\n"
		"  vhu-trace -l /tmp/trace.sock -c /tmp/vfsd.sock --json -o trace.jsonl\n"
		"  vhu-trace -l /tmp/trace.sock -c /tmp/be.sock --strict --hex -v\n",
		DEFAULT_MAX_SESSIONS);
}

/*
 * The --listen path: nothing there, or a socket file a dead process left
 * (replaced when listening), never a live listener's socket.
 * \return -1 to go on, or the exit status (message printed).
 */
static int
check_listen(const char *path)
{
	char why[400];
	int rc = tool_listen_check(path, why, sizeof(why));

	if (rc == 0) {
		return -1;
	}
	fprintf(stderr, "vhu-trace: cannot listen on %s\n", why);
	return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : ST_CONNECT;
}

/* --recv-mode NAME; \return 0, or -1 after saying why. */
static int
parse_recv_mode(const char *arg, uint8_t *mode)
{
	if (strcmp(arg, "exact") == 0) {
		*mode = VHU_RECV_EXACT;
	} else if (strcmp(arg, "stream") == 0) {
		*mode = VHU_RECV_STREAM;
	} else {
		fprintf(stderr, "vhu-trace: --recv-mode must be exact or stream, not \"%s\"\n", arg);
		return -1;
	}
	return 0;
}

int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "recv-mode", required_argument, NULL, 'r' },
		{ "strict", no_argument, NULL, 's' },
		{ "keep-listening", no_argument, NULL, 'k' },
		{ "max-sessions", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "hex", no_argument, NULL, 'x' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "output", required_argument, NULL, 'o' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned int max = 0;
	int c;

	memset(o, 0, sizeof(*o));
	o->recv_mode = VHU_RECV_EXACT;
	while ((c = getopt_long(argc, argv, "l:c:r:skm:jxvo:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen = optarg;
			break;
		case 'c':
			o->connect = optarg;
			break;
		case 'r':
			if (parse_recv_mode(optarg, &o->recv_mode) < 0) {
				return ST_USAGE;
			}
			break;
		case 's':
			o->strict = true;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'm':
			if (tool_parse_uint(optarg, 1, MAX_SESSIONS_LIMIT, &max) < 0) {
				fprintf(stderr, "vhu-trace: --max-sessions must be 1..%u, not \"%s\"\n",
					MAX_SESSIONS_LIMIT, optarg);
				return ST_USAGE;
			}
			break;
		case 'j':
			o->json = true;
			break;
		case 'x':
			o->hex = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'o':
			o->output = optarg;
			break;
		case 'V':
			tool_print_version(stdout, "vhu-trace");
			return tool_output_close(stdout, "vhu-trace", "standard output") < 0 ?
			       ST_FAIL : ST_OK;
		case 'h':
			usage(stdout);
			return tool_output_close(stdout, "vhu-trace", "standard output") < 0 ?
			       ST_FAIL : ST_OK;
		default:
			usage(stderr);
			return ST_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vhu-trace: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return ST_USAGE;
	}
	if (o->listen == NULL || o->connect == NULL) {
		fprintf(stderr, "vhu-trace: %s is required\n",
			o->listen == NULL ? "--listen PATH" : "--connect PATH");
		usage(stderr);
		return ST_USAGE;
	}
	if (max != 0 && !o->keep) {
		fprintf(stderr, "vhu-trace: --max-sessions needs --keep-listening\n");
		return ST_USAGE;
	}
	o->max_sessions = !o->keep ? 1u : max != 0 ? max : DEFAULT_MAX_SESSIONS;
	if (strcmp(o->listen, o->connect) == 0) {
		fprintf(stderr, "vhu-trace: --listen and --connect must differ\n");
		return ST_USAGE;
	}
	return check_listen(o->listen);
}
