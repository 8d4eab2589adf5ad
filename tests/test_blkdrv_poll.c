/* SPDX-License-Identifier: MIT */
/*
 * vhu-blk (the process) through the userspace driver, notifications
 * counted: with --poll a pattern written reads back and the driver never
 * writes a kick eventfd (the back-end asked for none); without it, one
 * kick per batch; calls only when the driver asked for them, with
 * EVENT_IDX and without (vhu-blk --no-event-idx, or the driver's
 * no_event_idx); the features negotiated say which.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vhu/blkdrv.h>
#include <vhu/vhu.h>

#define DISK		(1u << 20)
#define CHUNK		4096u
#define NEVER_IDLE	"60000000"

TestSuite(blkdrv_poll, .init = t_setup, .fini = t_teardown, .timeout = 120);

/* vhu-blk serving a fresh file with extra options (NULL-terminated, at most 4). */
static void
blk_start(struct t_proc *p, const char *const extra[])
{
	const char *args[12] = { "--socket", NULL, "--file", NULL };
	unsigned int n = 4;
	int fd;

	args[1] = t_path("blk.sock");
	args[3] = t_path("disk.img");
	fd = open(args[3], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, DISK), 0);
	close(fd);
	while (extra != NULL && *extra != NULL) {
		args[n++] = *extra++;
	}
	args[n] = NULL;
	t_proc_spawn(p, "vhu-blk", args, true);
	t_proc_wait_line(p, "listening on");
}

static uint8_t
pattern(size_t off)
{
	return (uint8_t)((off * 131u) ^ (off >> 9) ^ 0x3c);
}

/* Spin on the used ring (no call asked for) until n requests completed without error. */
static void
poll_all(struct vhu_blkdrv *d, unsigned int n)
{
	struct vhu_blkdrv_completion c[16];

	while (n > 0) {
		int got = vhu_blkdrv_poll(d, 0, c, 16);

		cr_assert_geq(got, 0, "poll: %s", vhu_strerror(got));
		for (int i = 0; i < got; i++) {
			cr_assert_eq(c[i].ret, 0, "%s", vhu_strerror(c[i].ret));
		}
		n -= (unsigned int)got;
	}
}

static uint64_t
calls(struct vhu_blkdrv *d)
{
	uint64_t v = 0;

	if (read(vhu_blkdrv_call_fd(d, 0), &v, sizeof(v)) < 0) {
		cr_assert_eq(errno, EAGAIN);
		return 0;
	}
	return v;
}

/*
 * Write the disk in CHUNK requests, one per kick, and read it back, with
 * completions harvested by spinning (calls never asked for).
 * \return the kicks the driver wrote.
 */
static uint64_t
round_trip(struct vhu_blkdrv *d)
{
	uint8_t *w, *r;
	size_t off;

	cr_assert_eq(vhu_blkdrv_alloc(d, DISK, (void **)&w), 0);
	cr_assert_eq(vhu_blkdrv_alloc(d, DISK, (void **)&r), 0);
	for (off = 0; off < DISK; off++) {
		w[off] = pattern(off);
	}
	memset(r, 0, DISK);
	for (off = 0; off < DISK; off += CHUNK) {
		cr_assert_eq(vhu_blkdrv_write(d, 0, off / 512, w + off, CHUNK, NULL), 0);
		cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
		poll_all(d, 1);
	}
	for (off = 0; off < DISK; off += CHUNK) {
		cr_assert_eq(vhu_blkdrv_read(d, 0, off / 512, r + off, CHUNK, NULL), 0);
		cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
		poll_all(d, 1);
	}
	cr_assert_eq(memcmp(r, w, DISK), 0, "what was written reads back");
	return vhu_blkdrv_kicks(d, 0);
}

/* A call asked for (armed) comes, and vhu_blkdrv_wait() harvests with it. */
static void
armed_call_comes(struct vhu_blkdrv *d)
{
	struct vhu_blkdrv_completion c;
	uint8_t *b;

	cr_assert_eq(vhu_blkdrv_alloc(d, CHUNK, (void **)&b), 0);
	cr_assert_eq(vhu_blkdrv_read(d, 0, 0, b, CHUNK, NULL), 0);
	cr_assert_eq(vhu_blkdrv_kick(d, 0), 0);
	cr_assert_eq(vhu_blkdrv_wait(d, 0, &c, 1, 1, 5000), 1);
	cr_assert_eq(c.ret, 0);
}

static void
serve(const char *const extra[], const struct vhu_blkdrv_opts *o, bool event_idx, bool poll)
{
	struct t_proc p = T_PROC_INIT;
	struct vhu_blkdrv *d;
	uint64_t kicks, n;
	int rc;

	blk_start(&p, extra);
	rc = vhu_blkdrv_connect(t_path("blk.sock"), o, &d);
	cr_assert_eq(rc, 0, "connect: %s", vhu_strerror(rc));
	cr_assert_eq((vhu_blkdrv_info(d)->features >> VHU_F_RING_EVENT_IDX) & 1, event_idx);
	kicks = round_trip(d);
	if (poll) {
		cr_assert_eq(kicks, 0, "poll mode: the driver never kicks (%llu kicks)",
			     (unsigned long long)kicks);
	} else {
		cr_assert_eq(kicks, 2 * DISK / CHUNK, "waiting: one kick per request");
	}
	/* Never asked for: none (EVENT_IDX: the first completion after start is called). */
	n = calls(d);
	cr_assert_leq(n, event_idx ? 1 : 0, "%llu calls not asked for", (unsigned long long)n);
	armed_call_comes(d);
	vhu_blkdrv_destroy(d);
	cr_assert_eq(t_proc_stop(&p, SIGTERM), 0);
}

Test(blkdrv_poll, poll_mode_reads_back_without_a_kick)
{
	static const char *const extra[] = { "--poll", "--poll-idle-us", NEVER_IDLE, NULL };

	serve(extra, NULL, true, true);
}

Test(blkdrv_poll, poll_mode_without_event_idx_reads_back_without_a_kick)
{
	static const char *const extra[] = { "--poll", "--poll-idle-us", NEVER_IDLE,
					     "--no-event-idx", NULL };

	serve(extra, NULL, false, true);
}

Test(blkdrv_poll, waiting_kicks_each_request_and_calls_only_when_asked)
{
	serve(NULL, NULL, true, false);
}

Test(blkdrv_poll, the_driver_may_refuse_event_idx)
{
	struct vhu_blkdrv_opts o = { .no_event_idx = true };

	serve(NULL, &o, false, false);
}
