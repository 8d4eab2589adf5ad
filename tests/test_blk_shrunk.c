/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk (the process) and a front-end that shrinks its guest memory
 * under the back-end's mapping: a userspace-driver client whose memfds
 * are truncated to 0, then kicked. vhu-blk must not die of SIGBUS (its
 * guard, vhu_mem_sigbus_guard): it closes that client's device with
 * VHU_EMEMLOST, logs it by name, and goes on serving another client.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vhu/blkdrv.h>
#include <vhu/vhu.h>

#define DISK		(1u << 20)
#define CHUNK		4096u
#define MAX_FD		1024

TestSuite(blk_shrunk, .init = t_setup, .fini = t_teardown, .timeout = 120);

static void
blk_start(struct t_proc *p)
{
	const char *args[] = { "--socket", t_path("blk.sock"), "--file", t_path("disk.img"), NULL };
	int fd;

	fd = open(args[3], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK), 0);
	close(fd);
	t_proc_spawn(p, "vhu-blk", args, true);
	t_proc_wait_line(p, "listening on");
}

/* Write a chunk at sector and read it back, waiting on calls. */
static void
round_trip(struct vhu_blkdrv *d, uint64_t sector, uint8_t seed)
{
	struct vhu_blkdrv_completion c;
	uint8_t *w, *r;

	cr_assert_eq(vhu_blkdrv_alloc(d, CHUNK, (void **)&w), 0);
	cr_assert_eq(vhu_blkdrv_alloc(d, CHUNK, (void **)&r), 0);
	for (size_t i = 0; i < CHUNK; i++) {
		w[i] = (uint8_t)(seed + i * 7);
	}
	memset(r, 0, CHUNK);
	cr_assert_eq(vhu_blkdrv_write(d, 0, sector, w, CHUNK, NULL), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert_eq(vhu_blkdrv_wait(d, 0, &c, 1, 1, 5000), 1);
	cr_assert_eq(c.ret, 0, "%s", vhu_strerror(c.ret));
	cr_assert_eq(vhu_blkdrv_read(d, 0, sector, r, CHUNK, NULL), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert_eq(vhu_blkdrv_wait(d, 0, &c, 1, 1, 5000), 1);
	cr_assert_eq(c.ret, 0, "%s", vhu_strerror(c.ret));
	cr_assert_eq(memcmp(r, w, CHUNK), 0, "what was written reads back");
}

static void
open_fds(bool open[MAX_FD])
{
	for (int fd = 0; fd < MAX_FD; fd++) {
		open[fd] = fcntl(fd, F_GETFD) >= 0;
	}
}

/*
 * The hostile front-end, with the driver's own fds (opened since before):
 * truncate its memfds (it never sealed them), then write every eventfd it
 * has (its kick among them). It never touches its rings again: its own
 * mapping would fault as well.
 */
static unsigned int
shrink_and_kick(const bool before[MAX_FD])
{
	unsigned int memfds = 0;
	char path[64], link[PATH_MAX];

	for (int pass = 0; pass < 2; pass++) {
		for (int fd = 0; fd < MAX_FD; fd++) {
			ssize_t n;

			if (before[fd] || fcntl(fd, F_GETFD) < 0) {
				continue;
			}
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, link, sizeof(link) - 1);
			if (n < 0) {
				continue;
			}
			link[n] = '\0';
			if (pass == 0 && strncmp(link, "/memfd:", 7) == 0) {
				cr_assert_eq(ftruncate(fd, 0), 0);
				memfds++;
			} else if (pass == 1 && strcmp(link, "anon_inode:[eventfd]") == 0) {
				uint64_t one = 1;

				cr_assert_eq(write(fd, &one, sizeof(one)), (ssize_t)sizeof(one));
			}
		}
	}
	return memfds;
}

Test(blk_shrunk, a_client_that_shrinks_its_memory_loses_only_its_device)
{
	static bool before[MAX_FD];
	struct t_proc p = T_PROC_INIT;
	struct vhu_blkdrv *good, *bad, *fresh;
	int rc;

	blk_start(&p);
	rc = vhu_blkdrv_connect(t_path("blk.sock"), NULL, &good);
	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	round_trip(good, 0, 1);

	open_fds(before);
	rc = vhu_blkdrv_connect(t_path("blk.sock"), NULL, &bad);
	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	cr_assert_geq(shrink_and_kick(before), 1, "the driver's memfd was not found");
	t_proc_wait_line(&p, "shrank under its mapping");

	/* vhu-blk lives on, and serves the other client. */
	round_trip(good, 8, 2);
	cr_assert_eq(kill(p.pid, 0), 0);
	rc = vhu_blkdrv_connect(t_path("blk.sock"), NULL, &fresh);
	cr_assert_eq(rc, 0, "a new client after the loss: %s", vhu_strerror(rc));
	round_trip(fresh, 16, 3);

	vhu_blkdrv_destroy(fresh);
	vhu_blkdrv_destroy(good);
	vhu_blkdrv_destroy(bad);
	cr_assert_eq(t_proc_stop(&p, SIGTERM), 0, "vhu-blk exits cleanly");
}
