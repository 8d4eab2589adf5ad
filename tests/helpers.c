/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
