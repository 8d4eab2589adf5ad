/* SPDX-License-Identifier: MIT */
/*
 * Shared test helpers: fd-leak accounting, temporary directories, files to
 * pass as fds, and the real vhost-user peers installed from Debian.
 */
#ifndef VHU_TEST_HELPERS_H
#define VHU_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <criterion/criterion.h>

/* Number of open fds of this process (from /proc/self/fd). */
int t_fd_count(void);

/*
 * Suite fixture: t_setup records the fd count and makes a temporary
 * directory; t_teardown removes the directory and fails the test if the fd
 * count differs (a leak, or a double close of someone else's fd).
 * Use: TestSuite(name, .init = t_setup, .fini = t_teardown);
 */
void t_setup(void);
void t_teardown(void);

/* The current test's temporary directory (made by t_setup). */
const char *t_dir(void);

/* A path inside t_dir(); returns a static buffer (one slot per call, 8 deep). */
const char *t_path(const char *name);

/* A memfd holding content (NUL-terminated string). */
int t_memfd(const char *content);

/* An eventfd. */
int t_eventfd(void);

/*
 * True if a and b are the same open file: a byte written through a can be
 * read through b (memfds: compared by write + pread; eventfds: write a
 * count through a, read it through b; other files: same st_dev/st_ino).
 */
bool t_same_file(int a, int b);

/* Read a whole memfd (from offset 0) into buf; returns bytes read. */
ssize_t t_read_file(int fd, char *buf, size_t len);

/* A real vhost-user peer process listening on a socket vhu bound for it. */
struct t_peer {
	pid_t pid;
	char path[108];
	char name[32];
};

/*
 * Start qemu-storage-daemon with a vhost-user-blk export of a 64 MiB
 * null-co block device (num-queues 1), or /usr/lib/qemu/virtiofsd sharing
 * t_dir(). The listening socket is bound here and handed to the daemon as
 * an fd, so connect() succeeds as soon as this returns (no waiting, no
 * race). The daemon dies with the test process (PR_SET_PDEATHSIG).
 * Fails the test if the binary is missing.
 */
void t_peer_start_qsd(struct t_peer *p);
void t_peer_start_virtiofsd(struct t_peer *p);

/* Kill (SIGKILL) and reap the peer; idempotent. */
void t_peer_stop(struct t_peer *p);

#define T_QSD_BIN	"/usr/bin/qemu-storage-daemon"
#define T_VIRTIOFSD_BIN	"/usr/lib/qemu/virtiofsd"

/*
 * Open fds of process pid (from /proc/PID/fd): all of them if prefix is
 * NULL, else those whose link target starts with prefix ("/memfd:",
 * "anon_inode:[eventfd]", ...).
 */
int t_fds_of(pid_t pid, const char *prefix);

/* Spawned tools ---------------------------------------------------------- */

/* Upper bound for one wait on a spawned tool; reaching it fails the test, nothing sleeps. */
#define T_PROC_WAIT_MS	20000

/* A built tool (tools/NAME) running as a child of the test. */
struct t_proc {
	pid_t pid;		/* -1 when not running */
	int out;		/* read end of its stdout (and stderr if merged), or -1 */
	int err;		/* read end of its stderr, or -1 (merged, or closed) */
	size_t len;		/* bytes of out read but not yet returned by t_proc_line */
	char buf[16384];
};

#define T_PROC_INIT	{ .pid = -1, .out = -1, .err = -1 }

/*
 * Path of the built tool name: $VHU_BUILD_ROOT/tools/name, or, when the test
 * binary runs by hand, tools/ next to the directory holding the test binary.
 */
void t_tool_path(char *buf, size_t len, const char *name);

/*
 * fork/exec tools/tool with argv[1..] = args (NULL-terminated). Its stdout
 * goes to p->out; its stderr to p->err, or also to p->out if merge is true.
 * The child dies with the test process (PR_SET_PDEATHSIG).
 */
void t_proc_spawn(struct t_proc *p, const char *tool, const char *const args[], bool merge);

/* Next line of p->out, without the newline, into line; false at EOF. */
bool t_proc_line(struct t_proc *p, char *line, size_t len);

/* Skip lines of p->out up to one containing want; fails the test at EOF. */
void t_proc_wait_line(struct t_proc *p, const char *want);

/*
 * One bounded read from fd appended to buf (cap bytes, kept NUL-terminated,
 * *len so far); \return the bytes read, 0 at EOF. who names the child in
 * failures.
 */
size_t t_proc_read(int fd, char *buf, size_t cap, size_t *len, const char *who);

/* Read fd into buf (as t_proc_read) until buf contains want; fails at EOF. */
void t_proc_read_until(int fd, char *buf, size_t cap, size_t *len, const char *want,
		       const char *who);

/*
 * Read p->out and p->err to EOF into out and err (as t_proc_read; lengths
 * start from *olen and *elen); both are closed and set to -1.
 */
void t_proc_drain(struct t_proc *p, char *out, size_t ocap, size_t *olen, char *err,
		  size_t ecap, size_t *elen);

/*
 * Send sig (none if 0) and reap the child; \return its wait status (0 if it
 * was not running). Unless sig is SIGKILL, its output is first read to EOF
 * (discarded; each read bounded) so that a hung child fails the test instead
 * of blocking it. Closes p->out and p->err. Idempotent; with SIGKILL it
 * asserts nothing, so a suite's .fini can use it.
 */
int t_proc_stop(struct t_proc *p, int sig);

/*
 * Start vhu-backend on sock with 2 queues and a 1 MiB disk, its stdout
 * closed and its stderr on p->err; returns once it says it listens.
 */
void t_proc_start_backend(struct t_proc *p, const char *sock);

/* JSON ----------------------------------------------------------------- */

/*
 * End of the JSON value at s (objects, arrays, strings, true/false/null,
 * integers and decimals), or NULL if it is not valid JSON on one line:
 * newlines are not whitespace here, so one value cannot span lines.
 */
const char *t_json_end(const char *s);

#endif
