/* SPDX-License-Identifier: MIT */
/*
 * The tools behave like the ones people already trust (issue 13): every
 * blocking step has a deadline, signals stop them promptly and remove
 * their socket, a live back-end's socket is never taken over, a failed
 * write to the output is an error, --version everywhere, and the exit
 * statuses of tools/common/exit.h. Nothing sleeps: each wait is on an
 * event (a line, EOF, an exit) and bounded by T_PROC_WAIT_MS, so a tool
 * that hangs fails the test instead of blocking it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/version.h>

#include "tool_helpers.h"

#define BENCH	"../bench/vhu-bench"

TestSuite(behaviour, .init = t_setup, .fini = t_tool_fini, .timeout = 120);

/* A tool's exit status after t_proc_stop (which reads to EOF, each read bounded). */
static int
exit_code(struct t_proc *p, int sig)
{
	int st = t_proc_stop(p, sig);

	cr_assert(WIFEXITED(st), "did not exit normally (wait status %#x)", st);
	return WEXITSTATUS(st);
}

/*
 * Run tool with args, its stdout on out_fd (taken), its stderr read into
 * err (bounded reads to EOF). \return the exit status.
 */
static int
run_with_stdout(const char *tool, const char *const args[], int out_fd, char *err, size_t cap)
{
	const char *argv[16];
	char path[512];
	size_t len = 0, n = 0;
	int ep[2], st;
	pid_t pid;

	t_tool_path(path, sizeof(path), tool);
	argv[n++] = path;
	for (size_t i = 0; args[i] && n < 15; i++) {
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	cr_assert_eq(pipe2(ep, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(out_fd, STDOUT_FILENO);
		dup2(ep[1], STDERR_FILENO);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(out_fd);
	close(ep[1]);
	err[0] = 0;
	while (t_proc_read(ep[0], err, cap, &len, tool) > 0) {
	}
	close(ep[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "%s: wait status %#x\n%s", tool, st, err);
	return WEXITSTATUS(st);
}

/* A socket bound at path, listening with backlog; the caller closes it. */
static int
listening(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	cr_assert_eq(listen(fd, backlog), 0);
	return fd;
}

/* A connection to path, or -errno; non-blocking connect (never waits). */
static int
connect_nb(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

/* Fill lfd's backlog (path): pending connections into fds[], \return how many. */
static unsigned int
fill_backlog(const char *path, int *fds, unsigned int cap)
{
	unsigned int n = 0;

	while (n < cap) {
		int fd = connect_nb(path);

		if (fd == -EAGAIN) {
			return n;
		}
		cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
		fds[n++] = fd;
	}
	cr_assert_fail("the backlog never filled");
	return n;
}

/* 1. Deadlines ----------------------------------------------------------- */

/*
 * qemu-storage-daemon serves one front-end at a time: conns/4 is
 * unavailable ("serves fewer connections"), in time, the run goes on to
 * conns/1, and a vhu-probe afterwards is answered (the backlog is free).
 */
Test(behaviour, bench_conns_against_a_one_connection_backend_does_not_hang)
{
	char target[160], line[8192];
	const char *args[] = { "--json", "-n", "100", "-r", "1", "--warmup", "0",
			       "--no-baselines", "--scenario", "conns", "--conns", "4,1",
			       "--connect", target, NULL };
	const char *pargs[] = { t_tool.peer.path, NULL };
	bool four = false, one = false;

	t_peer_start_qsd(&t_tool.peer);
	snprintf(target, sizeof(target), "qsd=%s", t_tool.peer.path);
	t_proc_spawn(&t_tool.probe, BENCH, args, false);
	while (t_proc_line(&t_tool.probe, line, sizeof(line))) {
		if (strstr(line, "\"case\":\"conns/4\"")) {
			cr_assert(strstr(line, "\"status\":\"unavailable\""), "%s", line);
			cr_assert(strstr(line, "serves fewer connections at once"), "%s", line);
			four = true;
		} else if (strstr(line, "\"case\":\"conns/1\"")) {
			cr_assert(strstr(line, "\"status\":\"ok\""), "%s", line);
			one = true;
		}
	}
	cr_assert(four && one, "both cases reported");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
	t_proc_spawn(&t_tool.probe, "vhu-probe", pargs, false);
	t_proc_wait_line(&t_tool.probe, "features");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0, "the back-end answers a probe afterwards");
}

/*
 * vhu-trace's connect to a back-end whose backlog is full fails at once
 * (exit 3, said on stderr) instead of blocking the tracer.
 */
Test(behaviour, trace_connect_to_a_full_backlog_does_not_hang)
{
	const char *be = t_path("be.sock"), *tr = t_path("tr.sock");
	const char *args[] = { "--listen", tr, "--connect", be, NULL };
	char err[4096];
	size_t elen = 0;
	int pending[64], lfd = listening(be, 0), fe;
	unsigned int n = fill_backlog(be, pending, 64);

	t_proc_spawn(&t_tool.trace, "vhu-trace", args, false);
	t_proc_read_until(t_tool.trace.err, err, sizeof(err), &elen, "listening on", "vhu-trace");
	fe = connect_nb(tr);
	cr_assert_geq(fe, 0);
	t_proc_read_until(t_tool.trace.err, err, sizeof(err), &elen, "cannot connect", "vhu-trace");
	cr_assert_eq(exit_code(&t_tool.trace, 0), 3, "%s", err);
	close(fe);
	for (unsigned int i = 0; i < n; i++) {
		close(pending[i]);
	}
	close(lfd);
}

/* 2. Signals ------------------------------------------------------------- */

/* vhu-bench --listen with each transport stops on sig, a connection open, and removes its socket. */
static void
bench_listen_stops(const char *transport, int sig)
{
	const char *sock = t_path("b.sock");
	const char *args[] = { "--listen", sock, "--transport", transport, NULL };
	struct stat st;
	int fe;

	t_proc_spawn(&t_tool.backend, BENCH, args, true);
	t_proc_wait_line(&t_tool.backend, "serving");
	/* a connection being served: its thread must not swallow the signal */
	fe = connect_nb(sock);
	cr_assert_geq(fe, 0);
	cr_assert_eq(exit_code(&t_tool.backend, sig), 0);
	cr_assert_neq(stat(sock, &st), 0, "the socket is removed");
	close(fe);
}

Test(behaviour, bench_listen_blocking_stops_on_sigterm)
{
	bench_listen_stops("blocking", SIGTERM);
}

Test(behaviour, bench_listen_blocking_stops_on_sigint)
{
	bench_listen_stops("blocking", SIGINT);
}

Test(behaviour, bench_listen_uring_stops_on_sighup)
{
	bench_listen_stops("uring-stream", SIGHUP);
}

Test(behaviour, backend_stops_on_sighup_and_removes_its_socket)
{
	struct stat st;

	t_proc_start_backend(&t_tool.backend, t_path("be.sock"));
	cr_assert_eq(exit_code(&t_tool.backend, SIGHUP), 0);
	cr_assert_neq(stat(t_path("be.sock"), &st), 0, "the socket is removed");
}

/* vhu-blk: a null disk on sock; returns once it says it listens. */
static void
start_blk(struct t_proc *p, const char *sock)
{
	const char *args[] = { "--socket", sock, "--null", "1M", "--queues", "2", NULL };
	char buf[4096] = "", want[256];
	size_t len = 0;

	t_proc_spawn(p, "vhu-blk", args, false);
	t_close_fd(&p->out);
	snprintf(want, sizeof(want), "vhu-blk: listening on %s:", sock);
	t_proc_read_until(p->err, buf, sizeof(buf), &len, want, "vhu-blk");
}

static void
blk_stops(int sig)
{
	struct stat st;

	start_blk(&t_tool.backend, t_path("blk.sock"));
	cr_assert_eq(exit_code(&t_tool.backend, sig), 0);
	cr_assert_neq(stat(t_path("blk.sock"), &st), 0, "the socket is removed");
}

Test(behaviour, blk_stops_on_sigint_and_removes_its_socket)
{
	blk_stops(SIGINT);
}

Test(behaviour, blk_stops_on_sigterm_and_removes_its_socket)
{
	blk_stops(SIGTERM);
}

Test(behaviour, blk_stops_on_sighup_and_removes_its_socket)
{
	blk_stops(SIGHUP);
}

/* A vhu-probe on sock is answered (features read, exit 0). */
static void
probe_answers(const char *sock)
{
	const char *pargs[] = { sock, NULL };

	t_proc_spawn(&t_tool.probe, "vhu-probe", pargs, false);
	t_proc_wait_line(&t_tool.probe, "features");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
}

/*
 * What a front-end that reconnects (QEMU's reconnect=1) relies on: vhu-blk
 * stopped by SIGTERM with a front-end connected exits 0 and removes its
 * socket, and started again on the same path it serves; SIGKILLed, it
 * leaves its socket file behind, and started again it replaces it and
 * serves (tests/guest restarts it under a guest's I/O).
 */
Test(behaviour, blk_comes_back_on_its_socket_after_sigterm_and_sigkill)
{
	const char *sock = t_path("blk.sock");
	char err[4096] = "";
	size_t len = 0;
	struct stat st;
	int fe, status;

	start_blk(&t_tool.backend, sock);
	fe = connect_nb(sock);
	cr_assert_geq(fe, 0);
	t_proc_read_until(t_tool.backend.err, err, sizeof(err), &len, "front-end connected",
			  "vhu-blk");
	cr_assert_eq(exit_code(&t_tool.backend, SIGTERM), 0);
	cr_assert_neq(stat(sock, &st), 0, "SIGTERM removes the socket");
	close(fe);

	start_blk(&t_tool.backend, sock);
	probe_answers(sock);
	status = t_proc_stop(&t_tool.backend, SIGKILL);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "wait status %#x", status);
	cr_assert_eq(stat(sock, &st), 0, "SIGKILL leaves the socket file");
	cr_assert(S_ISSOCK(st.st_mode));

	start_blk(&t_tool.backend, sock);
	probe_answers(sock);
	cr_assert_eq(exit_code(&t_tool.backend, SIGTERM), 0);
}

/* 3. --connect errors ---------------------------------------------------- */

static void
bench_connect_fails(const char *path, const char *want)
{
	char target[200], err[4096];
	const char *args[] = { "--quick", "--scenario", "rt", "--connect", target, NULL };
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);

	snprintf(target, sizeof(target), "x=%s", path);
	cr_assert_eq(run_with_stdout(BENCH, args, out, err, sizeof(err)), 3, "%s", err);
	cr_assert(strstr(err, want), "%s", err);
}

Test(behaviour, bench_connect_to_a_missing_path_is_exit_3)
{
	bench_connect_fails(t_path("none.sock"), "no such socket");
}

Test(behaviour, bench_connect_to_a_regular_file_is_exit_3)
{
	int fd = open(t_path("file"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0);
	close(fd);
	bench_connect_fails(t_path("file"), "not a socket");
	unlink(t_path("file"));
}

Test(behaviour, bench_connect_to_a_stale_socket_is_exit_3)
{
	close(listening(t_path("stale.sock"), 1));
	bench_connect_fails(t_path("stale.sock"), "connection refused");
	unlink(t_path("stale.sock"));
}

Test(behaviour, bench_connect_without_permission_is_exit_3)
{
	int lfd;

	if (geteuid() == 0) {
		cr_skip_test("root may connect to any socket");
	}
	lfd = listening(t_path("p.sock"), 1);
	cr_assert_eq(chmod(t_path("p.sock"), 0400), 0);
	bench_connect_fails(t_path("p.sock"), "permission denied");
	close(lfd);
	unlink(t_path("p.sock"));
}

/* 4. A live socket is never taken over ----------------------------------- */

static void
refused_on_live_socket(const char *tool, const char *const args[])
{
	char err[4096];
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);

	cr_assert_eq(run_with_stdout(tool, args, out, err, sizeof(err)), 7, "%s", err);
	cr_assert(strstr(err, "a live listener answers there"), "%s", err);
}

Test(behaviour, second_backend_on_a_live_socket_exits_7)
{
	const char *sock = t_path("be.sock");
	const char *args[] = { "--socket", sock, NULL };
	const char *pargs[] = { sock, NULL };

	t_proc_start_backend(&t_tool.backend, sock);
	refused_on_live_socket("vhu-backend", args);
	/* the first one still serves on its socket */
	t_proc_spawn(&t_tool.probe, "vhu-probe", pargs, false);
	t_proc_wait_line(&t_tool.probe, "features");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
}

Test(behaviour, blk_on_a_live_socket_exits_7_and_the_first_serves_on)
{
	const char *sock = t_path("blk.sock");
	const char *args[] = { "--socket", sock, "--null", "1M", NULL };
	const char *pargs[] = { sock, NULL };

	start_blk(&t_tool.backend, sock);
	refused_on_live_socket("vhu-blk", args);
	t_proc_spawn(&t_tool.probe, "vhu-probe", pargs, false);
	t_proc_wait_line(&t_tool.probe, "features");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
}

Test(behaviour, blk_replaces_a_stale_socket_and_keeps_a_regular_file)
{
	const char *file = t_path("file");
	const char *args[] = { "--socket", file, "--null", "1M", NULL };
	char err[4096];
	struct stat st;
	int fd;

	close(listening(t_path("blk.sock"), 1));
	start_blk(&t_tool.backend, t_path("blk.sock"));
	cr_assert_eq(exit_code(&t_tool.backend, SIGTERM), 0);

	fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(run_with_stdout("vhu-blk", args, open("/dev/null", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 3, "%s", err);
	cr_assert(strstr(err, "vhu-blk: cannot listen on"), "%s", err);
	cr_assert_eq(stat(file, &st), 0);
	cr_assert(S_ISREG(st.st_mode), "a regular file was replaced");
}

Test(behaviour, blk_usage_errors_exit_2)
{
	const char *none[] = { "--socket", t_path("blk.sock"), NULL };
	const char *both[] = { "--socket", t_path("blk.sock"), "--null", "1M", "--file", "x", NULL };
	const char *bad[] = { "--socket", t_path("blk.sock"), "--null", "1M", "--max-conns", "0",
			      NULL };
	char err[4096];

	cr_assert_eq(run_with_stdout("vhu-blk", none, open("/dev/null", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 2, "%s", err);
	cr_assert(strstr(err, "one of --file or --null are required"), "%s", err);
	cr_assert_eq(run_with_stdout("vhu-blk", both, open("/dev/null", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 2, "%s", err);
	cr_assert_eq(run_with_stdout("vhu-blk", bad, open("/dev/null", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 2, "%s", err);
	cr_assert(strstr(err, "--max-conns needs a number"), "%s", err);
}

Test(behaviour, trace_and_bench_listen_on_a_live_socket_exit_7)
{
	const char *sock = t_path("be.sock");
	const char *targs[] = { "--listen", sock, "--connect", t_path("other.sock"), NULL };
	const char *bargs[] = { "--listen", sock, "--transport", "blocking", NULL };
	int lfd = listening(sock, 4);

	refused_on_live_socket("vhu-trace", targs);
	refused_on_live_socket(BENCH, bargs);
	close(lfd);
	unlink(sock);
}

Test(behaviour, bench_listen_replaces_a_stale_socket)
{
	const char *sock = t_path("b.sock");
	const char *args[] = { "--listen", sock, "--transport", "blocking", NULL };

	close(listening(sock, 1));
	t_proc_spawn(&t_tool.backend, BENCH, args, true);
	t_proc_wait_line(&t_tool.backend, "serving");
	cr_assert_eq(exit_code(&t_tool.backend, SIGTERM), 0);
}

/* 5. Output that cannot be written --------------------------------------- */

Test(behaviour, probe_to_a_full_device_is_exit_1)
{
	const char *sock = t_path("be.sock");
	const char *args[] = { sock, NULL };
	char err[4096];

	t_proc_start_backend(&t_tool.backend, sock);
	cr_assert_eq(run_with_stdout("vhu-probe", args, open("/dev/full", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 1, "%s", err);
	cr_assert(strstr(err, "vhu-probe: writing the report: No space left on device"), "%s", err);
}

Test(behaviour, probe_to_a_closed_pipe_is_exit_1)
{
	const char *sock = t_path("be.sock");
	const char *args[] = { "--json", sock, NULL };
	char err[4096];
	int p[2];

	t_proc_start_backend(&t_tool.backend, sock);
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	cr_assert_eq(run_with_stdout("vhu-probe", args, p[1], err, sizeof(err)), 1, "%s", err);
	cr_assert(strstr(err, "Broken pipe"), "%s", err);
}

Test(behaviour, blk_help_to_a_full_device_is_exit_1)
{
	const char *args[] = { "--help", NULL };
	char err[4096];

	cr_assert_eq(run_with_stdout("vhu-blk", args, open("/dev/full", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 1, "%s", err);
	cr_assert(strstr(err, "vhu-blk: writing standard output: No space left on device"),
		  "%s", err);
}

Test(behaviour, bench_to_a_full_device_is_exit_1)
{
	const char *args[] = { "-n", "20", "-r", "1", "--warmup", "0", "--scenario", "rt",
			       "--transport", "blocking", "--no-baselines", NULL };
	char err[4096];

	cr_assert_eq(run_with_stdout(BENCH, args, open("/dev/full", O_WRONLY | O_CLOEXEC),
				     err, sizeof(err)), 1, "%s", err);
	cr_assert(strstr(err, "vhu-bench: writing the results: No space left on device"), "%s",
		  err);
	cr_assert_null(strstr(err, "[1/"), "stopped before measuring for nobody: %s", err);
}

Test(behaviour, trace_to_a_full_device_is_exit_1)
{
	const char *be = t_fake_listen("be.sock"), *tr = t_path("tr.sock");
	const char *args[] = { "--listen", tr, "--connect", be, "-o", "/dev/full", NULL };
	char err[4096];
	size_t elen = 0;
	int fe;

	t_proc_spawn(&t_tool.trace, "vhu-trace", args, false);
	t_proc_read_until(t_tool.trace.err, err, sizeof(err), &elen, "listening on", "vhu-trace");
	fe = connect_nb(tr);
	cr_assert_geq(fe, 0);
	t_tool.cfd = t_fake_accept();
	/* the session_start line could not be written: the tracer ends, and says so */
	t_proc_read_until(t_tool.trace.err, err, sizeof(err), &elen, "/dev/full", "vhu-trace");
	cr_assert_eq(exit_code(&t_tool.trace, 0), 1, "%s", err);
	cr_assert(strstr(err, "vhu-trace: writing /dev/full"), "%s", err);
	close(fe);
}

/* 6. stream, progress, plot ---------------------------------------------- */

Test(behaviour, bench_progress_is_a_line_per_case_when_stderr_is_not_a_terminal)
{
	const char *args[] = { "-n", "20", "-r", "1", "--warmup", "0", "--scenario", "rt,pipe",
			       "--transport", "blocking", "--no-baselines", NULL };
	static char out[16384], err[8192];
	size_t olen = 0, elen = 0;

	t_proc_spawn(&t_tool.probe, BENCH, args, false);
	t_proc_drain(&t_tool.probe, out, sizeof(out), &olen, err, sizeof(err), &elen);
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
	cr_assert(strstr(err, "vhu-bench: [1/2] rt blocking\n"), "%s", err);
	cr_assert(strstr(err, "vhu-bench: [2/2] pipe blocking\n"), "%s", err);
	cr_assert_null(strstr(err, "\033"), "no terminal codes in a log: %s", err);
}

/*
 * Results stream: a case's table is out while the next case still runs,
 * so Ctrl-C keeps it. The second case waits on a back-end that never
 * accepts (its connection sits in the backlog, unanswered).
 */
Test(behaviour, bench_results_arrive_before_the_run_ends)
{
	const char *sock = t_path("stall.sock");
	char target[200];
	const char *args[] = { "-n", "20", "-r", "1", "--warmup", "0", "--scenario",
			       "oneway,conns", "--sizes", "0", "--conns", "1", "--transport",
			       "blocking", "--no-baselines", "--connect", target, NULL };
	static char out[16384], err[8192];
	size_t olen = 0, elen = 0;
	int lfd = listening(sock, 4), st;

	snprintf(target, sizeof(target), "stall=%s", sock);
	t_proc_spawn(&t_tool.probe, BENCH, args, false);
	/* the oneway table (blocking measured, stall unavailable) before conns/1 ends */
	t_proc_read_until(t_tool.probe.out, out, sizeof(out), &olen, "\nstall ", "vhu-bench");
	t_proc_read_until(t_tool.probe.err, err, sizeof(err), &elen, "conns/1 stall",
			  "vhu-bench");
	st = t_proc_stop(&t_tool.probe, SIGINT);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT, "Ctrl-C ends the run (%#x)", st);
	cr_assert(strstr(out, "oneway/0"), "%s", out);
	close(lfd);
}

Test(behaviour, bench_plot_without_gnuplot_fails_before_the_run)
{
	const char *args[] = { "--quick", "--plot", t_path("x.png"), NULL };
	char err[4096];
	const char *old = getenv("PATH");
	char *saved = old ? strdup(old) : NULL;
	int rc;

	setenv("PATH", t_dir(), 1);
	rc = run_with_stdout(BENCH, args, open("/dev/null", O_WRONLY | O_CLOEXEC), err,
			     sizeof(err));
	if (saved) {
		setenv("PATH", saved, 1);
		free(saved);
	}
	cr_assert_eq(rc, 2, "%s", err);
	cr_assert(strstr(err, "--plot needs gnuplot"), "%s", err);
	cr_assert_null(strstr(err, "[1/"), "nothing ran: %s", err);
}

/* 7. --version ------------------------------------------------------------ */

Test(behaviour, every_tool_prints_its_version)
{
	static const char *const tools[][2] = {
		{ "vhu-backend", "vhu-backend" }, { "vhu-blk", "vhu-blk" },
		{ "vhu-probe", "vhu-probe" },
		{ "vhu-trace", "vhu-trace" }, { BENCH, "vhu-bench" },
	};
	const char *args[] = { "--version", NULL };
	const char *sargs[] = { "-V", NULL };

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++) {
		char line[256], want[128];

		snprintf(want, sizeof(want), "%s vhu %s", tools[i][1], vhu_version());
		for (int k = 0; k < 2; k++) {
			t_proc_spawn(&t_tool.probe, tools[i][0], k ? sargs : args, false);
			cr_assert(t_proc_line(&t_tool.probe, line, sizeof(line)), "%s", tools[i][0]);
			cr_assert_str_eq(line, want);
			cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
		}
	}
}

/* vhu-blk offers 509 memory slots, as QEMU's and rust-vmm's back-ends do; --mem-slots lowers it. */
Test(behaviour, blk_offers_509_memory_slots)
{
	const char *sock = t_path("blk.sock");
	const char *pargs[] = { sock, NULL };

	start_blk(&t_tool.backend, sock);
	t_proc_spawn(&t_tool.probe, "vhu-probe", pargs, false);
	t_proc_wait_line(&t_tool.probe, "memory slots      509");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
}

Test(behaviour, blk_mem_slots_option)
{
	const char *sock = t_path("blk.sock");
	const char *args[] = { "--socket", sock, "--null", "1M", "--mem-slots", "8", NULL };
	const char *pargs[] = { sock, NULL };
	char buf[4096] = "", want[256];
	size_t len = 0;

	t_proc_spawn(&t_tool.backend, "vhu-blk", args, false);
	t_close_fd(&t_tool.backend.out);
	snprintf(want, sizeof(want), "vhu-blk: listening on %s:", sock);
	t_proc_read_until(t_tool.backend.err, buf, sizeof(buf), &len, want, "vhu-blk");
	t_proc_spawn(&t_tool.probe, "vhu-probe", pargs, false);
	t_proc_wait_line(&t_tool.probe, "memory slots      8");
	cr_assert_eq(exit_code(&t_tool.probe, 0), 0);
}
