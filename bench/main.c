/* SPDX-License-Identifier: MIT */
/*
 * vhu-bench: every selected case x transport in one run, so that the
 * ratios against the baselines compare figures taken on the same machine
 * state. Output: a table per case, or JSON lines with --json, each printed
 * (and flushed) as soon as its case has run on every transport, so that a
 * run cut short keeps what it measured; optionally a plot. With --listen
 * it is a back-end instead, for someone else's client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "blk_bench.h"
#include "cli.h"
#include "common/exit.h"
#include "common/output.h"
#include "common/sock.h"
#include "listen.h"
#include "plot.h"
#include "report.h"
#include "runner.h"

#define MAX_CASES	(2u + 3u * BENCH_MAX_PARAMS)
#define MAX_TRANSPORTS	(BENCH_NTRANSPORTS + BENCH_MAX_TARGETS)

struct progress {
	bool on;	/* stderr is a terminal: one line, rewritten in place */
	unsigned int index;	/* 1-based, of total */
	unsigned int total;
};

/* stderr is not a terminal (a log, CI): one line per case x transport as it starts. */
static void
log_progress(const struct progress *p, const char *label, const char *transport)
{
	if (!p->on) {
		fprintf(stderr, "vhu-bench: [%u/%u] %s %s\n", p->index, p->total, label,
			transport);
		fflush(stderr);
	}
}

static void
show_progress(void *ctx, const char *label, const char *transport, unsigned int rep,
	      unsigned int reps)
{
	struct progress *p = ctx;

	if (!p->on) {
		return;
	}
	if (rep == 0) {
		fprintf(stderr, "\r\033[K[%u/%u] %s %s: warm-up", p->index, p->total, label,
			transport);
	} else {
		fprintf(stderr, "\r\033[K[%u/%u] %s %s: repetition %u/%u", p->index, p->total,
			label, transport, rep, reps);
	}
	fflush(stderr);
}

/* The CPUs this process may run on; pick or check the placement. */
static int
place(struct bench_opts *o, struct bench_run_info *info)
{
	cpu_set_t set;
	int first = -1, second = -1;

	if (sched_getaffinity(0, sizeof(set), &set) < 0) {
		int err = errno;

		fprintf(stderr, "vhu-bench: sched_getaffinity: %s\n", strerror(err));
		return -err;
	}
	info->ncpus = (unsigned int)CPU_COUNT(&set);
	for (int i = 0; i < CPU_SETSIZE; i++) {
		if (!CPU_ISSET(i, &set)) {
			continue;
		}
		if (first < 0) {
			first = i;
		} else if (second < 0) {
			second = i;
		}
	}
	if (o->cpu_client < 0) {
		info->cpu_client = first;
		info->cpu_server = second >= 0 ? second : first;
		return 0;
	}
	if (o->cpu_client >= CPU_SETSIZE || o->cpu_server >= CPU_SETSIZE ||
	    !CPU_ISSET(o->cpu_client, &set) || !CPU_ISSET(o->cpu_server, &set)) {
		fprintf(stderr, "vhu-bench: --cpus %d,%d: not among the CPUs this process "
			"may use\n", o->cpu_client, o->cpu_server);
		return -EINVAL;
	}
	info->cpu_client = o->cpu_client;
	info->cpu_server = o->cpu_server;
	return 0;
}

/* conns/512 holds over 1024 socket ends at once in the parent: lift the soft limit. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The cases of the selected scenarios, in order. */
static unsigned int
make_cases(const struct bench_opts *o, struct bench_case *cs)
{
	unsigned int n = 0;

	for (int s = 0; s < BENCH_NSCENARIOS; s++) {
		const struct bench_params *p = s == BENCH_SC_ONEWAY ? &o->sizes :
					       s == BENCH_SC_FDS ? &o->nfds :
					       s == BENCH_SC_CONNS ? &o->conns : NULL;
		unsigned int k = p ? p->n : 1;

		if (!(o->scenarios >> s & 1)) {
			continue;
		}
		for (unsigned int i = 0; i < k; i++) {
			cs[n].sc = s;
			cs[n].param = p ? p->v[i] : 0;
			bench_case_label(cs[n].label, sizeof(cs[n].label), bench_scenario_names[s],
					 p != NULL, cs[n].param);
			n++;
		}
	}
	return n;
}

/* The built-in transports selected, then the --connect targets. */
static unsigned int
make_transports(const struct bench_opts *o, struct bench_transport *tt)
{
	unsigned int n = 0;

	for (int t = 0; t < BENCH_NTRANSPORTS; t++) {
		if (o->transports >> t & 1) {
			tt[n++] = *bench_transport_get(t);
		}
	}
	for (unsigned int i = 0; i < o->ntargets; i++) {
		tt[n++] = (struct bench_transport){
			.name = o->targets[i].name,
			.rt_client = &bench_client_endpoint,
			.validate = true,
			.path = o->targets[i].path,
		};
	}
	return n;
}

static int
listen_main(const struct bench_opts *o, const struct bench_run_info *info)
{
	const struct bench_transport *t = NULL;
	cpu_set_t set;

	for (int i = 0; i < BENCH_NTRANSPORTS; i++) {
		if (o->transports >> i & 1) {
			t = bench_transport_get(i);
		}
	}
	CPU_ZERO(&set);
	CPU_SET(info->cpu_server, &set);
	if (o->cpu_client >= 0 && sched_setaffinity(0, sizeof(set), &set) < 0) {
		fprintf(stderr, "vhu-bench: pinning to CPU %d: %s\n", info->cpu_server,
			strerror(errno));
		return 2;
	}
	{
		char why[400];
		int rc = tool_listen_check(o->listen, why, sizeof(why));

		if (rc < 0) {
			fprintf(stderr, "vhu-bench: cannot listen on %s\n", why);
			return rc == -EADDRINUSE ? TOOL_EXIT_ADDRINUSE : TOOL_EXIT_CONNECT;
		}
	}
	bench_listen_signals();
	switch (t->server->listen(t, o->listen, o->exit_after)) {
	case 0:
		break;
	case -EADDRINUSE:
		return TOOL_EXIT_ADDRINUSE;
	default:
		return TOOL_EXIT_FAILURE;
	}
	return tool_output_close(stdout, "vhu-bench", "standard output") < 0 ? TOOL_EXIT_FAILURE
									  : TOOL_EXIT_OK;
}

/*
 * Before anything runs: every --connect path is a socket we may connect to
 * (a missing path, something else than a socket, no permission are errors,
 * not cases to skip), and gnuplot is there for --plot. Without connecting:
 * a back-end that serves one connection and exits (virtiofsd) would spend
 * it on the check.
 */
static int
preflight(const struct bench_opts *o)
{
	for (unsigned int i = 0; i < o->ntargets; i++) {
		const char *path = o->targets[i].path;
		char why[400];
		struct stat st;
		int err = 0;

		if (stat(path, &st) != 0) {
			err = -errno;
		} else if (!S_ISSOCK(st.st_mode)) {
			err = -ENOTSOCK;
		} else if (access(path, W_OK) != 0) {
			err = -errno;
		}
		if (err < 0) {
			tool_connect_why(path, err, 0, why, sizeof(why));
			fprintf(stderr, "vhu-bench: --connect %s: cannot connect to %s\n",
				o->targets[i].name, why);
			return TOOL_EXIT_CONNECT;
		}
	}
	if (o->plot && !bench_plot_available()) {
		fprintf(stderr, "vhu-bench: --plot needs gnuplot, which was not found "
			"(apt-get install gnuplot-nox)\n");
		return TOOL_EXIT_USAGE;
	}
	return 0;
}

/*
 * Has the reader of stdout gone (a pipe whose read end closed)? Checked
 * between cases, so that `| head` stops the run at once rather than after
 * the next case is measured for nobody.
 */
static bool
stdout_gone(void)
{
	struct pollfd pfd = { .fd = STDOUT_FILENO, .events = 0 };

	return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR);
}

/* Print one case's results (all its transports measured): a table, or JSON lines. */
static int
print_case(const struct bench_opts *o, const struct bench_run_info *info,
	   struct bench_result *res, size_t n, const char *label)
{
	if (o->json) {
		for (size_t i = 0; i < n; i++) {
			bench_print_json(stdout, info, &res[i]);
		}
	} else {
		bench_print_table(stdout, res, n, label);
	}
	return tool_output_flush(stdout);
}

/*
 * Measure every case with every transport, printing each case as soon as its
 * transports are done. \return the write status (0, or a negative errno of
 * stdout); *status gets the run's exit status so far; *nres the results made.
 */
static int
run_cases(const struct bench_opts *o, struct bench_plan *plan, struct progress *prog,
	  const struct bench_case *cases, unsigned int ncases,
	  const struct bench_transport *tt, unsigned int ntr,
	  struct bench_result *res, size_t *nres, int *status)
{
	size_t n = 0;
	int out;

	prog->on = isatty(STDERR_FILENO);
	prog->total = ncases * ntr;
	if (!o->json) {
		bench_print_header(stdout, plan->info);
	}
	out = tool_output_flush(stdout);
	for (unsigned int c = 0; out == 0 && c < ncases; c++) {
		size_t first = n;

		for (unsigned int t = 0; t < ntr; t++) {
			if (stdout_gone()) {
				out = -EPIPE;
				break;
			}
			prog->index = (unsigned int)n + 1;
			log_progress(prog, cases[c].label, tt[t].name);
			bench_run_one(plan, &cases[c], &tt[t], &res[n]);
			if (res[n].connect_failed) {
				/* e.g. refused: nothing listens on the socket (a stale file) */
				fprintf(stderr, "vhu-bench: --connect %s: cannot connect: %s\n",
					tt[t].name, res[n].reason);
				*status = TOOL_EXIT_CONNECT;
			} else if (res[n].status == BENCH_FAILED && *status == 0) {
				*status = TOOL_EXIT_FAILURE;
			}
			n++;
		}
		if (prog->on) {
			fprintf(stderr, "\r\033[K");
		}
		if (out < 0) {
			break;
		}
		/* the baselines of a case run with it: its ratios are known now */
		bench_compute_ratios(res + first, n - first);
		out = print_case(o, plan->info, res + first, n - first, cases[c].label);
	}
	*nres = n;
	return out;
}

int
main(int argc, char **argv)
{
	struct bench_case cases[MAX_CASES];
	struct bench_transport tt[MAX_TRANSPORTS];
	struct bench_run_info info = { 0 };
	struct progress prog = { 0 };
	struct bench_plan plan = { .info = &info, .progress = show_progress,
				   .progress_ctx = &prog };
	struct bench_result *res;
	struct bench_opts o;
	struct utsname un;
	unsigned int ncases, ntr;
	char err[200];
	size_t n = 0;
	int status = 0, out;

	if (bench_blk_wanted(argc, argv)) {	/* the data-plane scenarios: bench/blk_bench.c */
		return bench_blk_main(argc, argv);
	}
	if (bench_opts_parse(&o, argc, argv, err, sizeof(err)) < 0) {
		fprintf(stderr, "vhu-bench: %s (try --help)\n", err);
		return TOOL_EXIT_USAGE;
	}
	if (o.help || o.version) {
		if (o.help) {
			bench_usage(stdout, "vhu-bench");
		} else {
			tool_print_version(stdout, "vhu-bench");
		}
		return tool_output_close(stdout, "vhu-bench", "standard output") < 0 ?
		       TOOL_EXIT_FAILURE : TOOL_EXIT_OK;
	}
	/* a reader of our output that went away is EPIPE on the next write: exit 1, said why */
	signal(SIGPIPE, SIG_IGN);
	if (place(&o, &info) < 0) {
		return 2;
	}
	raise_fd_limit();
	if (o.listen) {
		return listen_main(&o, &info);
	}
	status = preflight(&o);
	if (status != 0) {
		return status;
	}
	info.reps = o.reps;
	info.duration_ms = o.count ? 0 : o.duration_ms;
	info.count = o.count;
	info.warmup_ms = o.warmup_ms;
	info.ntargets = o.ntargets;
	if (uname(&un) == 0) {
		snprintf(info.kernel, sizeof(info.kernel), "%s", un.release);
	}
	plan.depth = o.depth;
	ncases = make_cases(&o, cases);
	ntr = make_transports(&o, tt);
	res = calloc((size_t)ncases * ntr, sizeof(*res));
	if (res == NULL) {
		fprintf(stderr, "vhu-bench: out of memory\n");
		return TOOL_EXIT_FAILURE;
	}
	out = run_cases(&o, &plan, &prog, cases, ncases, tt, ntr, res, &n, &status);
	if (out < 0) {
		/* a full disk, a closed pipe (| head): stop measuring for nobody */
		fprintf(stderr, "vhu-bench: writing the results: %s\n", strerror(-out));
		free(res);
		return TOOL_EXIT_FAILURE;
	}
	if (o.plot && bench_plot(o.plot, &info, res, n, err, sizeof(err)) < 0) {
		fprintf(stderr, "vhu-bench: --plot %s: %s\n", o.plot, err);
		status = TOOL_EXIT_FAILURE;
	}
	free(res);
	return status;
}
