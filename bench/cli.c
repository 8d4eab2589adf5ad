/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/num.h"
#include "stats.h"

const char *const bench_scenario_names[BENCH_NSCENARIOS] = {
	[BENCH_SC_RT] = "rt",
	[BENCH_SC_PIPE] = "pipe",
	[BENCH_SC_ONEWAY] = "oneway",
	[BENCH_SC_FDS] = "fds",
	[BENCH_SC_CONNS] = "conns",
};

const char *const bench_transport_names[BENCH_NTRANSPORTS] = {
	[BENCH_TR_BLOCKING] = "blocking",
	[BENCH_TR_URING_EXACT] = "uring-exact",
	[BENCH_TR_URING_STREAM] = "uring-stream",
	[BENCH_TR_URING_EXACT_SPIN] = "uring-exact+spin",
	[BENCH_TR_URING_STREAM_SPIN] = "uring-stream+spin",
	[BENCH_TR_URING_EXACT_POLL] = "uring-exact+poll",
	[BENCH_TR_URING_STREAM_POLL] = "uring-stream+poll",
	[BENCH_TR_RAW] = "raw",
	[BENCH_TR_RAW_POLL] = "raw+poll",
};

static const struct bench_params def_sizes = { { 0, 64, 256, 1024, 4096 }, 5 };
static const struct bench_params def_nfds = { { 1, 8 }, 2 };
static const struct bench_params def_conns = { { 1, 16, 256 }, 3 };

void
bench_opts_default(struct bench_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->scenarios = (1u << BENCH_NSCENARIOS) - 1;
	o->transports = (1u << BENCH_NTRANSPORTS) - 1;
	o->baselines = true;
	o->reps = BENCH_DEF_REPS;
	o->duration_ms = BENCH_DEF_DURATION_MS;
	o->warmup_ms = BENCH_DEF_WARMUP_MS;
	o->depth = BENCH_DEF_DEPTH;
	o->sizes = def_sizes;
	o->nfds = def_nfds;
	o->conns = def_conns;
	o->cpu_client = -1;
	o->cpu_server = -1;
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A comma list of names into a bit mask. */
static int
parse_names(const char *list, const char *const *names, unsigned int n, uint32_t *mask,
	    char *err, size_t errlen, const char *what)
{
	const char *p = list;

	*mask = 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		unsigned int i;

		for (i = 0; i < n; i++) {
			if (strlen(names[i]) == len && strncmp(p, names[i], len) == 0) {
				break;
			}
		}
		if (i == n) {
			return fail(err, errlen, "unknown %s '%.*s'", what, (int)len, p);
		}
		*mask |= 1u << i;
		p += len;
		if (*p == ',') {
			p++;
		}
	}
	if (*mask == 0) {
		return fail(err, errlen, "empty %s list", what);
	}
	return 0;
}

static int
parse_cpus(const char *s, int *c, int *srv)
{
	uint64_t a, b;
	char tmp[32];
	char *comma;

	if (strlen(s) >= sizeof(tmp)) {
		return -EINVAL;
	}
	strcpy(tmp, s);
	comma = strchr(tmp, ',');
	if (comma == NULL) {
		return -EINVAL;
	}
	*comma = 0;
	if (tool_parse_u64(tmp, 0, 4095, &a) || tool_parse_u64(comma + 1, 0, 4095, &b)) {
		return -EINVAL;
	}
	*c = (int)a;
	*srv = (int)b;
	return 0;
}

/* A comma list of whole numbers in [lo, hi]. */
static int
parse_params(const char *list, unsigned int lo, unsigned int hi, struct bench_params *out)
{
	const char *p = list;

	out->n = 0;
	while (*p) {
		size_t len = strcspn(p, ",");
		char tmp[16];
		uint64_t v;

		if (len == 0 || len >= sizeof(tmp) || out->n == BENCH_MAX_PARAMS) {
			return -EINVAL;
		}
		memcpy(tmp, p, len);
		tmp[len] = 0;
		if (tool_parse_u64(tmp, lo, hi, &v)) {
			return -EINVAL;
		}
		out->v[out->n++] = (unsigned int)v;
		p += len;
		if (*p == ',') {
			p++;
		}
	}
	return out->n ? 0 : -EINVAL;
}

/* [NAME=]PATH; NAME defaults to "connect:N". */
static int
parse_target(struct bench_opts *o, const char *arg, char *err, size_t errlen)
{
	struct bench_target *t;
	const char *eq = strchr(arg, '=');
	const char *path = eq ? eq + 1 : arg;
	size_t nlen = eq ? (size_t)(eq - arg) : 0;

	if (o->ntargets == BENCH_MAX_TARGETS) {
		return fail(err, errlen, "at most %u --connect targets", BENCH_MAX_TARGETS);
	}
	t = &o->targets[o->ntargets];
	if (eq && (nlen == 0 || nlen >= sizeof(t->name))) {
		return fail(err, errlen, "--connect NAME=PATH: NAME wants 1..%zu characters",
			    sizeof(t->name) - 1);
	}
	if (*path == 0 || strlen(path) >= sizeof(t->path)) {
		return fail(err, errlen, "--connect: the socket path wants 1..%zu characters",
			    sizeof(t->path) - 1);
	}
	for (unsigned int i = 0; eq && i < BENCH_NTRANSPORTS; i++) {
		if (strlen(bench_transport_names[i]) == nlen &&
		    strncmp(arg, bench_transport_names[i], nlen) == 0) {
			return fail(err, errlen, "--connect: NAME '%.*s' is a built-in transport",
				    (int)nlen, arg);
		}
	}
	if (eq) {
		memcpy(t->name, arg, nlen);
		t->name[nlen] = 0;
	} else {
		snprintf(t->name, sizeof(t->name), "connect:%u", o->ntargets + 1);
	}
	strcpy(t->path, path);
	o->ntargets++;
	return 0;
}

enum {
	OPT_SCENARIO = 256,
	OPT_TRANSPORT,
	OPT_DEPTH,
	OPT_CPUS,
	OPT_JSON,
	OPT_QUICK,
	OPT_WARMUP,
	OPT_NO_BASELINES,
	OPT_SIZES,
	OPT_NFDS,
	OPT_CONNS,
	OPT_CONNECT,
	OPT_LISTEN,
	OPT_EXIT_AFTER,
	OPT_PLOT,
};

static const struct option long_opts[] = {
	{ "scenario", required_argument, NULL, OPT_SCENARIO },
	{ "transport", required_argument, NULL, OPT_TRANSPORT },
	{ "depth", required_argument, NULL, OPT_DEPTH },
	{ "cpus", required_argument, NULL, OPT_CPUS },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quick", no_argument, NULL, OPT_QUICK },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "no-baselines", no_argument, NULL, OPT_NO_BASELINES },
	{ "sizes", required_argument, NULL, OPT_SIZES },
	{ "fds", required_argument, NULL, OPT_NFDS },
	{ "conns", required_argument, NULL, OPT_CONNS },
	{ "connect", required_argument, NULL, OPT_CONNECT },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "exit-after", required_argument, NULL, OPT_EXIT_AFTER },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "reps", required_argument, NULL, 'r' },
	{ "time", required_argument, NULL, 't' },
	{ "count", required_argument, NULL, 'n' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Options given on the command line, where a later default depends on them. */
struct seen {
	bool reps, time, warmup, tr;
};

/* What to measure and against what. \return 0, -EINVAL (err set), or 1: not one of these. */
static int
opt_what(struct bench_opts *o, int c, struct seen *seen, char *err, size_t errlen)
{
	uint64_t v;

	switch (c) {
	case OPT_SCENARIO:
		if (parse_names(optarg, bench_scenario_names, BENCH_NSCENARIOS,
				&o->scenarios, err, errlen, "scenario")) {
			return -EINVAL;
		}
		break;
	case OPT_TRANSPORT:
		if (parse_names(optarg, bench_transport_names, BENCH_NTRANSPORTS,
				&o->transports, err, errlen, "transport")) {
			return -EINVAL;
		}
		seen->tr = true;
		break;
	case OPT_SIZES:
		if (parse_params(optarg, 0, BENCH_MAX_PAYLOAD, &o->sizes)) {
			return fail(err, errlen, "--sizes wants up to %u payload sizes, "
				    "0..%u bytes, comma separated", BENCH_MAX_PARAMS,
				    BENCH_MAX_PAYLOAD);
		}
		break;
	case OPT_NFDS:
		if (parse_params(optarg, 1, BENCH_MAX_MSG_FDS, &o->nfds)) {
			return fail(err, errlen, "--fds wants up to %u fd counts, 1..%u, "
				    "comma separated", BENCH_MAX_PARAMS, BENCH_MAX_MSG_FDS);
		}
		break;
	case OPT_CONNS:
		if (parse_params(optarg, 1, BENCH_MAX_CONNS, &o->conns)) {
			return fail(err, errlen, "--conns wants up to %u connection counts, "
				    "1..%u, comma separated", BENCH_MAX_PARAMS,
				    BENCH_MAX_CONNS);
		}
		break;
	case OPT_CONNECT:
		if (parse_target(o, optarg, err, errlen)) {
			return -EINVAL;
		}
		break;
	case OPT_LISTEN:
		if (*optarg == 0 || strlen(optarg) >= sizeof(o->targets[0].path)) {
			return fail(err, errlen, "--listen: the socket path wants 1..%zu "
				    "characters", sizeof(o->targets[0].path) - 1);
		}
		o->listen = optarg;
		break;
	case OPT_EXIT_AFTER:
		if (tool_parse_u64(optarg, 1, 1000000, &v)) {
			return fail(err, errlen, "--exit-after wants 1..1000000 connections");
		}
		o->exit_after = (unsigned int)v;
		break;
	case OPT_DEPTH:
		if (tool_parse_u64(optarg, 1, BENCH_MAX_DEPTH, &v)) {
			return fail(err, errlen, "--depth wants 1..%u", BENCH_MAX_DEPTH);
		}
		o->depth = (unsigned int)v;
		break;
	case OPT_CPUS:
		if (parse_cpus(optarg, &o->cpu_client, &o->cpu_server)) {
			return fail(err, errlen, "--cpus wants CLIENT,SERVER (e.g. 0,1)");
		}
		break;
	default:
		return 1;
	}
	return 0;
}

/* How long, how often, and what is printed. \return as opt_what. */
static int
opt_how(struct bench_opts *o, int c, struct seen *seen, char *err, size_t errlen)
{
	uint64_t v;

	switch (c) {
	case OPT_PLOT:
		if (*optarg == 0) {
			return fail(err, errlen, "--plot wants a file name");
		}
		o->plot = optarg;
		break;
	case OPT_JSON:
		o->json = true;
		break;
	case OPT_QUICK:
		o->quick = true;
		break;
	case OPT_NO_BASELINES:
		o->baselines = false;
		break;
	case OPT_WARMUP:
		if (tool_parse_u64(optarg, 0, 600000, &v)) {
			return fail(err, errlen, "--warmup wants 0..600000 ms");
		}
		o->warmup_ms = (unsigned int)v;
		seen->warmup = true;
		break;
	case 'r':
		if (tool_parse_u64(optarg, 1, BENCH_MAX_REPS, &v)) {
			return fail(err, errlen, "-r wants 1..%u", BENCH_MAX_REPS);
		}
		o->reps = (unsigned int)v;
		seen->reps = true;
		break;
	case 't':
		if (tool_parse_u64(optarg, 1, 600000, &v)) {
			return fail(err, errlen, "-t wants 1..600000 ms");
		}
		o->duration_ms = (unsigned int)v;
		o->count = 0;
		seen->time = true;
		break;
	case 'n':
		if (tool_parse_u64(optarg, 1, UINT64_C(1) << 40, &v)) {
			return fail(err, errlen, "-n wants a message count >= 1");
		}
		o->count = v;
		seen->time = true;
		break;
	case 'h':
		o->help = true;
		break;
	case 'V':
		o->version = true;
		break;
	default:
		return 1;
	}
	return 0;
}

/* An option getopt did not know, or one without its argument. */
static int
opt_unknown(char **argv, char *err, size_t errlen)
{
	if (optopt > 0 && optopt < 128) {
		return fail(err, errlen, "option -%c: unknown, or missing its argument", optopt);
	}
	return fail(err, errlen, "option '%s': unknown, or missing its argument",
		    argv[optind - 1]);
}

/* --quick: short defaults for what was not given. */
static void
apply_quick(struct bench_opts *o, const struct seen *seen)
{
	if (!seen->reps) {
		o->reps = 3;
	}
	if (!seen->time) {
		o->duration_ms = 100;
	}
	if (!seen->warmup) {
		o->warmup_ms = 30;
	}
}

/* --listen: one vhost-user transport, nothing to compare or plot. */
static int
check_listen(struct bench_opts *o, const struct seen *seen, char *err, size_t errlen)
{
	if (o->ntargets || o->plot || o->json) {
		return fail(err, errlen, "--listen serves: it takes no --connect, --plot "
			    "or --json");
	}
	if (!seen->tr) {
		o->transports = 1u << BENCH_TR_URING_STREAM;
	}
	if (o->transports & (o->transports - 1)) {
		return fail(err, errlen, "--listen serves with one --transport");
	}
	if (o->transports & (1u << BENCH_TR_RAW | 1u << BENCH_TR_RAW_POLL)) {
		return fail(err, errlen, "--listen: raw transports do not speak vhost-user");
	}
	return 0;
}

/* A comparison: the transports and targets to measure, baselines included. */
static int
check_measure(struct bench_opts *o, const struct seen *seen, char *err, size_t errlen)
{
	if (o->exit_after) {
		return fail(err, errlen, "--exit-after goes with --listen");
	}
	if (o->ntargets && !seen->tr) {
		/* measure the targets against the baselines only, unless asked for more */
		o->transports = 0;
	}
	if (o->baselines) {
		o->transports |= 1u << BENCH_TR_BLOCKING | 1u << BENCH_TR_RAW;
	}
	if (o->transports == 0 && o->ntargets == 0) {
		return fail(err, errlen, "nothing to measure (--no-baselines and no transport)");
	}
	return 0;
}

int
bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen)
{
	struct seen seen = { false, false, false, false };
	int c, rc;

	bench_opts_default(o);
	err[0] = 0;
	optind = 0;	/* glibc: start over, so the parser can run more than once */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+r:t:n:Vh", long_opts, NULL)) != -1) {
		rc = opt_what(o, c, &seen, err, errlen);
		if (rc == 1) {
			rc = opt_how(o, c, &seen, err, errlen);
		}
		if (rc == 1) {
			rc = opt_unknown(argv, err, errlen);
		}
		if (rc < 0) {
			return rc;
		}
	}
	if (optind < argc) {
		return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
	}
	if (o->quick) {
		apply_quick(o, &seen);
	}
	return o->listen ? check_listen(o, &seen, err, errlen) : check_measure(o, &seen, err, errlen);
}

void
bench_usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [--scenario NAME,...] [--transport NAME,...] [--connect [NAME=]PATH]...\n"
		"          [-r N] [-t MS | -n COUNT] [--warmup MS] [--depth D] [--sizes B,...]\n"
		"          [--fds N,...] [--conns N,...] [--cpus C,S] [--json] [--plot FILE.png]\n"
		"          [--quick] [--no-baselines]\n"
		"       %s --listen PATH [--transport NAME] [--exit-after N] [--cpus C,S]\n"
		"\n"
		"Measures vhost-user traffic over AF_UNIX sockets between two processes\n"
		"(client, server), each pinned to a CPU, for every scenario x transport in\n"
		"one run, with ratios against the baselines measured in that same run.\n"
		"\n"
		"scenarios:\n"
		"  rt      one GET_FEATURES request in flight, u64 reply: round trips/s and\n"
		"          p50/p90/p99/p99.9 latency\n"
		"  pipe    D GET_FEATURES requests in flight (--depth, default %u): msgs/s\n"
		"  oneway  a stream of requests without replies, for each payload size\n"
		"          (--sizes, default 0,64,256,1024,4096): msgs/s and MB/s; payload 0\n"
		"          is SET_OWNER, N > 0 is SET_CONFIG with N config bytes\n"
		"  fds     requests with N fds and NEED_REPLY, pipelined (--fds, default\n"
		"          1,8): SET_VRING_CALL with an eventfd for 1, SET_MEM_TABLE with\n"
		"          N memfd regions above;\n"
		"          checks that every fd arrives and is the file that was sent\n"
		"  conns   D requests in flight spread over N connections on one server\n"
		"          (--conns, default 1,16,256): aggregate msgs/s\n"
		"transports (the server side):\n"
		"  blocking           lib/ endpoint: recv_header + recv_body, send_message;\n"
		"                     a thread per connection\n"
		"  uring-exact        io_uring engine, exact reads (header, then body)\n"
		"  uring-stream       io_uring engine, reads into provided buffers\n"
		"  uring-exact+spin   uring-exact whose server spins up to 50 us before it\n"
		"                     sleeps (vhu_ring_opts.wait_spin_us)\n"
		"  uring-stream+spin  uring-stream, the same\n"
		"  uring-exact+poll   uring-exact with a busy-polling server (vhu_ring_poll spin)\n"
		"  uring-stream+poll  uring-stream with a busy-polling server\n"
		"  raw                plain recv/send of the same bytes, no framing, no\n"
		"                     validation: the socket's limit\n"
		"  raw+poll           raw with a server spinning on non-blocking recv\n"
		"  --connect PATH     an outside back-end listening on PATH (repeatable; NAME=\n"
		"                     names it in the output): rt, pipe, fds (1 fd, needs\n"
		"                     REPLY_ACK) and conns, with requests every back-end answers\n"
		"The client is the blocking endpoint in rt and a batching client that reads\n"
		"and validates replies in bulk elsewhere (raw: the same without validation).\n"
		"blocking and raw always run as the baselines of the ratios, unless\n"
		"--no-baselines is given; with --connect, only they run unless --transport\n"
		"names more.\n"
		"\n"
		"options:\n"
		"  -r, --reps N        measured repetitions (default %u)\n"
		"  -t, --time MS       duration of one repetition (default %u ms)\n"
		"  -n, --count COUNT   messages per repetition instead of a duration\n"
		"      --warmup MS     warm-up before the repetitions (default %u ms)\n"
		"      --depth D       requests in flight for pipe, fds and conns, 1..%u\n"
		"                      (default %u; fds uses at most 64)\n"
		"      --cpus C,S      pin the client to CPU C and the server to CPU S\n"
		"                      (default: the first two CPUs allowed; one CPU: shared)\n"
		"      --json          JSON lines, one object per scenario x transport\n"
		"      --plot FILE     also draw the rates as a PNG (needs gnuplot)\n"
		"      --quick         3 x 100 ms, warm-up 30 ms (explicit options win)\n"
		"      --listen PATH   be the back-end: serve every connection on PATH with\n"
		"                      --transport (default uring-stream; pinned to CPU S of\n"
		"                      --cpus if given), print a line per connection as it\n"
		"                      closes: requests, replies, fds, rate, server CPU\n"
		"      --exit-after N  with --listen: exit once N connections have closed\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          this text\n"
		"\n"
		"Results are printed as each case completes; progress goes to stderr.\n"
		"A --connect PATH must be a socket we may write (else exit 3, before the\n"
		"run); each connect has a 2 s deadline (a back-end serving fewer\n"
		"connections makes conns/N unavailable). --listen refuses a live socket\n"
		"(exit 7), replaces a stale one, and stops on SIGINT, SIGTERM, SIGHUP.\n"
		"\n"
		"exit status: 0 ok (cases unavailable here included), 1 a case failed or\n"
		"the output could not be written, 2 usage (or --plot without gnuplot),\n"
		"3 cannot connect to a --connect target or listen on --listen, 7 a live\n"
		"listener already answers on the --listen path\n"
		"\n"
		"examples:\n"
		"  %s                                  # everything, default method\n"
		"  %s --quick                          # a fast look\n"
		"  %s --scenario rt --transport uring-exact -r 10 -t 1000\n"
		"  %s --scenario pipe,conns --connect qsd=/tmp/vhost-blk.sock\n",
		prog, prog, BENCH_DEF_DEPTH, BENCH_DEF_REPS, BENCH_DEF_DURATION_MS,
		BENCH_DEF_WARMUP_MS, BENCH_MAX_DEPTH, BENCH_DEF_DEPTH, prog, prog, prog, prog);
}
