/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peer.h"

/* Round trips sampled per repetition at most (8 MiB of samples). */
#define SAMPLES_CAP	(1u << 20)
/* How long the parent waits for the server to get ready. */
#define READY_TIMEOUT_MS	30000

enum rec_kind {
	REC_READY = 1,	/* server: set up (err 0) or not */
	REC_REP,	/* client: one measured repetition */
	REC_DONE,	/* either side: finished (err says how) */
};

/* A report from a child; well under PIPE_BUF, so each write is atomic. */
struct rec {
	int32_t kind;
	int32_t err;
	uint64_t msgs;
	uint64_t elapsed_ns;
	uint64_t cpu_ns;
	uint64_t pctl[BENCH_NLAT];
	uint64_t nsamples;
	uint64_t enters;
	int32_t has_latency;
	int32_t has_stats;
	char detail[160];
};

_Static_assert(sizeof(struct rec) < PIPE_BUF, "reports are written atomically");

static uint64_t
cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0) {
		return 0;
	}
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

static int
pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		return -errno;
	}
	return 0;
}

static void
put(int fd, const struct rec *r)
{
	ssize_t n;

	do {
		n = write(fd, r, sizeof(*r));
	} while (n < 0 && errno == EINTR);
}

/* A child must not outlive the parent, nor run its atexit handlers or flush its stdio. */
static void
child_init(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) {
		_exit(1);
	}
	signal(SIGPIPE, SIG_IGN);
}

static void __attribute__((noreturn))
server_main(const struct bench_plan *plan, const struct bench_transport *t, unsigned int depth,
	    int fd, int out)
{
	struct bench_server s = { .t = t, .depth = depth, .fd = -1 };
	struct rec r = { .kind = REC_READY };
	int ret;

	ret = pin(plan->info->cpu_server);
	if (ret < 0) {
		close(fd);
		snprintf(r.detail, sizeof(r.detail), "pinning the server to CPU %d: %s",
			 plan->info->cpu_server, strerror(-ret));
		r.err = ret;
		put(out, &r);
		_exit(1);
	}
	ret = t->server->setup(&s, fd);
	r.err = ret;
	snprintf(r.detail, sizeof(r.detail), "%s", s.detail);
	put(out, &r);
	if (ret < 0) {
		t->server->teardown(&s);
		_exit(1);
	}
	ret = t->server->run(&s);
	memset(&r, 0, sizeof(r));
	r.kind = REC_DONE;
	r.err = ret;
	r.msgs = s.msgs;
	r.cpu_ns = cpu_ns();
	r.has_stats = s.has_stats;
	r.enters = s.stats.enters;
	snprintf(r.detail, sizeof(r.detail), "%s", s.detail);
	/* teardown before the report: a teardown that hangs is a finding too */
	t->server->teardown(&s);
	put(out, &r);
	_exit(ret < 0 ? 1 : 0);
}

static void __attribute__((noreturn))
client_main(const struct bench_plan *plan, const struct bench_transport *t,
	    enum bench_scenario_id sc, unsigned int depth, int fd, int out)
{
	const struct bench_run_info *info = plan->info;
	struct bench_client c = {
		.fd = -1,
		.depth = depth,
		.batch = depth / 4 ? depth / 4 : 1,
	};
	int (*loop)(struct bench_client *, struct bench_window *);
	uint64_t *samples = NULL;
	size_t cap = 0;
	struct rec r;
	int ret, fin;

	loop = sc == BENCH_SC_RT ? t->client->rt : t->client->pipe;
	ret = pin(info->cpu_client);
	if (ret < 0) {
		close(fd);
		goto out;
	}
	if (sc == BENCH_SC_RT) {
		cap = info->count && info->count < SAMPLES_CAP ? (size_t)info->count : SAMPLES_CAP;
		samples = malloc(cap * sizeof(*samples));
		if (samples == NULL) {
			close(fd);
			ret = -ENOMEM;
			goto out;
		}
		/* fault the pages in now, not inside the measured loop */
		memset(samples, 0, cap * sizeof(*samples));
	}
	ret = t->client->open(&c, fd);
	if (ret < 0) {
		goto out;
	}
	if (info->warmup_ms) {
		struct bench_window w = {
			.deadline_ns = bench_now_ns() + (uint64_t)info->warmup_ms * 1000000u,
		};

		ret = loop(&c, &w);
	}
	for (unsigned int i = 0; ret == 0 && i < info->reps; i++) {
		struct bench_window w = { .count = info->count, .samples = samples, .cap = cap };
		struct bench_pctls p;
		uint64_t c0, t0, t1;

		c0 = cpu_ns();
		t0 = bench_now_ns();
		w.deadline_ns = t0 + (uint64_t)info->duration_ms * 1000000u;
		ret = loop(&c, &w);
		t1 = bench_now_ns();
		memset(&r, 0, sizeof(r));
		r.kind = REC_REP;
		r.cpu_ns = cpu_ns() - c0;
		r.elapsed_ns = t1 - t0;
		r.msgs = w.msgs;
		if (ret == 0 && bench_latency_pctls(samples, w.nsamples, &p) == 0) {
			r.has_latency = 1;
			r.nsamples = w.nsamples;
			r.pctl[BENCH_P50] = p.p50;
			r.pctl[BENCH_P90] = p.p90;
			r.pctl[BENCH_P99] = p.p99;
			r.pctl[BENCH_P999] = p.p999;
		}
		if (ret == 0) {
			put(out, &r);
		}
	}
	fin = t->client->finish(&c);
	if (ret == 0) {
		ret = fin;
	}
out:
	memset(&r, 0, sizeof(r));
	r.kind = REC_DONE;
	r.err = ret;
	put(out, &r);
	free(samples);
	_exit(ret < 0 ? 1 : 0);
}

/* 1 with a report, 0 at EOF (the child is gone), -ETIMEDOUT, or -errno. */
static int
get(int fd, struct rec *r, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int ret;

	do {
		ret = poll(&pfd, 1, timeout_ms);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		return -errno;
	}
	if (ret == 0) {
		return -ETIMEDOUT;
	}
	do {
		n = read(fd, r, sizeof(*r));
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		return -errno;
	}
	if (n == 0) {
		return 0;
	}
	return n == (ssize_t)sizeof(*r) ? 1 : -EPROTO;
}

/* Reap a child, killing it first if asked; describe an abnormal end. */
static void
reap(pid_t pid, bool kill_it, const char *who, char *why, size_t len)
{
	int st;

	if (pid <= 0) {
		return;
	}
	if (kill_it) {
		kill(pid, SIGKILL);
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			return;
		}
	}
	if (WIFSIGNALED(st) && !kill_it && why && !why[0]) {
		snprintf(why, len, "%s killed by signal %d (%s)", who, WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	}
}

static const char *
errtext(int err)
{
	if (err == -ETIMEDOUT) {
		return "no report in time (hung)";
	}
	if (err == 0) {
		return "exited without a report (crashed?)";
	}
	return vhu_strerror(err);
}

static void
summarize(struct bench_result *res, const struct rec *reps, unsigned int n,
	  const struct rec *srv)
{
	double rate[BENCH_MAX_REPS], lat[BENCH_MAX_REPS];
	uint64_t cpu = 0, msgs = 0;

	if (n == 0 || n > BENCH_MAX_REPS) {
		return;
	}
	for (unsigned int i = 0; i < n; i++) {
		rate[i] = reps[i].elapsed_ns ? (double)reps[i].msgs * 1e9 /
					       (double)reps[i].elapsed_ns : 0.0;
		cpu += reps[i].cpu_ns;
		msgs += reps[i].msgs;
	}
	bench_summarize(rate, n, &res->rate);
	res->msgs = msgs;
	if (msgs) {
		res->cpu_client_ns = (double)cpu / (double)msgs;
	}
	res->has_latency = reps[0].has_latency;
	for (unsigned int i = 0; i < n; i++) {
		res->has_latency = res->has_latency && reps[i].has_latency;
	}
	for (int l = 0; res->has_latency && l < BENCH_NLAT; l++) {
		struct bench_summary s;

		for (unsigned int i = 0; i < n; i++) {
			lat[i] = (double)reps[i].pctl[l];
		}
		bench_summarize(lat, n, &s);
		res->lat_ns[l] = s.median;
	}
	if (srv->msgs) {
		res->cpu_server_ns = (double)srv->cpu_ns / (double)srv->msgs;
		if (srv->has_stats) {
			res->enters_per_msg = (double)srv->enters / (double)srv->msgs;
		}
	}
}

static void
set_status(struct bench_result *res, enum bench_status st, const char *fmt, const char *a,
	   const char *b)
{
	res->status = st;
	snprintf(res->reason, sizeof(res->reason), fmt, a, b);
}

void
bench_run_one(const struct bench_plan *plan, enum bench_scenario_id sc,
	      enum bench_transport_id tr, struct bench_result *res)
{
	const struct bench_run_info *info = plan->info;
	const struct bench_transport *t = bench_transport_get(tr);
	const char *scn = bench_scenario_names[sc], *trn = bench_transport_names[tr];
	unsigned int depth = sc == BENCH_SC_RT ? 1 : plan->depth;
	int sv[2] = { -1, -1 }, sp[2] = { -1, -1 }, cp[2] = { -1, -1 };
	pid_t spid = -1, cpid = -1, parent = getpid();
	struct rec *reps = NULL, srv, r;
	unsigned int nreps = 0;
	bool kill_srv = false, kill_cli = false, cli_lost = false;
	char why[120] = "";
	int timeout_ms, ret, cli_ret;

	bench_result_init(res, scn, trn);
	res->depth = depth;
	if (t->busy_poll && info->cpu_client == info->cpu_server) {
		set_status(res, BENCH_UNAVAILABLE, "%s%s", "a busy-polling server needs a CPU "
			   "of its own (one CPU here, or --cpus gave the same CPU twice)", "");
		return;
	}
	/* per report: a repetition, with room for a slow machine */
	timeout_ms = info->count ? 300000 :
		     30000 + 10 * (int)(info->warmup_ms + info->duration_ms);
	reps = calloc(info->reps, sizeof(*reps));
	if (reps == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(sp, O_CLOEXEC) < 0 || pipe2(cp, O_CLOEXEC) < 0) {
		set_status(res, BENCH_FAILED, "setting up: %s%s", strerror(errno), "");
		goto out;
	}
	fflush(stdout);
	fflush(stderr);
	spid = fork();
	if (spid < 0) {
		set_status(res, BENCH_FAILED, "fork: %s%s", strerror(errno), "");
		goto out;
	}
	if (spid == 0) {
		child_init(parent);
		close(sv[0]);
		close(sp[0]);
		close(cp[0]);
		close(cp[1]);
		server_main(plan, t, depth, sv[1], sp[1]);
	}
	close(sv[1]);
	close(sp[1]);
	sv[1] = sp[1] = -1;

	ret = get(sp[0], &r, READY_TIMEOUT_MS);
	if (ret != 1 || r.kind != REC_READY || r.err < 0) {
		kill_srv = ret == -ETIMEDOUT;
		if (ret == 1 && r.err < 0) {
			set_status(res, BENCH_UNAVAILABLE, "%s%s",
				   r.detail[0] ? r.detail : vhu_strerror(r.err), "");
		} else {
			set_status(res, BENCH_FAILED, "server setup: %s%s", errtext(ret), "");
		}
		goto out;
	}
	if (plan->progress) {
		plan->progress(plan->progress_ctx, scn, trn, 0, info->reps);
	}
	cpid = fork();
	if (cpid < 0) {
		kill_srv = true;
		set_status(res, BENCH_FAILED, "fork: %s%s", strerror(errno), "");
		goto out;
	}
	if (cpid == 0) {
		child_init(parent);
		close(sp[0]);
		close(cp[0]);
		client_main(plan, t, sc, depth, sv[0], cp[1]);
	}
	close(sv[0]);
	close(cp[1]);
	sv[0] = cp[1] = -1;

	for (;;) {
		ret = get(cp[0], &r, timeout_ms);
		if (ret != 1) {
			cli_lost = true;
			kill_cli = ret == -ETIMEDOUT;
			break;
		}
		if (r.kind == REC_DONE) {
			break;
		}
		if (r.kind == REC_REP && nreps < info->reps) {
			reps[nreps++] = r;
			if (plan->progress) {
				plan->progress(plan->progress_ctx, scn, trn, nreps, info->reps);
			}
		}
	}
	/* the client has closed its end (or is being killed): the server ends now */
	if (kill_cli) {
		kill(cpid, SIGKILL);
	}
	cli_ret = ret;
	ret = get(sp[0], &srv, timeout_ms);
	if (ret != 1 || srv.kind != REC_DONE) {
		kill_srv = ret == -ETIMEDOUT;
		set_status(res, BENCH_FAILED, "server: %s%s", errtext(ret != 1 ? ret : 0),
			   cli_lost ? "; client: no report" : "");
		goto out;
	}
	if (srv.err < 0 || cli_lost || r.err < 0 || nreps != info->reps) {
		char cli[96];

		snprintf(cli, sizeof(cli), "%s", cli_lost ? errtext(cli_ret) :
			 r.err < 0 ? vhu_strerror(r.err) : "stopped early");
		res->status = BENCH_FAILED;
		snprintf(res->reason, sizeof(res->reason), "server: %s; client: %s",
			 srv.err < 0 ? (srv.detail[0] ? srv.detail : vhu_strerror(srv.err)) : "ok",
			 cli);
		goto out;
	}
	summarize(res, reps, nreps, &srv);
out:
	reap(cpid, kill_cli, "client", why, sizeof(why));
	reap(spid, kill_srv, "server", why, sizeof(why));
	if (why[0] && res->status == BENCH_OK) {
		set_status(res, BENCH_FAILED, "%s%s", why, "");
	} else if (why[0] && res->status == BENCH_FAILED) {
		size_t l = strlen(res->reason);

		snprintf(res->reason + l, sizeof(res->reason) - l, " (%s)", why);
	}
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0) {
			close(sv[i]);
		}
		if (sp[i] >= 0) {
			close(sp[i]);
		}
		if (cp[i] >= 0) {
			close(cp[i]);
		}
	}
	free(reps);
}
