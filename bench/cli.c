/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

const char *const bench_scenario_names[BENCH_NSCENARIOS] = {
	[BENCH_SC_RT] = "rt",
	[BENCH_SC_PIPE] = "pipe",
};

const char *const bench_transport_names[BENCH_NTRANSPORTS] = {
	[BENCH_TR_BLOCKING] = "blocking",
	[BENCH_TR_URING_EXACT] = "uring-exact",
	[BENCH_TR_URING_STREAM] = "uring-stream",
	[BENCH_TR_URING_EXACT_POLL] = "uring-exact+poll",
	[BENCH_TR_URING_STREAM_POLL] = "uring-stream+poll",
	[BENCH_TR_RAW] = "raw",
};

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

/* A whole decimal number in [lo, hi]. */
static int
parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s[0] < '0' || s[0] > '9') {
		return -EINVAL;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi) {
		return -EINVAL;
	}
	*out = v;
	return 0;
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
	if (parse_u64(tmp, 0, 4095, &a) || parse_u64(comma + 1, 0, 4095, &b)) {
		return -EINVAL;
	}
	*c = (int)a;
	*srv = (int)b;
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
	{ "reps", required_argument, NULL, 'r' },
	{ "time", required_argument, NULL, 't' },
	{ "count", required_argument, NULL, 'n' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int
bench_opts_parse(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen)
{
	bool set_reps = false, set_time = false, set_warmup = false;
	uint64_t v;
	int c;

	bench_opts_default(o);
	err[0] = 0;
	optind = 0;	/* glibc: start over, so the parser can run more than once */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+r:t:n:h", long_opts, NULL)) != -1) {
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
			break;
		case OPT_DEPTH:
			if (parse_u64(optarg, 1, BENCH_MAX_DEPTH, &v)) {
				return fail(err, errlen, "--depth wants 1..%u", BENCH_MAX_DEPTH);
			}
			o->depth = (unsigned int)v;
			break;
		case OPT_CPUS:
			if (parse_cpus(optarg, &o->cpu_client, &o->cpu_server)) {
				return fail(err, errlen, "--cpus wants CLIENT,SERVER (e.g. 0,1)");
			}
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
			if (parse_u64(optarg, 0, 600000, &v)) {
				return fail(err, errlen, "--warmup wants 0..600000 ms");
			}
			o->warmup_ms = (unsigned int)v;
			set_warmup = true;
			break;
		case 'r':
			if (parse_u64(optarg, 1, BENCH_MAX_REPS, &v)) {
				return fail(err, errlen, "-r wants 1..%u", BENCH_MAX_REPS);
			}
			o->reps = (unsigned int)v;
			set_reps = true;
			break;
		case 't':
			if (parse_u64(optarg, 1, 600000, &v)) {
				return fail(err, errlen, "-t wants 1..600000 ms");
			}
			o->duration_ms = (unsigned int)v;
			o->count = 0;
			set_time = true;
			break;
		case 'n':
			if (parse_u64(optarg, 1, UINT64_C(1) << 40, &v)) {
				return fail(err, errlen, "-n wants a message count >= 1");
			}
			o->count = v;
			set_time = true;
			break;
		case 'h':
			o->help = true;
			break;
		default:
			if (optopt > 0 && optopt < 128) {
				return fail(err, errlen,
					    "option -%c: unknown, or missing its argument", optopt);
			}
			return fail(err, errlen, "option '%s': unknown, or missing its argument",
				    argv[optind - 1]);
		}
	}
	if (optind < argc) {
		return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
	}
	if (o->quick) {
		if (!set_reps) {
			o->reps = 3;
		}
		if (!set_time) {
			o->duration_ms = 100;
		}
		if (!set_warmup) {
			o->warmup_ms = 30;
		}
	}
	if (o->baselines) {
		o->transports |= 1u << BENCH_TR_BLOCKING | 1u << BENCH_TR_RAW;
	}
	return 0;
}

void
bench_usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [--scenario rt,pipe] [--transport NAME,...] [-r N] [-t MS | -n COUNT]\n"
		"          [--warmup MS] [--depth D] [--cpus C,S] [--json] [--quick]\n"
		"          [--no-baselines]\n"
		"\n"
		"Measures vhost-user request/reply over an AF_UNIX socketpair between two\n"
		"processes (client, server), each pinned to a CPU.\n"
		"\n"
		"scenarios:\n"
		"  rt     one GET_FEATURES request in flight, u64 reply: round trips/s and\n"
		"         p50/p90/p99/p99.9 latency\n"
		"  pipe   D requests in flight (--depth, default %u): messages/s\n"
		"transports (the server side; the client is the blocking endpoint, except raw):\n"
		"  blocking           lib/ endpoint: recv_header + recv_body_bytes, send_message\n"
		"  uring-exact        io_uring engine, exact reads (header, then body)\n"
		"  uring-stream       io_uring engine, multishot reads into provided buffers\n"
		"  uring-exact+poll   uring-exact with a busy-polling server (vhu_ring_poll spin)\n"
		"  uring-stream+poll  uring-stream with a busy-polling server\n"
		"  raw                plain write/read of the same bytes: the socket's limit\n"
		"blocking and raw always run as the baselines of the ratios, unless\n"
		"--no-baselines is given.\n"
		"\n"
		"options:\n"
		"  -r, --reps N        measured repetitions (default %u)\n"
		"  -t, --time MS       duration of one repetition (default %u ms)\n"
		"  -n, --count COUNT   messages per repetition instead of a duration\n"
		"      --warmup MS     warm-up before the repetitions (default %u ms)\n"
		"      --depth D       requests in flight for pipe, 1..%u (default %u)\n"
		"      --cpus C,S      pin the client to CPU C and the server to CPU S\n"
		"                      (default: the first two CPUs allowed; one CPU: shared)\n"
		"      --json          JSON lines, one object per scenario x transport\n"
		"      --quick         3 x 100 ms, warm-up 30 ms (explicit options win)\n"
		"  -h, --help          this text\n"
		"\n"
		"examples:\n"
		"  %s                                  # everything, default method\n"
		"  %s --quick                          # a fast look\n"
		"  %s --scenario rt --transport uring-exact -r 10 -t 1000\n"
		"  %s --scenario pipe --depth 64 --cpus 1,0 --json\n",
		prog, BENCH_DEF_DEPTH, BENCH_DEF_REPS, BENCH_DEF_DURATION_MS, BENCH_DEF_WARMUP_MS,
		BENCH_MAX_DEPTH, BENCH_DEF_DEPTH, prog, prog, prog, prog);
}
