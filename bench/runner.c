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

#include "common/sock.h"

/* Round trips sampled per repetition at most (8 MiB of samples). */
#define SAMPLES_CAP	(1u << 20)
/* How long the parent waits for the server to get ready. */
#define READY_TIMEOUT_MS	30000
/* An outside back-end that does not answer in this long has stalled (SO_RCVTIMEO). */
#define TARGET_TIMEOUT_S	5
/*
 * A connect to an outside back-end that is not accepted in this long: its
 * backlog is full (one that serves a front-end at a time, busy with ours).
 */
#define TARGET_CONNECT_MS	2000
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

/*
 * Connect every client socket to an outside back-end; its pid into *peer.
 * Each connect has a deadline: a back-end that serves fewer connections at
 * once leaves the later ones in (or out of) its backlog, which is the
 * case being unavailable, not a hang.
 */
static int
connect_target(const struct bench_transport *t, unsigned int n, int *cfd, pid_t *peer,
	       struct bench_result *res)
{
	struct timeval tv = { .tv_sec = TARGET_TIMEOUT_S };

	for (unsigned int i = 0; i < n; i++) {
		struct vhu_endpoint *ep;
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int rc = vhu_endpoint_connect_timeout(t->path, NULL, TARGET_CONNECT_MS, &ep);

		if (rc == 0) {
			cfd[i] = fcntl(vhu_endpoint_fd(ep), F_DUPFD_CLOEXEC, 0);
			rc = cfd[i] < 0 ? -errno : 0;
			vhu_endpoint_destroy(ep);
		}
		if (rc == -ETIMEDOUT && i > 0) {
			set_status(res, BENCH_UNAVAILABLE, "the back-end serves fewer connections at "
				   "once: connection %u of %u was not accepted within %d ms", i + 1,
				   n, TARGET_CONNECT_MS);
			return -1;
		}
		if (rc < 0) {
			char why[300];

			tool_connect_why(t->path, rc, TARGET_CONNECT_MS, why, sizeof(why));
			set_status(res, rc == -ETIMEDOUT ? BENCH_UNAVAILABLE : BENCH_FAILED,
				   "connection %u: %s", i + 1, why);
			res->connect_failed = rc != -ETIMEDOUT;
			return -1;
		}
		setsockopt(cfd[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(cfd[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (i == 0 && getsockopt(cfd[i], SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			*peer = cred.pid;
		}
	}
	return 0;
}

/* One case on one transport, from set-up to verdict; the phases below share it. */
struct run {
	const struct bench_plan *plan;
	const struct bench_case *cs;
	const struct bench_transport *t;
	const struct bench_run_info *info;
	struct bench_result *res;
	struct bench_traffic *tr;
	unsigned int nconns;
	int *cfd, *sfd;		/* client and server ends of each connection */
	int sp[2], cp[2];	/* report pipes of the server and the client */
	pid_t spid, cpid, peer, parent;
	struct rec *reps;	/* the client's REP records */
	unsigned int nreps;
	struct rec srv;		/* the server's DONE record */
	struct rec r;		/* the client's last record (DONE, or where it stopped) */
	int cli_ret;		/* how reading the client's reports ended */
	int timeout_ms;		/* per report */
	bool kill_srv, kill_cli, cli_lost;
};

/* Set-up: the result's identity, the traffic, whether the case can run here, buffers, pipes. */
static int
run_setup(struct run *rn)
{
	const struct bench_run_info *info = rn->info;
	const struct bench_transport *t = rn->t;
	struct bench_result *res = rn->res;
	const char *no;
	uint64_t ms;

	bench_result_init(res, bench_scenario_names[rn->cs->sc], t->name);
	snprintf(res->label, sizeof(res->label), "%s", rn->cs->label);
	res->param = rn->cs->param;
	rn->tr = malloc(sizeof(*rn->tr));
	if (rn->tr == NULL) {
		set_status(res, BENCH_FAILED, "out of memory");
		return -1;
	}
	bench_traffic_init(rn->tr, rn->cs->sc, rn->cs->param, rn->plan->depth);
	rn->nconns = rn->tr->nconns;
	res->depth = rn->tr->depth * rn->nconns;
	res->conns = rn->nconns;
	res->msg_bytes = rn->tr->msg_len;
	if (t->busy_poll && info->cpu_client == info->cpu_server) {
		set_status(res, BENCH_UNAVAILABLE, "a busy-polling server needs a CPU of its own "
			   "(one CPU here, or --cpus gave the same CPU twice)");
		return -1;
	}
	no = t->server ? NULL : foreign_refusal(rn->tr);
	if (no) {
		set_status(res, BENCH_UNAVAILABLE, "%s", no);
		return -1;
	}
	/* per report: a repetition, with room for a slow machine (>= 10 messages/s) */
	ms = info->count ? 30000 + info->count * 100 :
	     30000 + 10 * (uint64_t)(info->warmup_ms + info->duration_ms);
	rn->timeout_ms = ms > INT_MAX ? INT_MAX : (int)ms;
	rn->reps = calloc(info->reps, sizeof(*rn->reps));
	rn->cfd = malloc(rn->nconns * sizeof(int));
	rn->sfd = malloc(rn->nconns * sizeof(int));
	if (rn->reps == NULL || rn->cfd == NULL || rn->sfd == NULL) {
		set_status(res, BENCH_FAILED, "out of memory");
		return -1;
	}
	for (unsigned int i = 0; i < rn->nconns; i++) {
		rn->cfd[i] = rn->sfd[i] = -1;
	}
	if (pipe2(rn->sp, O_CLOEXEC) < 0 || pipe2(rn->cp, O_CLOEXEC) < 0) {
		set_status(res, BENCH_FAILED, "pipe: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* The connections: to the --connect target, or socketpairs to our own server. */
static int
run_connect(struct run *rn)
{
	struct timeval tv = { .tv_sec = CLIENT_TIMEOUT_S };

	if (rn->t->server == NULL) {
		return connect_target(rn->t, rn->nconns, rn->cfd, &rn->peer, rn->res);
	}
	for (unsigned int i = 0; i < rn->nconns; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			set_status(rn->res, BENCH_FAILED, "socketpair: %s", strerror(errno));
			return -1;
		}
		rn->cfd[i] = sv[0];
		rn->sfd[i] = sv[1];
		/* a server that stops answering (or reading) is an error, not a hang */
		setsockopt(rn->cfd[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(rn->cfd[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return 0;
}

/* Spawn our server (if the transport has one) and wait for its READY. */
static int
run_spawn_server(struct run *rn)
{
	struct rec r;
	int ret;

	fflush(stdout);
	fflush(stderr);
	if (rn->t->server == NULL) {
		return 0;
	}
	rn->spid = fork();
	if (rn->spid < 0) {
		set_status(rn->res, BENCH_FAILED, "fork: %s", strerror(errno));
		return -1;
	}
	if (rn->spid == 0) {
		child_init(rn->parent);
		close_all(rn->cfd, rn->nconns);
		close(rn->sp[0]);
		close(rn->cp[0]);
		close(rn->cp[1]);
		server_main(rn->plan, rn->t, rn->tr, rn->sfd, rn->sp[1]);
	}
	close_all(rn->sfd, rn->nconns);
	ret = get(rn->sp[0], &r, READY_TIMEOUT_MS);
	if (ret != 1 || r.kind != REC_READY || r.err < 0) {
		rn->kill_srv = ret == -ETIMEDOUT;
		if (ret == 1 && r.err < 0) {
			set_status(rn->res, BENCH_UNAVAILABLE, "%s",
				   r.detail[0] ? r.detail : vhu_strerror(r.err));
		} else {
			set_status(rn->res, BENCH_FAILED, "server setup: %s", errtext(ret));
		}
		return -1;
	}
	return 0;
}

/* Spawn the client; from here it runs the repetitions. */
static int
run_spawn_client(struct run *rn)
{
	close(rn->sp[1]);
	rn->sp[1] = -1;
	if (rn->plan->progress) {
		rn->plan->progress(rn->plan->progress_ctx, rn->cs->label, rn->t->name, 0,
				   rn->info->reps);
	}
	rn->cpid = fork();
	if (rn->cpid < 0) {
		rn->kill_srv = true;
		set_status(rn->res, BENCH_FAILED, "fork: %s", strerror(errno));
		return -1;
	}
	if (rn->cpid == 0) {
		child_init(rn->parent);
		close(rn->sp[0]);
		close(rn->cp[0]);
		client_main(rn->plan, rn->t, rn->tr, rn->cfd, rn->peer, rn->cp[1]);
	}
	close_all(rn->cfd, rn->nconns);
	close(rn->cp[1]);
	rn->cp[1] = -1;
	return 0;
}

/* Collect: the client's REP records up to its DONE, then the server's DONE. */
static int
run_collect(struct run *rn)
{
	int ret;

	for (;;) {
		ret = get(rn->cp[0], &rn->r, rn->timeout_ms);
		if (ret != 1) {
			rn->cli_lost = true;
			rn->kill_cli = ret == -ETIMEDOUT;
			break;
		}
		if (rn->r.kind == REC_DONE) {
			break;
		}
		if (rn->r.kind == REC_REP && rn->nreps < rn->info->reps) {
			rn->reps[rn->nreps++] = rn->r;
			if (rn->plan->progress) {
				rn->plan->progress(rn->plan->progress_ctx, rn->cs->label,
						   rn->t->name, rn->nreps, rn->info->reps);
			}
		}
	}
	/* the client has closed its end (or is being killed): the server ends now */
	if (rn->kill_cli) {
		kill(rn->cpid, SIGKILL);
	}
	rn->cli_ret = ret;
	if (rn->t->server) {
		ret = get(rn->sp[0], &rn->srv, rn->timeout_ms);
		if (ret != 1 || rn->srv.kind != REC_DONE) {
			rn->kill_srv = ret == -ETIMEDOUT;
			set_status(rn->res, BENCH_FAILED, "server: %s%s",
				   errtext(ret != 1 ? ret : 0),
				   rn->cli_lost ? "; client: no report" : "");
			return -1;
		}
	}
	return 0;
}

/* Judge: a side that failed or stopped early, then the totals, then the statistics. */
static void
run_judge(struct run *rn)
{
	const struct bench_transport *t = rn->t;
	const struct rec *r = &rn->r, *srv = &rn->srv;
	struct bench_result *res = rn->res;

	if (!rn->cli_lost && r->err == -EOPNOTSUPP) {
		set_status(res, BENCH_UNAVAILABLE, "%s", r->detail);
		return;
	}
	if ((t->server && srv->err < 0) || rn->cli_lost || r->err < 0 ||
	    rn->nreps != rn->info->reps) {
		char cli[200];

		if (rn->cli_lost) {
			snprintf(cli, sizeof(cli), "%s", errtext(rn->cli_ret));
		} else if (r->err < 0) {
			snprintf(cli, sizeof(cli), "%s", r->detail[0] ? r->detail : vhu_strerror(r->err));
		} else {
			snprintf(cli, sizeof(cli), "%s",
				 rn->nreps != rn->info->reps ? "stopped early" : "ok");
		}
		if (t->server) {
			set_status(res, BENCH_FAILED, "server: %s; client: %s",
				   srv->err < 0 ? (srv->detail[0] ? srv->detail : vhu_strerror(srv->err))
						: "ok", cli);
		} else {
			set_status(res, BENCH_FAILED, "%s", cli);
		}
		return;
	}
	{
		struct bench_totals tot = {
			.sent = r->sent,
			.replies = r->replies,
			.want_replies = rn->tr->depth > 0,
			.nfds = rn->tr->nfds,
			.has_server = t->server != NULL,
			.srv_msgs = srv->k.msgs,
			.srv_fds = srv->k.fds,
			.srv_probes = srv->k.probes,
		};

		memcpy(tot.counters, r->counters, sizeof(tot.counters));
		bench_check_totals(res, &tot);
	}
	if (res->status == BENCH_OK) {
		summarize(res, rn->reps, rn->nreps, t->server ? srv : NULL);
	}
}

/* Tear-down: reap both children (a lost one is killed), name why a reap failed, free. */
static void
run_teardown(struct run *rn)
{
	struct bench_result *res = rn->res;
	char why[120] = "";

	reap(rn->cpid, rn->kill_cli, "client", why, sizeof(why));
	reap(rn->spid, rn->kill_srv, "server", why, sizeof(why));
	if (why[0] && res->status == BENCH_OK) {
		set_status(res, BENCH_FAILED, "%s", why);
	} else if (why[0] && res->status == BENCH_FAILED) {
		size_t l = strlen(res->reason);

		snprintf(res->reason + l, sizeof(res->reason) - l, " (%s)", why);
	}
	if (rn->cfd) {
		close_all(rn->cfd, rn->nconns);
	}
	if (rn->sfd) {
		close_all(rn->sfd, rn->nconns);
	}
	for (int i = 0; i < 2; i++) {
		if (rn->sp[i] >= 0) {
			close(rn->sp[i]);
		}
		if (rn->cp[i] >= 0) {
			close(rn->cp[i]);
		}
	}
	free(rn->cfd);
	free(rn->sfd);
	free(rn->reps);
	free(rn->tr);
}

void
bench_run_one(const struct bench_plan *plan, const struct bench_case *cs,
	      const struct bench_transport *t, struct bench_result *res)
{
	struct run rn = {
		.plan = plan, .cs = cs, .t = t, .info = plan->info, .res = res,
		.sp = { -1, -1 }, .cp = { -1, -1 },
		.spid = -1, .cpid = -1, .peer = -1, .parent = getpid(),
	};

	if (run_setup(&rn) == 0 && run_connect(&rn) == 0 && run_spawn_server(&rn) == 0 &&
	    run_spawn_client(&rn) == 0 && run_collect(&rn) == 0) {
		run_judge(&rn);
	}
	run_teardown(&rn);
}
