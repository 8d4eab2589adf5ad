/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user-blk driver against qemu-storage-daemon: a raw file export
 * with 2 queues (a pattern written through the driver is in the file, read
 * directly, and reads back through the driver), and a null-co export
 * (reads of zeroes, at depth, on both queues).
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/blkdrv.h>
#include <vhu/vhu.h>

#define DISK	(4u << 20)

TestSuite(blkdrv_qsd, .init = t_setup, .fini = t_teardown, .timeout = 120);

/* qemu-storage-daemon with blockdev, exporting it on a socket bound here (no race). */
static pid_t
qsd_start(const char *blockdev, const char *node, unsigned int queues, char *path, size_t plen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char exp[256];
	pid_t pid;
	int lfd;

	cr_assert_eq(access(T_QSD_BIN, X_OK), 0, "qemu-storage-daemon is not installed");
	snprintf(path, plen, "%s", t_path("qsd.sock"));
	strcpy(sa.sun_path, path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);	/* inherited by the daemon */
	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	snprintf(exp, sizeof(exp),
		 "type=vhost-user-blk,id=e0,node-name=%s,num-queues=%u,writable=on,"
		 "addr.type=fd,addr.str=%d", node, queues, lfd);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (null >= 0 && !getenv("VHU_TEST_PEER_LOG")) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl(T_QSD_BIN, "qemu-storage-daemon", "--blockdev", blockdev, "--export", exp,
		      (char *)NULL);
		_exit(127);
	}
	close(lfd);
	return pid;
}

static void
qsd_stop(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

static void
wait_all(struct vhu_blkdrv *d, unsigned int q, unsigned int n)
{
	struct vhu_blkdrv_completion c[64];

	while (n > 0) {
		int got = vhu_blkdrv_wait(d, q, c, 1, 64, 5000);

		cr_assert_gt(got, 0, "wait: %s", vhu_strerror(got));
		for (int i = 0; i < got; i++) {
			cr_assert_eq(c[i].ret, 0, "request %p: %s", c[i].cookie,
				     vhu_strerror(c[i].ret));
		}
		n -= (unsigned int)got;
	}
}

static uint8_t
pattern(size_t off)
{
	return (uint8_t)((off * 131u) ^ (off >> 9) ^ 0x5a);
}

Test(blkdrv_qsd, file_export_two_queues_pattern)
{
	struct vhu_blkdrv_opts o = { .num_queues = 2, .queue_size = 64, .timeout_ms = 5000 };
	char bdev[512], path[108];
	const char *file = t_path("disk.raw");
	struct vhu_blkdrv *d;
	uint8_t *w, *r, *back;
	size_t half = DISK / 2, chunk = 64 * 1024;
	pid_t pid;
	int fd, rc;

	fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK), 0);
	snprintf(bdev, sizeof(bdev),
		 "driver=file,node-name=f0,filename=%s,cache.direct=off", file);
	pid = qsd_start(bdev, "f0", 2, path, sizeof(path));
	rc = vhu_blkdrv_connect(path, &o, &d);
	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	cr_assert_eq(vhu_blkdrv_info(d)->capacity, DISK / 512);
	cr_assert_eq(vhu_blkdrv_info(d)->num_queues, 2);
	cr_assert_eq(vhu_blkdrv_alloc(d, DISK, (void **)&w), 0);
	cr_assert_eq(vhu_blkdrv_alloc(d, DISK, (void **)&r), 0);
	for (size_t i = 0; i < DISK; i++) {
		w[i] = pattern(i);
	}
	/* Queue 0 writes the first half, queue 1 the second, 32 requests at a time. */
	for (unsigned int q = 0; q < 2; q++) {
		for (size_t off = q * half; off < (q + 1) * half; off += chunk) {
			cr_assert_eq(vhu_blkdrv_write(d, q, off / 512, w + off, chunk,
						      (void *)off), 0);
		}
		cr_assert_eq(vhu_blkdrv_kick(d, q), 0);
	}
	wait_all(d, 0, (unsigned int)(half / chunk));
	wait_all(d, 1, (unsigned int)(half / chunk));
	rc = vhu_blkdrv_flush(d, 0, NULL);
	if (rc == 0) {
		cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
		wait_all(d, 0, 1);
	} else {
		cr_assert_eq(rc, -ENOTSUP);
	}

	/* The file holds the pattern (raw format: read it directly). */
	back = malloc(DISK);
	cr_assert_not_null(back);
	cr_assert_eq(pread(fd, back, DISK, 0), (ssize_t)DISK);
	cr_assert_eq(memcmp(back, w, DISK), 0, "the file holds what the driver wrote");
	free(back);

	/* And reads back through the driver, each queue reading the other's half. */
	memset(r, 0, DISK);
	for (unsigned int q = 0; q < 2; q++) {
		for (size_t off = (1 - q) * half; off < (2 - q) * half; off += chunk) {
			cr_assert_eq(vhu_blkdrv_read(d, q, off / 512, r + off, chunk, NULL), 0);
		}
		cr_assert_eq(vhu_blkdrv_kick(d, q), 0);
	}
	wait_all(d, 0, (unsigned int)(half / chunk));
	wait_all(d, 1, (unsigned int)(half / chunk));
	cr_assert_eq(memcmp(r, w, DISK), 0, "reads through the driver match");

	/* A write past the end fails with an I/O error, not a hang. */
	cr_assert_eq(vhu_blkdrv_write(d, 0, DISK / 512, w, 4096, NULL), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	{
		struct vhu_blkdrv_completion c;

		cr_assert_eq(vhu_blkdrv_wait(d, 0, &c, 1, 1, 5000), 1);
		cr_assert_eq(c.ret, -EIO, "%s", vhu_strerror(c.ret));
	}
	vhu_blkdrv_destroy(d);
	close(fd);
	qsd_stop(pid);
}

Test(blkdrv_qsd, null_export_reads_polled_at_depth)
{
	struct vhu_blkdrv_opts o = { .num_queues = 2, .queue_size = 128, .timeout_ms = 5000 };
	char path[108];
	struct vhu_blkdrv *d;
	struct vhu_blkdrv_completion c[32];
	uint8_t *m;
	unsigned int done = 0, submitted = 0;
	pid_t pid;
	int rc;

	pid = qsd_start("driver=null-co,node-name=n0,size=67108864,read-zeroes=on", "n0", 2, path,
			sizeof(path));
	rc = vhu_blkdrv_connect(path, &o, &d);
	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	cr_assert_eq(vhu_blkdrv_alloc(d, 32 * 4096, (void **)&m), 0);
	memset(m, 0xee, 32 * 4096);
	/* 2000 reads on queue 1 at depth 32, completions by polling (with a bound). */
	for (unsigned long spins = 0; done < 2000 && spins < 200000000ul; spins++) {
		while (submitted < 2000 && submitted - done < 32) {
			unsigned int slot = submitted % 32;

			rc = vhu_blkdrv_read(d, 1, (submitted * 8ull) % 131072, m + slot * 4096,
					     4096, NULL);
			cr_assert_eq(rc, 0, "%s", vhu_strerror(rc));
			submitted++;
		}
		cr_assert_eq(vhu_blkdrv_kick(d, 1), 0);
		rc = vhu_blkdrv_poll(d, 1, c, 32);
		cr_assert_geq(rc, 0);
		for (int i = 0; i < rc; i++) {
			cr_assert_eq(c[i].ret, 0);
		}
		done += (unsigned int)rc;
	}
	cr_assert_eq(done, 2000);
	for (size_t i = 0; i < 32 * 4096; i++) {
		cr_assert_eq(m[i], 0, "read-zeroes=on");
	}
	vhu_blkdrv_destroy(d);
	qsd_stop(pid);
}

/*
 * vhu-bench --scenario blk-randread against qsd ($VHU_BUILD_ROOT/bench/vhu-bench),
 * with one more option if extra is not NULL.
 */
static int
bench_run(const char *sock, const char *extra, char *out, size_t cap)
{
	const char *root = getenv("VHU_BUILD_ROOT");
	char bin[512], conn[160];
	size_t len = 0;
	int po[2], st;
	pid_t pid;

	cr_assert_not_null(root, "VHU_BUILD_ROOT is not set");
	snprintf(bin, sizeof(bin), "%s/bench/vhu-bench", root);
	snprintf(conn, sizeof(conn), "null=%s", sock);
	cr_assert_eq(pipe2(po, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(po[1], 1);
		char *argv[] = { "vhu-bench", "--scenario", "blk-randread", "--iodepth", "4",
				 "--queues", "2", "--reps", "1", "--time", "100", "--json",
				 "--connect", conn, (char *)extra, NULL };

		execv(bin, argv);
		_exit(127);
	}
	close(po[1]);
	for (;;) {
		ssize_t n = read(po[0], out + len, cap - 1 - len);

		if (n <= 0) {
			break;
		}
		len += (size_t)n;
	}
	out[len] = '\0';
	close(po[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Test(blkdrv_qsd, bench_blk_scenario_json_and_garbage_fails)
{
	char path[108], out[4096];
	pid_t pid;
	int rc;

	pid = qsd_start("driver=null-co,node-name=n0,size=67108864,read-zeroes=on", "n0", 2, path,
			sizeof(path));
	rc = bench_run(path, NULL, out, sizeof(out));
	qsd_stop(pid);
	cr_assert_eq(rc, 0, "vhu-bench: %d\n%s", rc, out);
	cr_assert_not_null(strstr(out, "\"scenario\":\"blk-randread\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"target\":\"null\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"iops\":"), "%s", out);
	cr_assert_not_null(strstr(out, "\"p999_us\":"), "%s", out);
	cr_assert_not_null(strstr(out, "\"verified\":\"zeroes\""), "%s", out);

	/* read-zeroes=off: reads leave the buffer as it was, which is garbage. */
	unlink(path);
	pid = qsd_start("driver=null-co,node-name=n0,size=67108864", "n0", 2, path, sizeof(path));
	rc = bench_run(path, NULL, out, sizeof(out));
	qsd_stop(pid);
	cr_assert_eq(rc, 1, "a back-end that returns garbage fails the run\n%s", out);
	cr_assert_not_null(strstr(out, "\"status\":\"failed\""), "%s", out);
}

/*
 * --wait sleeps on the call eventfds when nothing has completed: every
 * request still completes (a lost call would end the run with "waiting for
 * a call"), against a back-end none of us wrote.
 */
Test(blkdrv_qsd, bench_blk_wait_sleeps_on_calls)
{
	char path[108], out[4096];
	pid_t pid;
	int rc;

	pid = qsd_start("driver=null-co,node-name=n0,size=67108864,read-zeroes=on", "n0", 2, path,
			sizeof(path));
	rc = bench_run(path, "--wait", out, sizeof(out));
	qsd_stop(pid);
	cr_assert_eq(rc, 0, "vhu-bench --wait: %d\n%s", rc, out);
	cr_assert_not_null(strstr(out, "\"verified\":\"zeroes\""), "%s", out);
	cr_assert_null(strstr(out, "waiting for a call"), "%s", out);
}
