/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Round trips sampled per repetition at most (8 MiB of samples). */
#define SAMPLES_CAP	(1u << 20)
/* How long the parent waits for the server to get ready. */
#define READY_TIMEOUT_MS	30000
/* An outside back-end that does not answer in this long has stalled (SO_RCVTIMEO). */
#define TARGET_TIMEOUT_S	5
/* A built-in server that does not answer or read in this long has lost something. */
#define CLIENT_TIMEOUT_S	10

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
	uint64_t allocs;
	int64_t peer_cpu_ns;	/* REP, outside back-end: its CPU time; -1 unknown */
	uint64_t pctl[BENCH_NLAT];
	int32_t has_latency;
	int32_t has_stats;
	uint64_t enters;
	uint64_t sendmsgs;
	uint64_t sent;		/* client DONE */
	uint64_t replies;	/* client DONE */
	uint64_t counters[BENCH_MAX_MSG_FDS];	/* client DONE */
	struct bench_counts k;	/* server DONE */
	char detail[160];
};

_Static_assert(sizeof(struct rec) < PIPE_BUF, "reports are written atomically");
_Static_assert(BENCH_MAX_MSG_FDS == sizeof(((struct bench_totals *)0)->counters) / sizeof(uint64_t),
	       "a counter per fd");

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

/* CPU time of every thread of pid, in ns (schedstat); -1 if it cannot be read. */
static int64_t
proc_cpu_ns(pid_t pid)
{
	char path[64];
	struct dirent *e;
	int64_t sum = 0;
	DIR *d;

	if (pid <= 0) {
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (d == NULL) {
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		unsigned long long ns;
		FILE *f;

		if (e->d_name[0] == '.') {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/schedstat", (int)pid, e->d_name);
		f = fopen(path, "re");
		if (f == NULL) {
			continue;	/* the thread is gone */
		}
		if (fscanf(f, "%llu", &ns) == 1) {
			sum += (int64_t)ns;
		}
		fclose(f);
	}
	closedir(d);
	return sum;
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

static void
close_all(int *fds, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	}
}

static void __attribute__((noreturn))
server_main(const struct bench_plan *plan, const struct bench_transport *t,
	    const struct bench_traffic *tr, int *fds, int out)
{
	struct bench_server s = { .t = t, .tr = tr, .fds = fds, .nconns = tr->nconns };
	struct rec r = { .kind = REC_READY };
	uint64_t a0;
	int ret;

	ret = pin(plan->info->cpu_server);
	if (ret < 0) {
		snprintf(r.detail, sizeof(r.detail), "pinning the server to CPU %d: %s",
			 plan->info->cpu_server, strerror(-ret));
		r.err = ret;
		put(out, &r);
		_exit(1);
	}
	ret = t->server->setup(&s);
	r.err = ret;
	snprintf(r.detail, sizeof(r.detail), "%s", s.detail);
	put(out, &r);
	if (ret < 0) {
		t->server->teardown(&s);
		_exit(1);
	}
	a0 = bench_allocs();
	ret = t->server->run(&s);
	memset(&r, 0, sizeof(r));
	r.kind = REC_DONE;
	r.err = ret;
	r.allocs = bench_allocs() - a0;
	r.cpu_ns = cpu_ns();
	r.k = s.k;
	r.has_stats = s.has_stats;
	r.enters = s.stats.enters;
	r.sendmsgs = s.stats.sendmsgs;
	snprintf(r.detail, sizeof(r.detail), "%s", s.detail);
	/* teardown before the report: a teardown that hangs is a finding too */
	t->server->teardown(&s);
	close_all(fds, tr->nconns);
	put(out, &r);
	_exit(ret < 0 ? 1 : 0);
}

static void __attribute__((noreturn))
client_main(const struct bench_plan *plan, const struct bench_transport *t,
	    const struct bench_traffic *tr, int *fds, pid_t peer, int out)
{
	const struct bench_run_info *info = plan->info;
	const struct bench_client_ops *ops = tr->sc == BENCH_SC_RT ? t->rt_client
								   : &bench_client_bulk;
	struct bench_client c = {
		.tr = tr,
		.validate = t->validate,
		.foreign = t->server == NULL,
		.fds = fds,
		.nconns = tr->nconns,
	};
	uint64_t *samples = NULL;
	size_t cap = 0;
	struct rec r;
	int ret, fin;

	ret = pin(info->cpu_client);
	if (ret < 0) {
		snprintf(c.detail, sizeof(c.detail), "pinning the client to CPU %d: %s",
			 info->cpu_client, strerror(-ret));
		goto out;
	}
	if (tr->sc == BENCH_SC_RT) {
		cap = info->count && info->count < SAMPLES_CAP ? (size_t)info->count : SAMPLES_CAP;
		samples = malloc(cap * sizeof(*samples));
		if (samples == NULL) {
			ret = -ENOMEM;
			goto out;
		}
		/* fault the pages in now, not inside the measured loop */
		memset(samples, 0, cap * sizeof(*samples));
	}
	ret = ops->open(&c);
	if (ret == 0 && info->warmup_ms) {
		struct bench_window w = {
			.deadline_ns = bench_now_ns() + (uint64_t)info->warmup_ms * 1000000u,
		};

		ret = ops->run(&c, &w);
	}
	for (unsigned int i = 0; ret == 0 && i < info->reps; i++) {
		struct bench_window w = { .count = info->count, .samples = samples, .cap = cap };
		struct bench_pctls p;
		int64_t p0 = c.foreign ? proc_cpu_ns(peer) : -1, p1;
		uint64_t a0 = bench_allocs(), c0 = cpu_ns(), t0 = bench_now_ns(), t1;

		w.deadline_ns = t0 + (uint64_t)info->duration_ms * 1000000u;
		ret = ops->run(&c, &w);
		t1 = bench_now_ns();
		memset(&r, 0, sizeof(r));
		r.kind = REC_REP;
		r.cpu_ns = cpu_ns() - c0;
		r.allocs = bench_allocs() - a0;
		p1 = c.foreign ? proc_cpu_ns(peer) : -1;
		r.peer_cpu_ns = p0 >= 0 && p1 >= p0 ? p1 - p0 : -1;
		r.elapsed_ns = t1 - t0;
		r.msgs = w.msgs;
		if (ret == 0 && bench_latency_pctls(samples, w.nsamples, &p) == 0) {
			r.has_latency = 1;
			r.pctl[BENCH_P50] = p.p50;
			r.pctl[BENCH_P90] = p.p90;
			r.pctl[BENCH_P99] = p.p99;
			r.pctl[BENCH_P999] = p.p999;
		}
		if (ret == 0) {
			put(out, &r);
		}
	}
	fin = ops->finish(&c);
	if (ret == 0) {
		ret = fin;
	}
out:
	close_all(fds, tr->nconns);
	memset(&r, 0, sizeof(r));
	r.kind = REC_DONE;
	r.err = ret;
	r.sent = c.sent;
	r.replies = c.replies;
	memcpy(r.counters, c.counters, sizeof(r.counters));
	snprintf(r.detail, sizeof(r.detail), "%s", c.detail);
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
	uint64_t cpu = 0, msgs = 0, allocs = 0, peer = 0;
	bool peer_known = true;

	if (n == 0 || n > BENCH_MAX_REPS) {
		return;
	}
	for (unsigned int i = 0; i < n; i++) {
		rate[i] = reps[i].elapsed_ns ? (double)reps[i].msgs * 1e9 /
					       (double)reps[i].elapsed_ns : 0.0;
		cpu += reps[i].cpu_ns;
		msgs += reps[i].msgs;
		allocs += reps[i].allocs;
		peer += reps[i].peer_cpu_ns >= 0 ? (uint64_t)reps[i].peer_cpu_ns : 0;
		peer_known = peer_known && reps[i].peer_cpu_ns >= 0;
	}
	bench_summarize(rate, n, &res->rate);
	res->msgs = msgs;
	if (msgs) {
		res->cpu_client_ns = (double)cpu / (double)msgs;
		if (bench_allocs_counted()) {
			res->allocs_client = (double)allocs / (double)msgs;
		}
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
	if (srv == NULL) {
		/* an outside back-end: its CPU as /proc tells it, over the measured reps */
		if (peer_known && msgs) {
			res->cpu_server_ns = (double)peer / (double)msgs;
		}
		return;
	}
	if (srv->k.msgs) {
		res->cpu_server_ns = (double)srv->cpu_ns / (double)srv->k.msgs;
		if (bench_allocs_counted()) {
			res->allocs_server = (double)srv->allocs / (double)srv->k.msgs;
		}
		if (srv->has_stats) {
			res->enters_per_msg = (double)srv->enters / (double)srv->k.msgs;
			res->sendmsgs_per_msg = (double)srv->sendmsgs / (double)srv->k.msgs;
		}
	}
}

static void __attribute__((format(printf, 3, 4)))
set_status(struct bench_result *res, enum bench_status st, const char *fmt, ...)
{
	va_list ap;

	res->status = st;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
}

/* What an outside back-end cannot be sent; NULL if the case is fine. */
static const char *
foreign_refusal(const struct bench_traffic *tr)
{
	if (tr->sc == BENCH_SC_ONEWAY) {
		return "oneway streams SET_OWNER/SET_CONFIG, which change an outside "
		       "back-end's state; only vhu-bench's own servers take it";
	}
	if (tr->sc == BENCH_SC_FDS && tr->nfds != 1) {
		return "fds above 1 sends SET_MEM_TABLE with made-up regions, which a real "
		       "back-end would try to map; only vhu-bench's own servers take it";
	}
	return NULL;
}

/* Connect every client socket to an outside back-end; its pid into *peer. */
static int
connect_target(const struct bench_transport *t, unsigned int n, int *cfd, pid_t *peer,
	       struct bench_result *res)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = TARGET_TIMEOUT_S };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", t->path);
	for (unsigned int i = 0; i < n; i++) {
		struct ucred cred;
		socklen_t len = sizeof(cred);

		cfd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (cfd[i] < 0 || connect(cfd[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			set_status(res, i ? BENCH_FAILED : BENCH_UNAVAILABLE,
				   "connecting to %s (connection %u): %s", t->path, i + 1,
				   strerror(errno));
			return -1;
		}
		setsockopt(cfd[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (i == 0 && getsockopt(cfd[i], SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			*peer = cred.pid;
		}
	}
	return 0;
}

void
bench_run_one(const struct bench_plan *plan, const struct bench_case *cs,
	      const struct bench_transport *t, struct bench_result *res)
{
	const struct bench_run_info *info = plan->info;
	const char *scn = bench_scenario_names[cs->sc];
	struct bench_traffic *tr = NULL;
	int *cfd = NULL, *sfd = NULL, sp[2] = { -1, -1 }, cp[2] = { -1, -1 };
	pid_t spid = -1, cpid = -1, peer = -1, parent = getpid();
	struct rec *reps = NULL, srv = { 0 }, r;
	unsigned int nreps = 0, nconns;
	bool kill_srv = false, kill_cli = false, cli_lost = false;
	char why[120] = "";
	const char *no;
	int timeout_ms, ret, cli_ret;

	bench_result_init(res, scn, t->name);
	snprintf(res->label, sizeof(res->label), "%s", cs->label);
	res->param = cs->param;
	tr = malloc(sizeof(*tr));
	if (tr == NULL) {
		set_status(res, BENCH_FAILED, "out of memory");
		return;
	}
	bench_traffic_init(tr, cs->sc, cs->param, plan->depth);
	nconns = tr->nconns;
	res->depth = tr->depth * nconns;
	res->conns = nconns;
	res->msg_bytes = tr->msg_len;
	if (t->busy_poll && info->cpu_client == info->cpu_server) {
		set_status(res, BENCH_UNAVAILABLE, "a busy-polling server needs a CPU of its own "
			   "(one CPU here, or --cpus gave the same CPU twice)");
		goto out;
	}
	no = t->server ? NULL : foreign_refusal(tr);
	if (no) {
		set_status(res, BENCH_UNAVAILABLE, "%s", no);
		goto out;
	}
	/* per report: a repetition, with room for a slow machine (>= 10 messages/s) */
	{
		uint64_t ms = info->count ? 30000 + info->count * 100 :
			      30000 + 10 * (uint64_t)(info->warmup_ms + info->duration_ms);

		timeout_ms = ms > INT_MAX ? INT_MAX : (int)ms;
	}
	reps = calloc(info->reps, sizeof(*reps));
	cfd = malloc(nconns * sizeof(int));
	sfd = malloc(nconns * sizeof(int));
	if (reps == NULL || cfd == NULL || sfd == NULL) {
		set_status(res, BENCH_FAILED, "out of memory");
		goto out;
	}
	for (unsigned int i = 0; i < nconns; i++) {
		cfd[i] = sfd[i] = -1;
	}
	if (pipe2(sp, O_CLOEXEC) < 0 || pipe2(cp, O_CLOEXEC) < 0) {
		set_status(res, BENCH_FAILED, "pipe: %s", strerror(errno));
		goto out;
	}
	if (t->server == NULL) {
		if (connect_target(t, nconns, cfd, &peer, res) < 0) {
			goto out;
		}
	} else {
		struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };

		for (unsigned int i = 0; i < nconns; i++) {
			int sv[2];

			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
				set_status(res, BENCH_FAILED, "socketpair: %s", strerror(errno));
				goto out;
			}
			cfd[i] = sv[0];
			sfd[i] = sv[1];
			/* a server that stops answering (or reading) is an error, not a hang */
			setsockopt(cfd[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			setsockopt(cfd[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		}
	}
	fflush(stdout);
	fflush(stderr);
	if (t->server) {
		spid = fork();
		if (spid < 0) {
			set_status(res, BENCH_FAILED, "fork: %s", strerror(errno));
			goto out;
		}
		if (spid == 0) {
			child_init(parent);
			close_all(cfd, nconns);
			close(sp[0]);
			close(cp[0]);
			close(cp[1]);
			server_main(plan, t, tr, sfd, sp[1]);
		}
		close_all(sfd, nconns);
		ret = get(sp[0], &r, READY_TIMEOUT_MS);
		if (ret != 1 || r.kind != REC_READY || r.err < 0) {
			kill_srv = ret == -ETIMEDOUT;
			if (ret == 1 && r.err < 0) {
				set_status(res, BENCH_UNAVAILABLE, "%s",
					   r.detail[0] ? r.detail : vhu_strerror(r.err));
			} else {
				set_status(res, BENCH_FAILED, "server setup: %s", errtext(ret));
			}
			goto out;
		}
	}
	close(sp[1]);
	sp[1] = -1;
	if (plan->progress) {
		plan->progress(plan->progress_ctx, cs->label, t->name, 0, info->reps);
	}
	cpid = fork();
	if (cpid < 0) {
		kill_srv = true;
		set_status(res, BENCH_FAILED, "fork: %s", strerror(errno));
		goto out;
	}
	if (cpid == 0) {
		child_init(parent);
		close(sp[0]);
		close(cp[0]);
		client_main(plan, t, tr, cfd, peer, cp[1]);
	}
	close_all(cfd, nconns);
	close(cp[1]);
	cp[1] = -1;

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
				plan->progress(plan->progress_ctx, cs->label, t->name, nreps,
					       info->reps);
			}
		}
	}
	/* the client has closed its end (or is being killed): the server ends now */
	if (kill_cli) {
		kill(cpid, SIGKILL);
	}
	cli_ret = ret;
	if (t->server) {
		ret = get(sp[0], &srv, timeout_ms);
		if (ret != 1 || srv.kind != REC_DONE) {
			kill_srv = ret == -ETIMEDOUT;
			set_status(res, BENCH_FAILED, "server: %s%s", errtext(ret != 1 ? ret : 0),
				   cli_lost ? "; client: no report" : "");
			goto out;
		}
	}
	if (!cli_lost && r.err == -EOPNOTSUPP) {
		set_status(res, BENCH_UNAVAILABLE, "%s", r.detail);
		goto out;
	}
	if ((t->server && srv.err < 0) || cli_lost || r.err < 0 || nreps != info->reps) {
		char cli[200];

		if (cli_lost) {
			snprintf(cli, sizeof(cli), "%s", errtext(cli_ret));
		} else if (r.err < 0) {
			snprintf(cli, sizeof(cli), "%s", r.detail[0] ? r.detail : vhu_strerror(r.err));
		} else {
			snprintf(cli, sizeof(cli), "%s", nreps != info->reps ? "stopped early" : "ok");
		}
		if (t->server) {
			set_status(res, BENCH_FAILED, "server: %s; client: %s",
				   srv.err < 0 ? (srv.detail[0] ? srv.detail : vhu_strerror(srv.err))
					       : "ok", cli);
		} else {
			set_status(res, BENCH_FAILED, "%s", cli);
		}
		goto out;
	}
	{
		struct bench_totals tot = {
			.sent = r.sent,
			.replies = r.replies,
			.want_replies = tr->depth > 0,
			.nfds = tr->nfds,
			.has_server = t->server != NULL,
			.srv_msgs = srv.k.msgs,
			.srv_fds = srv.k.fds,
			.srv_probes = srv.k.probes,
		};

		memcpy(tot.counters, r.counters, sizeof(tot.counters));
		bench_check_totals(res, &tot);
	}
	if (res->status == BENCH_OK) {
		summarize(res, reps, nreps, t->server ? &srv : NULL);
	}
out:
	reap(cpid, kill_cli, "client", why, sizeof(why));
	reap(spid, kill_srv, "server", why, sizeof(why));
	if (why[0] && res->status == BENCH_OK) {
		set_status(res, BENCH_FAILED, "%s", why);
	} else if (why[0] && res->status == BENCH_FAILED) {
		size_t l = strlen(res->reason);

		snprintf(res->reason + l, sizeof(res->reason) - l, " (%s)", why);
	}
	if (cfd) {
		close_all(cfd, nconns);
	}
	if (sfd) {
		close_all(sfd, nconns);
	}
	for (int i = 0; i < 2; i++) {
		if (sp[i] >= 0) {
			close(sp[i]);
		}
		if (cp[i] >= 0) {
			close(cp[i]);
		}
	}
	free(cfd);
	free(sfd);
	free(reps);
	free(tr);
}
