/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk --cpus: one reactor thread per CPU. Driven by the userspace
 * driver (<vhu/blkdrv.h>) on two queues, which land on two rings: data
 * written through one queue reads back through the other and is in the
 * file, with the data's memory added by ADD_MEM_REG or by a new
 * SET_MEM_TABLE while the queues run, and in poll mode; two clients at
 * once (their connections on different reactors) each read back their
 * own data; SIGTERM with requests in flight on both queues stops it with
 * status 0 and removes its socket; bad CPU lists are usage errors.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "tool_helpers.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vhu/blkdrv.h>

TestSuite(blk_cpus, .init = t_setup, .fini = t_tool_fini, .timeout = 120);

#define DISK_BYTES	(8u * 1024u * 1024u)
#define CHUNK		65536u
#define DEPTH		16u

/* Up to two CPUs this process may use, as a --cpus list ("0,1", or "N" with one). */
static void
cpu_list(char *buf, size_t len)
{
	cpu_set_t set;
	int c, found[2], n = 0;

	cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (c = 0; c < CPU_SETSIZE && n < 2; c++) {
		if (CPU_ISSET(c, &set)) {
			found[n++] = c;
		}
	}
	if (n == 1) {
		snprintf(buf, len, "%d", found[0]);
	} else {
		snprintf(buf, len, "%d,%d", found[0], found[1]);
	}
}

/* vhu-blk --cpus on a file of DISK_BYTES, 2 queues, and extra (or NULL); returns once it listens. */
static void
start_blk_cpus_with(const char *sock, const char *extra)
{
	char cpus[32], buf[4096] = "", want[256];
	const char *args[] = { "--socket", sock, "--file", t_path("disk.img"), "--queues", "2",
			       "--cpus", cpus, extra, NULL };
	size_t len = 0;
	int fd;

	fd = open(t_path("disk.img"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK_BYTES), 0);
	close(fd);
	cpu_list(cpus, sizeof(cpus));
	t_proc_spawn(&t_tool.backend, "vhu-blk", args, false);
	t_close_fd(&t_tool.backend.out);
	snprintf(want, sizeof(want), "vhu-blk: listening on %s:", sock);
	t_proc_read_until(t_tool.backend.err, buf, sizeof(buf), &len, want, "vhu-blk");
	t_expect_has(buf, "one ring per CPU");
}

static void
start_blk_cpus(const char *sock)
{
	start_blk_cpus_with(sock, NULL);
}

/* The userspace driver on 2 queues; with table, memory goes by SET_MEM_TABLE, not ADD_MEM_REG. */
static struct vhu_blkdrv *
connect_with(const char *sock, bool table)
{
	struct vhu_blkdrv_opts o = { .num_queues = 2, .queue_size = 64, .timeout_ms = 5000,
				     .no_mem_slots = table };
	struct vhu_blkdrv *d;
	int rc = vhu_blkdrv_connect(sock, &o, &d);

	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	return d;
}

static struct vhu_blkdrv *
connect_2q(const char *sock)
{
	return connect_with(sock, false);
}

/* One request on q, waited for. */
static void
io(struct vhu_blkdrv *d, unsigned int q, bool write, uint64_t sector, void *buf)
{
	struct vhu_blkdrv_completion c;
	int rc = write ? vhu_blkdrv_write(d, q, sector, buf, CHUNK, buf)
		       : vhu_blkdrv_read(d, q, sector, buf, CHUNK, buf);

	cr_assert_eq(rc, 0, "submit: %s", vhu_strerror(rc));
	cr_assert_eq(vhu_blkdrv_kick(d, q), 0);
	cr_assert_eq(vhu_blkdrv_wait(d, q, &c, 1, 1, 5000), 1, "queue %u: no completion", q);
	cr_assert_eq(c.ret, 0, "queue %u: %s", q, vhu_strerror(c.ret));
}

static void
data_crosses_queues(bool table, const char *extra)
{
	const char *sock = t_path("blk.sock");
	struct vhu_blkdrv *d;
	uint8_t *a, *b, disk[CHUNK];
	int fd;

	start_blk_cpus_with(sock, extra);
	d = connect_with(sock, table);
	cr_assert_eq(vhu_blkdrv_info(d)->queues, 2);
	cr_assert_eq(vhu_blkdrv_alloc(d, 2 * CHUNK, (void **)&a), 0);
	b = a + CHUNK;
	memset(a, 0xa5, CHUNK);
	io(d, 0, true, 0, a);
	memset(b, 0x5b, CHUNK);
	io(d, 1, true, 1024, b);
	memset(a, 0, CHUNK);
	memset(b, 0, CHUNK);
	io(d, 1, false, 0, b);
	io(d, 0, false, 1024, a);
	for (unsigned int i = 0; i < CHUNK; i++) {
		cr_assert_eq(b[i], 0xa5, "queue 1 reads queue 0's byte %u", i);
		cr_assert_eq(a[i], 0x5b, "queue 0 reads queue 1's byte %u", i);
	}
	vhu_blkdrv_destroy(d);
	fd = open(t_path("disk.img"), O_RDONLY | O_CLOEXEC);
	cr_assert_eq(pread(fd, disk, CHUNK, 1024 * 512), (ssize_t)CHUNK);
	close(fd);
	cr_assert_eq(disk[0], 0x5b);
	cr_assert_eq(disk[CHUNK - 1], 0x5b);
	cr_assert_eq(t_proc_stop(&t_tool.backend, SIGTERM), 0);
}

Test(blk_cpus, data_written_through_each_queue_reads_back_through_the_other)
{
	data_crosses_queues(false, NULL);
}

/* The data buffers' region comes by SET_MEM_TABLE while both queues run on their rings. */
Test(blk_cpus, same_with_the_memory_table_replaced_while_the_queues_run)
{
	data_crosses_queues(true, NULL);
}

/* Poll mode: each reactor spins on the queues homed on it. */
Test(blk_cpus, poll_mode_on_every_reactor)
{
	data_crosses_queues(false, "--poll");
}

/* Two front-ends at once: the first's connection on one reactor, the second's on the other. */
Test(blk_cpus, two_clients_at_once_each_read_back_their_data)
{
	const char *sock = t_path("blk.sock");
	struct vhu_blkdrv *d[2];
	uint8_t *buf[2];
	unsigned int c, q, i;

	start_blk_cpus(sock);
	for (c = 0; c < 2; c++) {
		d[c] = connect_2q(sock);
		cr_assert_eq(vhu_blkdrv_alloc(d[c], 2 * CHUNK, (void **)&buf[c]), 0);
	}
	/* Interleaved: client c writes its pattern through queue q at its own sectors. */
	for (q = 0; q < 2; q++) {
		for (c = 0; c < 2; c++) {
			memset(buf[c] + q * CHUNK, 0x30 + (int)(c * 2 + q), CHUNK);
			io(d[c], q, true, (c * 2 + q) * (CHUNK / 512), buf[c] + q * CHUNK);
		}
	}
	for (c = 0; c < 2; c++) {
		memset(buf[c], 0, 2 * CHUNK);
		/* Read back crossed: what queue 0 wrote through queue 1, and back. */
		io(d[c], 1, false, (c * 2) * (CHUNK / 512), buf[c]);
		io(d[c], 0, false, (c * 2 + 1) * (CHUNK / 512), buf[c] + CHUNK);
		for (i = 0; i < CHUNK; i++) {
			cr_assert_eq(buf[c][i], 0x30 + c * 2, "client %u, byte %u", c, i);
			cr_assert_eq(buf[c][CHUNK + i], 0x30 + c * 2 + 1, "client %u, byte %u", c, i);
		}
	}
	/* One goes; the other still serves. */
	vhu_blkdrv_destroy(d[0]);
	memset(buf[1], 0x7e, CHUNK);
	io(d[1], 0, true, 64, buf[1]);
	memset(buf[1], 0, CHUNK);
	io(d[1], 1, false, 64, buf[1]);
	cr_assert_eq(buf[1][0], 0x7e);
	cr_assert_eq(buf[1][CHUNK - 1], 0x7e);
	vhu_blkdrv_destroy(d[1]);
	cr_assert_eq(t_proc_stop(&t_tool.backend, SIGTERM), 0);
}

Test(blk_cpus, sigterm_under_io_exits_0_and_removes_the_socket)
{
	const char *sock = t_path("blk.sock");
	struct vhu_blkdrv *d;
	struct stat st;
	uint8_t *buf;
	unsigned int q, i;

	start_blk_cpus(sock);
	d = connect_2q(sock);
	cr_assert_eq(vhu_blkdrv_alloc(d, 2 * DEPTH * CHUNK, (void **)&buf), 0);
	memset(buf, 0x77, 2 * DEPTH * CHUNK);
	for (q = 0; q < 2; q++) {
		for (i = 0; i < DEPTH; i++) {
			uint8_t *p = buf + (q * DEPTH + i) * CHUNK;

			cr_assert_eq(vhu_blkdrv_write(d, q, (q * DEPTH + i) * (CHUNK / 512), p,
						      CHUNK, p), 0);
		}
		cr_assert_eq(vhu_blkdrv_kick(d, q), 0);
	}
	/* Stopped with writes in flight on both rings: they finish or are dropped. */
	cr_assert_eq(t_proc_stop(&t_tool.backend, SIGTERM), 0, "exit status 0");
	cr_assert_neq(stat(sock, &st), 0, "the socket is removed");
	vhu_blkdrv_destroy(d);
}

Test(blk_cpus, bad_cpu_lists_are_usage_errors)
{
	static const char *const lists[] = { "", "0,0", "1-0", "0,", "x", "0-", "4096" };
	char path[512];
	size_t i;

	t_tool_path(path, sizeof(path), "vhu-blk");
	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const char *args[] = { "--socket", t_path("blk.sock"), "--null", "1M", "--cpus",
				       lists[i], NULL };
		struct t_result r;

		t_proc_spawn(&t_tool.backend, "vhu-blk", args, false);
		t_proc_result(&t_tool.backend, &r);
		cr_assert_eq(r.status, 2, "--cpus '%s': status %d\n%s", lists[i], r.status, r.err);
		t_expect_has(r.err, "vhu-blk: --cpus: ");
	}
}
