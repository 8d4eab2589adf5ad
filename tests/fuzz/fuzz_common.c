/* SPDX-License-Identifier: MIT */
/*
 * fd accounting for the fuzz targets (see fuzz_common.h). The close()
 * wrapper is the whole point: a double close in vhu would otherwise hit
 * EBADF silently here, and in a real process close someone else's file.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "fuzz_common.h"

int __real_close(int fd);
int __wrap_close(int fd);

static int devnull = -1;

int
__wrap_close(int fd)
{
	int r = __real_close(fd);
	int err = errno;

	FZ_CHECK(!(r < 0 && err == EBADF), "close(%d): not open (double close)", fd);
	errno = err;
	return r;
}

int
fz_fd_devnull(void)
{
	if (devnull < 0) {
		devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		FZ_CHECK(devnull >= 0, "open /dev/null: errno %d", errno);
	}
	return devnull;
}

int
fz_fd_new(void)
{
	int fd = fcntl(fz_fd_devnull(), F_DUPFD_CLOEXEC, 0);

	FZ_CHECK(fd >= 0, "dup: errno %d", errno);
	return fd;
}

int
fz_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	FZ_CHECK(d != NULL, "opendir /proc/self/fd: errno %d", errno);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.') {
			n++;
		}
	}
	closedir(d);
	/* The directory's own fd was counted while it was open. */
	return n - 1;
}

bool
fz_fd_is_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}
