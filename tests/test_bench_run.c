/* SPDX-License-Identifier: MIT */
/*
 * vhu-bench run as a user runs it, with message counts instead of
 * durations so that nothing here depends on time: every scenario and
 * transport must finish with nothing lost (the harness's own end-of-case
 * checks), the fds case must have checked its fds, the engine must not
 * allocate per message, and --connect / --listen must work against
 * qemu-storage-daemon, virtiofsd, vhu-bench itself and a broken back-end.
 * No figure is asserted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define BENCH	"../bench/vhu-bench"
#define OUT_CAP	(256 * 1024)

TestSuite(bench_run, .init = t_setup, .fini = t_teardown, .timeout = 120);

struct run {
	char out[OUT_CAP];
	char err[16384];
	int status;	/* exit status */
};

/* Run vhu-bench to the end with args (NULL-terminated). */
static void
run_bench(struct run *r, const char *const args[])
{
	struct t_proc p = T_PROC_INIT;
	size_t olen = 0, elen = 0;
	int st;

	r->out[0] = r->err[0] = 0;
	t_proc_spawn(&p, BENCH, args, false);
	t_proc_drain(&p, r->out, sizeof(r->out), &olen, r->err, sizeof(r->err), &elen);
	st = t_proc_stop(&p, 0);
	cr_assert(WIFEXITED(st), "vhu-bench did not exit normally (status %#x)\n%s", st, r->err);
	r->status = WEXITSTATUS(st);
}

/* The raw text of key's value in a JSON line (static buffer), or NULL. */
static const char *
jraw(const char *line, const char *key)
{
	static char val[400];
	char pat[64];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(line, pat);
	if (p == NULL) {
		return NULL;
	}
	p += strlen(pat);
	if (*p == '"') {
		end = p + 1;
		while (*end && *end != '"') {
			end += *end == '\\' ? 2 : 1;
		}
		snprintf(val, sizeof(val), "%.*s", (int)(end - p - 1), p + 1);
	} else {
		end = p + strcspn(p, ",}");
		snprintf(val, sizeof(val), "%.*s", (int)(end - p), p);
	}
	return val;
}

static double
jnum(const char *line, const char *key)
{
	const char *v = jraw(line, key);

	cr_assert_not_null(v, "no %s in %s", key, line);
	return strcmp(v, "null") == 0 ? NAN : strtod(v, NULL);
}

static const char *
jstr(const char *line, const char *key)
{
	const char *v = jraw(line, key);

	cr_assert_not_null(v, "no %s in %s", key, line);
	return v;
}

/* The JSON line of case x transport (static buffer); fails if absent. */
static const char *
line_of(const struct run *r, const char *label, const char *transport)
{
	static char line[4096];
	const char *p = r->out;

	while (*p) {
		size_t len = strcspn(p, "\n");

		snprintf(line, sizeof(line), "%.*s", (int)len, p);
		cr_assert_not_null(t_json_end(line), "not one JSON value: %s", line);
		if (strcmp(jstr(line, "case"), label) == 0 &&
		    strcmp(jstr(line, "transport"), transport) == 0) {
			return line;
		}
		p += len + (p[len] == '\n');
	}
	cr_assert_fail("no line for %s x %s in:\n%s", label, transport, r->out);
	return NULL;
}

static int
count_lines(const struct run *r)
{
	int n = 0;

	for (const char *p = r->out; *p; p++) {
		n += *p == '\n';
	}
	return n;
}

static bool
ok_or_no_cpu(const char *line)
{
	const char *st = jstr(line, "status");

	if (strcmp(st, "ok") == 0) {
		return true;
	}
	/* a busy-polling server needs a CPU of its own; fine where there is one CPU */
	return strcmp(st, "unavailable") == 0 && strstr(jstr(line, "reason"), "CPU of its own");
}

static const char *const all_transports[] = {
	"blocking", "uring-exact", "uring-stream", "uring-exact+spin", "uring-stream+spin",
	"uring-exact+poll", "uring-stream+poll",
	"raw", "raw+poll",
};
#define NTR (sizeof(all_transports) / sizeof(all_transports[0]))

static void
assert_all_ok(const struct run *r, const char *const labels[], size_t nlabels)
{
	for (size_t c = 0; c < nlabels; c++) {
		for (size_t t = 0; t < NTR; t++) {
			const char *l = line_of(r, labels[c], all_transports[t]);
			double allocs = jnum(l, "allocs_server_per_msg");

			cr_assert(ok_or_no_cpu(l), "%s x %s: %s", labels[c], all_transports[t], l);
			if (strcmp(jstr(l, "status"), "ok") != 0) {
				continue;
			}
			cr_assert_gt(jnum(l, "msgs"), 0, "%s", l);
			/* null under a sanitizer, which has its own allocator */
			cr_assert(isnan(allocs) || allocs == 0.0,
				  "the server allocated per message: %s", l);
		}
	}
}

Test(bench_run, throughput_scenarios_lose_nothing)
{
	static const char *const labels[] = {
		"rt", "pipe", "oneway/0", "oneway/4096", "conns/1", "conns/16",
	};
	static struct run r;
	const char *args[] = { "--json", "-n", "300", "-r", "2", "--warmup", "0",
			       "--scenario", "rt,pipe,oneway,conns", "--sizes", "0,4096",
			       "--conns", "1,16", "--depth", "32", NULL };

	run_bench(&r, args);
	cr_assert_eq(r.status, 0, "exit status %d\n%s\n%s", r.status, r.out, r.err);
	cr_assert_eq(count_lines(&r), 6 * NTR, "a line per case x transport:\n%s", r.out);
	assert_all_ok(&r, labels, 6);
	cr_assert_eq(jnum(line_of(&r, "conns/16", "uring-stream"), "conns"), 16);
	cr_assert_eq(jnum(line_of(&r, "oneway/4096", "blocking"), "msg_bytes"), 12 + 12 + 4096);
	cr_assert(isfinite(jnum(line_of(&r, "oneway/4096", "uring-stream"), "mb_per_s")));
	cr_assert(!isnan(jnum(line_of(&r, "rt", "uring-exact"), "lat_p50_ns")));
}

Test(bench_run, fds_arrive_and_are_the_files_sent)
{
	static const char *const labels[] = { "fds/1", "fds/8" };
	static struct run r;
	const char *args[] = { "--json", "-n", "200", "-r", "2", "--warmup", "0",
			       "--scenario", "fds", NULL };

	run_bench(&r, args);
	cr_assert_eq(r.status, 0, "exit status %d\n%s\n%s", r.status, r.out, r.err);
	assert_all_ok(&r, labels, 2);
	for (size_t t = 0; t < NTR; t++) {
		const char *l = line_of(&r, "fds/8", all_transports[t]);

		if (strcmp(jstr(l, "status"), "ok") == 0) {
			/* every request sent carried 8 fds, and all of them arrived */
			cr_assert_geq(jnum(l, "fds_checked"), 8 * 400, "%s", l);
		}
	}
}

Test(bench_run, table_and_plot)
{
	static struct run r;
	char png[256], head[8] = { 0 };
	FILE *f;
	const char *args[] = { "-n", "200", "-r", "2", "--warmup", "0", "--scenario", "rt,fds",
			       "--fds", "1", "--transport", "uring-stream", "--plot", png, NULL };

	snprintf(png, sizeof(png), "%s", t_path("bench.png"));
	run_bench(&r, args);
	if (access("/usr/bin/gnuplot", X_OK) != 0) {
		cr_assert_eq(r.status, 1, "no gnuplot: the plot fails, the figures stand");
		cr_assert(strstr(r.err, "gnuplot"), "%s", r.err);
		return;
	}
	cr_assert_eq(r.status, 0, "%s\n%s", r.out, r.err);
	cr_assert(strstr(r.out, "client on CPU") || strstr(r.out, "share CPU"), "%s", r.out);
	cr_assert(strstr(r.out, "\nfds/1: SET_VRING_CALL with 1 fd"), "%s", r.out);
	cr_assert(strstr(r.out, "\nuring-stream "), "%s", r.out);
	cr_assert(strstr(r.out, "  vs blocking "), "%s", r.out);
	f = fopen(png, "rb");
	cr_assert_not_null(f, "no %s", png);
	cr_assert_eq(fread(head, 1, 4, f), 4);
	fclose(f);
	cr_assert_arr_eq(head, "\x89PNG", 4, "a PNG file");
	unlink(png);
}

Test(bench_run, connect_to_qemu_storage_daemon)
{
	static struct run r;
	struct t_peer qsd;
	char target[160];
	const char *args[] = { "--json", "-n", "300", "-r", "2", "--warmup", "0",
			       "--no-baselines", "--scenario", "rt,pipe,oneway,fds,conns",
			       "--sizes", "64", "--fds", "1,8", "--conns", "1", "--connect",
			       target, NULL };
	const char *l;

	t_peer_start_qsd(&qsd);
	snprintf(target, sizeof(target), "qsd=%s", qsd.path);
	run_bench(&r, args);
	t_peer_stop(&qsd);
	cr_assert_eq(r.status, 0, "exit status %d\n%s\n%s", r.status, r.out, r.err);
	cr_assert_eq(count_lines(&r), 6, "only the target runs:\n%s", r.out);
	for (int i = 0; i < 4; i++) {
		static const char *const labels[] = { "rt", "pipe", "fds/1", "conns/1" };

		l = line_of(&r, labels[i], "qsd");
		cr_assert_str_eq(jstr(l, "status"), "ok", "%s", l);
		cr_assert_gt(jnum(l, "msgs"), 0);
		/* its CPU time is read from /proc (same user) */
		cr_assert(isfinite(jnum(l, "cpu_server_ns_per_msg")), "%s", l);
		cr_assert_eq(jnum(l, "fds_checked"), 0, "nobody can check a foreign server's fds");
	}
	l = line_of(&r, "oneway/64", "qsd");
	cr_assert_str_eq(jstr(l, "status"), "unavailable");
	cr_assert(strstr(jstr(l, "reason"), "state"), "%s", l);
	l = line_of(&r, "fds/8", "qsd");
	cr_assert_str_eq(jstr(l, "status"), "unavailable");
	cr_assert(strstr(jstr(l, "reason"), "SET_MEM_TABLE"), "%s", l);
}

Test(bench_run, connect_to_virtiofsd)
{
	static struct run r;
	struct t_peer vfs;
	char target[160];
	const char *args[] = { "--json", "-n", "300", "-r", "2", "--warmup", "0",
			       "--scenario", "rt", "--transport", "uring-exact", "--connect",
			       target, NULL };
	const char *l;

	t_peer_start_virtiofsd(&vfs);
	snprintf(target, sizeof(target), "virtiofsd=%s", vfs.path);
	run_bench(&r, args);
	t_peer_stop(&vfs);
	cr_assert_eq(r.status, 0, "exit status %d\n%s\n%s", r.status, r.out, r.err);
	l = line_of(&r, "rt", "virtiofsd");
	cr_assert_str_eq(jstr(l, "status"), "ok", "%s", l);
	cr_assert(isfinite(jnum(l, "rate_vs_blocking")), "compared with the run's own baseline");
	cr_assert(isfinite(jnum(l, "lat_p99_ns")), "%s", l);
	line_of(&r, "rt", "uring-exact");
}

/* A --connect path that does not exist is an error before anything runs (exit 3). */
Test(bench_run, an_absent_target_is_an_error)
{
	static struct run r;
	const char *args[] = { "--json", "-n", "10", "-r", "1", "--warmup", "0", "--no-baselines",
			       "--scenario", "rt", "--connect", "/nonexistent/vhost.sock", NULL };

	run_bench(&r, args);
	cr_assert_eq(r.status, 3, "cannot connect: exit 3, not %d: %s", r.status, r.err);
	cr_assert_eq(r.out[0], 0, "nothing measured: %s", r.out);
	cr_assert(strstr(r.err, "vhu-bench: --connect connect:1: cannot connect to "
		  "/nonexistent/vhost.sock: no such socket"), "%s", r.err);
}

/*
 * A broken back-end: answers every GET_FEATURES with a GET_PROTOCOL_FEATURES
 * reply. vhu-bench must fail the case and say what was wrong.
 */
static pid_t
start_liar(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	pid_t pid;

	cr_assert_geq(lfd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 8), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint8_t req[12], rep[20] = { 15, 0, 0, 0, 5, 0, 0, 0, 8 };
		int fd = accept(lfd, NULL, NULL);

		while (fd >= 0 && recv(fd, req, sizeof(req), MSG_WAITALL) == (ssize_t)sizeof(req)) {
			if (send(fd, rep, sizeof(rep), MSG_NOSIGNAL) != (ssize_t)sizeof(rep)) {
				break;
			}
		}
		_exit(0);
	}
	close(lfd);
	return pid;
}

Test(bench_run, a_wrong_reply_fails_the_case_and_names_it)
{
	static struct run r;
	char target[160];
	const char *args[] = { "--json", "-n", "50", "-r", "1", "--warmup", "0", "--no-baselines",
			       "--scenario", "pipe", "--connect", target, NULL };
	const char *l;
	pid_t liar;
	int st;

	snprintf(target, sizeof(target), "liar=%s", t_path("liar.sock"));
	liar = start_liar(t_path("liar.sock"));
	run_bench(&r, args);
	kill(liar, SIGKILL);
	waitpid(liar, &st, 0);
	unlink(t_path("liar.sock"));
	cr_assert_eq(r.status, 1, "a failed case makes the exit status 1");
	l = line_of(&r, "pipe", "liar");
	cr_assert_str_eq(jstr(l, "status"), "failed");
	cr_assert(strstr(jstr(l, "reason"), "GET_PROTOCOL_FEATURES with 8 bytes to GET_FEATURES"),
		  "%s", l);
}

/* vhu-bench --listen serves vhu-bench --connect; its lines count what each connection got. */
static void
listen_and_connect(const char *transport)
{
	static struct run r;
	struct t_proc srv = T_PROC_INIT;
	char sock[160], target[170], line[1024], pat[32];
	const char *largs[] = { "--listen", sock, "--transport", transport, "--exit-after", "6",
				NULL };
	const char *cargs[] = { "--json", "-n", "250", "-r", "2", "--warmup", "0",
				"--no-baselines", "--scenario", "rt,pipe,fds,conns", "--fds", "1",
				"--conns", "3", "--connect", target, NULL };
	bool seen[7] = { false };
	int st;

	snprintf(sock, sizeof(sock), "%s", t_path("listen.sock"));
	snprintf(target, sizeof(target), "me=%s", sock);
	t_proc_spawn(&srv, BENCH, largs, true);
	t_proc_wait_line(&srv, "serving");
	run_bench(&r, cargs);
	cr_assert_eq(r.status, 0, "exit status %d\n%s\n%s", r.status, r.out, r.err);
	for (int i = 0; i < 4; i++) {
		static const char *const labels[] = { "rt", "pipe", "fds/1", "conns/3" };
		const char *l = line_of(&r, labels[i], "me");

		cr_assert_str_eq(jstr(l, "status"), "ok", "%s", l);
	}
	/* rt, pipe, fds/1 and the 3 of conns/3: a line each, in any order */
	for (int i = 0; i < 6; i++) {
		unsigned int id;

		cr_assert(t_proc_line(&srv, line, sizeof(line)), "line %d of 6", i + 1);
		cr_assert_eq(sscanf(line, "conn %u", &id), 1, "%s", line);
		cr_assert(id >= 1 && id <= 6 && !seen[id], "%s", line);
		seen[id] = true;
		snprintf(pat, sizeof(pat), "(%s):", transport);
		cr_assert(strstr(line, pat), "%s", line);
		cr_assert_null(strstr(line, "failed"), "%s", line);
		if (id == 1) {
			/* rt: 2 x 250 round trips, exactly */
			cr_assert(strstr(line, ": 500 requests, 500 replies, 0 fds in "), "%s", line);
		} else if (id == 3) {
			cr_assert_null(strstr(line, " 0 fds"), "fds/1 sent fds: %s", line);
		}
	}
	st = t_proc_stop(&srv, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--exit-after 6: exits by itself (%#x)",
		  st);
}

Test(bench_run, listen_uring_stream_serves_connect)
{
	listen_and_connect("uring-stream");
}

Test(bench_run, listen_blocking_serves_connect)
{
	listen_and_connect("blocking");
}
