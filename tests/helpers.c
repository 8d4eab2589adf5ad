/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_fds_before = -1;
static char g_dir[64];

int
t_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n - 1;	/* the directory's own fd */
}

int
t_fds_of(pid_t pid, const char *prefix)
{
	char dir[64], path[320], target[256];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	while ((e = readdir(d)) != NULL) {
		ssize_t l;

		if (e->d_name[0] == '.') {
			continue;
		}
		if (prefix == NULL) {
			n++;
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		l = readlink(path, target, sizeof(target) - 1);
		if (l < 0) {
			continue;
		}
		target[l] = '\0';
		if (strncmp(target, prefix, strlen(prefix)) == 0) {
			n++;
		}
	}
	closedir(d);
	return n;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

void
t_setup(void)
{
	strcpy(g_dir, "/tmp/vhu-test-XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
	g_fds_before = t_fd_count();
}

void
t_teardown(void)
{
	int after = t_fd_count();

	if (g_dir[0])
		nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	g_dir[0] = 0;
	if (after != g_fds_before) {
		/*
		 * Criterion ignores assertions and exit() in .fini; abort() is
		 * what makes the test binary exit non-zero, failing the run.
		 */
		fprintf(stderr, "fd leak: %d fds open before the test, %d after\n",
			g_fds_before, after);
		fflush(stderr);
		abort();
	}
}

const char *
t_dir(void)
{
	return g_dir;
}

const char *
t_path(const char *name)
{
	static char bufs[8][128];
	static unsigned int next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "%s/%s", g_dir, name);
	return b;
}

int
t_memfd(const char *content)
{
	int fd = memfd_create("vhu-test", MFD_CLOEXEC);
	size_t len = strlen(content);

	cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
	cr_assert_eq(write(fd, content, len), (ssize_t)len);
	return fd;
}

int
t_eventfd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	cr_assert_geq(fd, 0, "eventfd: %s", strerror(errno));
	return fd;
}

ssize_t
t_read_file(int fd, char *buf, size_t len)
{
	return pread(fd, buf, len, 0);
}

bool
t_same_file(int a, int b)
{
	struct stat sa, sb;
	char link[64], target[128];
	ssize_t n;

	if (fstat(a, &sa) || fstat(b, &sb))
		return false;
	if (sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino)
		return false;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", a);
	n = readlink(link, target, sizeof(target) - 1);
	if (n > 0 && strncmp(target, "anon_inode:[eventfd]", 20) == 0) {
		uint64_t v = 7, r = 0;

		if (write(a, &v, sizeof(v)) != sizeof(v))
			return false;
		if (read(b, &r, sizeof(r)) != sizeof(r))
			return false;
		return r == 7;
	}
	if (S_ISREG(sa.st_mode)) {
		/* memfds and files: a byte written through a is read through b. */
		char w = 'Z', r = 0;
		off_t end = sa.st_size;

		if (pwrite(a, &w, 1, end) != 1 || pread(b, &r, 1, end) != 1)
			return false;
		if (ftruncate(a, end) != 0)
			return false;
		return r == 'Z';
	}
	return true;
}

static void
peer_spawn(struct t_peer *p, const char *name, const char *bin, char *const argv_tmpl[])
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *argv[16];
	char fdarg[160];
	int lfd, i;

	cr_assert_eq(access(bin, X_OK), 0, "%s is not installed (the test command installs it)",
		     bin);
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->path, sizeof(p->path), "%s/%s.sock", t_dir(), name);
	strcpy(sa.sun_path, p->path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);	/* inherited by the daemon: no CLOEXEC */
	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind: %s", strerror(errno));
	cr_assert_eq(listen(lfd, 64), 0);

	for (i = 0; argv_tmpl[i] && i < 15; i++) {
		if (strstr(argv_tmpl[i], "@FD@")) {
			const char *at = strstr(argv_tmpl[i], "@FD@");

			snprintf(fdarg, sizeof(fdarg), "%.*s%d%s", (int)(at - argv_tmpl[i]),
				 argv_tmpl[i], lfd, at + 4);
			argv[i] = fdarg;
		} else if (strstr(argv_tmpl[i], "@DIR@")) {
			static char dirarg[160];

			snprintf(dirarg, sizeof(dirarg), "source=%s", t_dir());
			argv[i] = dirarg;
		} else {
			argv[i] = argv_tmpl[i];
		}
	}
	argv[i] = NULL;

	p->pid = fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null >= 0 && !getenv("VHU_TEST_PEER_LOG")) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execv(bin, argv);
		_exit(127);
	}
	close(lfd);
}

void
t_peer_start_qsd(struct t_peer *p)
{
	char *argv[] = {
		"qemu-storage-daemon",
		"--blockdev", "driver=null-co,node-name=null0,size=67108864",
		"--export",
		"type=vhost-user-blk,id=exp0,node-name=null0,num-queues=1,"
		"addr.type=fd,addr.str=@FD@",
		NULL,
	};
	peer_spawn(p, "qsd", T_QSD_BIN, argv);
}

void
t_peer_start_virtiofsd(struct t_peer *p)
{
	char *argv[] = {
		"virtiofsd", "--fd=@FD@", "-o", "@DIR@", "-o", "cache=none", NULL,
	};
	peer_spawn(p, "virtiofsd", T_VIRTIOFSD_BIN, argv);
}

void
t_peer_stop(struct t_peer *p)
{
	int status;

	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
		;
	p->pid = 0;
}

/* Spawned tools ---------------------------------------------------------- */

void
t_tool_path(char *buf, size_t len, const char *name)
{
	const char *root = getenv("VHU_BUILD_ROOT");
	char exe[512];
	ssize_t n;

	if (root != NULL) {
		snprintf(buf, len, "%s/tools/%s", root, name);
		return;
	}
	/* Run by hand: the test binary is in BUILD/tests, the tools in BUILD/tools. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert_gt(n, 0, "VHU_BUILD_ROOT is not set and /proc/self/exe: %s", strerror(errno));
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(buf, len, "%s/../tools/%s", exe, name);
}

void
t_proc_spawn(struct t_proc *p, const char *tool, const char *const args[], bool merge)
{
	char bin[512];
	const char *argv[32];
	pid_t parent = getpid();
	unsigned int n = 0;
	int po[2], pe[2] = { -1, -1 };

	t_tool_path(bin, sizeof(bin), tool);
	argv[n++] = bin;
	while (*args != NULL && n < 31) {
		argv[n++] = *args++;
	}
	argv[n] = NULL;
	cr_assert_eq(pipe2(po, O_CLOEXEC), 0);
	if (!merge) {
		cr_assert_eq(pipe2(pe, O_CLOEXEC), 0);
	}
	p->len = 0;
	p->pid = fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* The parent may have died before prctl: nothing would kill us then. */
		if (getppid() != parent) {
			_exit(126);
		}
		dup2(po[1], STDOUT_FILENO);
		dup2(merge ? po[1] : pe[1], STDERR_FILENO);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(po[1]);
	p->out = po[0];
	p->err = -1;
	if (!merge) {
		close(pe[1]);
		p->err = pe[0];
	}
}

bool
t_proc_line(struct t_proc *p, char *line, size_t len)
{
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->len);
		struct pollfd pfd = { .fd = p->out, .events = POLLIN };
		ssize_t n;

		if (nl != NULL) {
			size_t l = (size_t)(nl - p->buf);

			snprintf(line, len, "%.*s", (int)l, p->buf);
			memmove(p->buf, nl + 1, p->len - l - 1);
			p->len -= l + 1;
			return true;
		}
		cr_assert_lt(p->len, sizeof(p->buf) - 1, "child's output line too long");
		cr_assert_eq(poll(&pfd, 1, T_PROC_WAIT_MS), 1, "child silent for %d ms",
			     T_PROC_WAIT_MS);
		n = read(p->out, p->buf + p->len, sizeof(p->buf) - 1 - p->len);
		cr_assert_geq(n, 0, "read: %s", strerror(errno));
		if (n == 0) {
			return false;
		}
		p->len += (size_t)n;
	}
}

void
t_proc_wait_line(struct t_proc *p, const char *want)
{
	char line[1024];

	while (t_proc_line(p, line, sizeof(line))) {
		if (strstr(line, want) != NULL) {
			return;
		}
	}
	cr_assert_fail("the child exited without printing \"%s\"", want);
}

size_t
t_proc_read(int fd, char *buf, size_t cap, size_t *len, const char *who)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	cr_assert_lt(*len, cap - 1, "%s: output too long", who);
	cr_assert_eq(poll(&p, 1, T_PROC_WAIT_MS), 1, "%s silent for %d ms", who, T_PROC_WAIT_MS);
	n = read(fd, buf + *len, cap - 1 - *len);
	cr_assert_geq(n, 0, "read: %s", strerror(errno));
	*len += (size_t)n;
	buf[*len] = '\0';
	return (size_t)n;
}

void
t_proc_read_until(int fd, char *buf, size_t cap, size_t *len, const char *want, const char *who)
{
	while (strstr(buf, want) == NULL) {
		cr_assert_gt(t_proc_read(fd, buf, cap, len, who), 0,
			     "%s ended its output without \"%s\":\n%s", who, want, buf);
	}
}

static void
close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void
t_proc_drain(struct t_proc *p, char *out, size_t ocap, size_t *olen, char *err, size_t ecap,
	     size_t *elen)
{
	while (p->out >= 0 || p->err >= 0) {
		struct pollfd pfd[2] = { { .fd = p->out, .events = POLLIN },
					 { .fd = p->err, .events = POLLIN } };

		cr_assert_gt(poll(pfd, 2, T_PROC_WAIT_MS), 0, "a child stayed silent for %d ms",
			     T_PROC_WAIT_MS);
		if (pfd[0].revents != 0 && t_proc_read(p->out, out, ocap, olen, "stdout") == 0) {
			close_fd(&p->out);
		}
		if (pfd[1].revents != 0 && t_proc_read(p->err, err, ecap, elen, "stderr") == 0) {
			close_fd(&p->err);
		}
	}
}

int
t_proc_stop(struct t_proc *p, int sig)
{
	int status = 0;

	if (p->pid > 0 && sig != 0) {
		kill(p->pid, sig);
	}
	if (p->pid > 0 && sig != SIGKILL) {
		char line[1024];

		/* EOF first (each read bounded), so that a hung child fails, not blocks. */
		while (p->out >= 0 && t_proc_line(p, line, sizeof(line))) {
		}
		close_fd(&p->out);
		while (p->err >= 0) {
			char junk[4096];
			size_t len = 0;

			if (t_proc_read(p->err, junk, sizeof(junk), &len, "stderr") == 0) {
				close_fd(&p->err);
			}
		}
		cr_assert_eq(waitpid(p->pid, &status, 0), p->pid);
		p->pid = -1;
	}
	if (p->pid > 0) {
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
		}
		p->pid = -1;
	}
	close_fd(&p->out);
	close_fd(&p->err);
	p->len = 0;
	return status;
}

void
t_proc_start_backend(struct t_proc *p, const char *sock)
{
	const char *args[] = { "--socket", sock, "--queues", "2", "--capacity", "1M", NULL };
	char buf[4096] = "", want[256];
	size_t len = 0;

	t_proc_spawn(p, "vhu-backend", args, false);
	close_fd(&p->out);
	snprintf(want, sizeof(want), "vhu-backend: listening on %s\n", sock);
	t_proc_read_until(p->err, buf, sizeof(buf), &len, want, "vhu-backend");
}

/* JSON ----------------------------------------------------------------- */

static const char *json_value(const char *s, int depth);

static const char *
json_ws(const char *s)
{
	while (*s == ' ' || *s == '\t') {
		s++;
	}
	return s;
}

static const char *
json_string(const char *s)
{
	if (*s++ != '"') {
		return NULL;
	}
	while (*s != '"') {
		if (*s == '\0' || (unsigned char)*s < 0x20) {
			return NULL;
		}
		if (*s == '\\') {
			s++;
			if (*s == '\0' || strchr("\"\\/bfnrtu", *s) == NULL) {
				return NULL;
			}
		}
		s++;
	}
	return s + 1;
}

static const char *
json_members(const char *s, char close, bool keys, int depth)
{
	s = json_ws(s);
	if (*s == close) {
		return s + 1;
	}
	for (;;) {
		if (keys) {
			s = json_string(json_ws(s));
			if (s == NULL) {
				return NULL;
			}
			s = json_ws(s);
			if (*s++ != ':') {
				return NULL;
			}
		}
		s = json_value(s, depth + 1);
		if (s == NULL) {
			return NULL;
		}
		s = json_ws(s);
		if (*s == close) {
			return s + 1;
		}
		if (*s++ != ',') {
			return NULL;
		}
	}
}

static const char *
json_digits(const char *s)
{
	if (*s < '0' || *s > '9') {
		return NULL;
	}
	while (*s >= '0' && *s <= '9') {
		s++;
	}
	return s;
}

static const char *
json_value(const char *s, int depth)
{
	s = json_ws(s);
	if (depth > 16) {
		return NULL;
	}
	switch (*s) {
	case '{':
		return json_members(s + 1, '}', true, depth);
	case '[':
		return json_members(s + 1, ']', false, depth);
	case '"':
		return json_string(s);
	default:
		break;
	}
	if (strncmp(s, "true", 4) == 0 || strncmp(s, "null", 4) == 0) {
		return s + 4;
	}
	if (strncmp(s, "false", 5) == 0) {
		return s + 5;
	}
	s += *s == '-';
	s = json_digits(s);
	if (s != NULL && *s == '.') {
		s = json_digits(s + 1);
	}
	return s;
}

const char *
t_json_end(const char *s)
{
	return json_value(s, 0);
}
