/* SPDX-License-Identifier: MIT */
/*
 * The iovec cursor: resuming a transfer that stopped anywhere in an iovec
 * array (crosvm's advance_slices and advance_slices_mut, plus boundaries).
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/iov.h>

#include "helpers.h"

TestSuite(iov, .init = t_setup, .fini = t_teardown);

static char a8[8], b16[16], c8[8];

static void
three(struct iovec *iov)
{
	iov[0] = (struct iovec){ a8, sizeof(a8) };
	iov[1] = (struct iovec){ b16, sizeof(b16) };
	iov[2] = (struct iovec){ c8, sizeof(c8) };
}

/* crosvm test_advance_slices: the const view of what is left. */
Test(iov, seed_tail_8_16_8_by_10)
{
	struct iovec src[3], dst[3];
	unsigned int n;

	three(src);
	n = vhu_iov_tail(src, 3, 10, dst, 3);
	cr_assert_eq(n, 2);
	cr_assert_eq(dst[0].iov_base, b16 + 2);
	cr_assert_eq(dst[0].iov_len, 14);
	cr_assert_eq(dst[1].iov_base, c8);
	cr_assert_eq(dst[1].iov_len, 8);
	/* The source array is not touched. */
	cr_assert_eq(src[0].iov_base, a8);
	cr_assert_eq(src[0].iov_len, 8);
	cr_assert_eq(src[1].iov_len, 16);
}

/* crosvm test_advance_slices_mut: the cursor edits the array in place. */
Test(iov, seed_cursor_8_16_8_by_10)
{
	struct iovec iov[3];
	struct vhu_iovc c;

	three(iov);
	vhu_iovc_init(&c, iov, 3);
	cr_assert_eq(vhu_iovc_len(&c), 32);
	cr_assert_eq(vhu_iovc_advance(&c, 10), 10);
	cr_assert_eq(c.iov, &iov[1]);
	cr_assert_eq(c.cnt, 2);
	cr_assert_eq(c.iov->iov_base, b16 + 2);
	cr_assert_eq(c.iov->iov_len, 14);
	cr_assert_eq(vhu_iovc_len(&c), 22);
	cr_assert_not(vhu_iovc_done(&c));
	/* (iov, cnt) is usable as is for the next transfer. */
	cr_assert_eq(vhu_iov_len(c.iov, c.cnt), 22);
}

Test(iov, advance_zero_changes_nothing)
{
	struct iovec iov[3];
	struct vhu_iovc c;

	three(iov);
	vhu_iovc_init(&c, iov, 3);
	cr_assert_eq(vhu_iovc_advance(&c, 0), 0);
	cr_assert_eq(c.iov, &iov[0]);
	cr_assert_eq(c.cnt, 3);
	cr_assert_eq(c.iov->iov_base, a8);
	cr_assert_eq(c.iov->iov_len, 8);
}

Test(iov, advance_to_exact_iovec_ends)
{
	struct iovec iov[3];
	struct vhu_iovc c;

	three(iov);
	vhu_iovc_init(&c, iov, 3);
	cr_assert_eq(vhu_iovc_advance(&c, 8), 8);
	cr_assert_eq(c.iov, &iov[1]);
	cr_assert_eq(c.iov->iov_base, b16);
	cr_assert_eq(c.iov->iov_len, 16);
	cr_assert_eq(vhu_iovc_advance(&c, 16), 16);
	cr_assert_eq(c.iov, &iov[2]);
	cr_assert_eq(c.cnt, 1);
	cr_assert_eq(c.iov->iov_base, c8);
	cr_assert_eq(vhu_iovc_advance(&c, 8), 8);
	cr_assert_eq(c.cnt, 0);
	cr_assert(vhu_iovc_done(&c));
	cr_assert_eq(vhu_iovc_len(&c), 0);
}

Test(iov, advance_past_the_end_reports_what_was_consumed)
{
	struct iovec iov[3];
	struct vhu_iovc c;

	three(iov);
	vhu_iovc_init(&c, iov, 3);
	cr_assert_eq(vhu_iovc_advance(&c, 5), 5);
	cr_assert_eq(vhu_iovc_advance(&c, 100), 27);
	cr_assert(vhu_iovc_done(&c));
	cr_assert_eq(vhu_iovc_advance(&c, 1), 0);
	cr_assert(vhu_iovc_done(&c));
}

Test(iov, empty_iovecs_at_start_and_middle_are_skipped)
{
	char x[4], y[4];
	struct iovec iov[5] = {
		{ NULL, 0 }, { x, 4 }, { x + 4, 0 }, { NULL, 0 }, { y, 4 },
	};
	struct vhu_iovc c;
	struct iovec dst[5];

	vhu_iovc_init(&c, iov, 5);
	cr_assert_eq(c.iov, &iov[1], "leading empty iovec skipped on init");
	cr_assert_eq(c.cnt, 4);
	cr_assert_eq(vhu_iovc_advance(&c, 4), 4);
	cr_assert_eq(c.iov, &iov[4], "empty iovecs in the middle skipped");
	cr_assert_eq(c.cnt, 1);
	cr_assert_eq(c.iov->iov_base, y);
	cr_assert_eq(vhu_iovc_advance(&c, 1), 1);
	cr_assert_eq(c.iov->iov_base, y + 1);
	cr_assert_eq(c.iov->iov_len, 3);

	/* The const variant leaves empty iovecs out too. */
	iov[1] = (struct iovec){ x, 4 };
	iov[4] = (struct iovec){ y, 4 };
	cr_assert_eq(vhu_iov_tail(iov, 5, 0, dst, 5), 2);
	cr_assert_eq(dst[0].iov_base, x);
	cr_assert_eq(dst[1].iov_base, y);
	cr_assert_eq(vhu_iov_tail(iov, 5, 4, dst, 5), 1);
	cr_assert_eq(dst[0].iov_base, y);
	cr_assert_eq(dst[0].iov_len, 4);
}

Test(iov, all_empty_is_done_at_once)
{
	struct iovec iov[2] = { { NULL, 0 }, { NULL, 0 } };
	struct vhu_iovc c;

	vhu_iovc_init(&c, iov, 2);
	cr_assert(vhu_iovc_done(&c));
	cr_assert_eq(c.cnt, 0);
	cr_assert_eq(vhu_iovc_advance(&c, 3), 0);
}

Test(iov, cnt_zero)
{
	struct iovec iov[1] = { { a8, 8 } };
	struct iovec dst[1];
	struct vhu_iovc c;
	char buf[4];

	vhu_iovc_init(&c, iov, 0);
	cr_assert(vhu_iovc_done(&c));
	cr_assert_eq(vhu_iovc_len(&c), 0);
	cr_assert_eq(vhu_iovc_advance(&c, 4), 0);
	cr_assert_eq(vhu_iov_len(iov, 0), 0);
	cr_assert_eq(vhu_iov_tail(iov, 0, 0, dst, 1), 0);
	cr_assert_eq(vhu_iov_to_buf(iov, 0, 0, buf, sizeof(buf)), 0);
}

Test(iov, tail_at_exact_end_and_past_end_is_empty)
{
	struct iovec src[3], dst[3];

	three(src);
	cr_assert_eq(vhu_iov_tail(src, 3, 32, dst, 3), 0);
	cr_assert_eq(vhu_iov_tail(src, 3, 33, dst, 3), 0);
	cr_assert_eq(vhu_iov_tail(src, 3, 24, dst, 3), 1);
	cr_assert_eq(dst[0].iov_base, c8);
	cr_assert_eq(dst[0].iov_len, 8);
}

Test(iov, tail_respects_dst_max)
{
	struct iovec src[3], dst[3];

	three(src);
	memset(dst, 0xa5, sizeof(dst));
	cr_assert_eq(vhu_iov_tail(src, 3, 3, dst, 2), 2);
	cr_assert_eq(dst[0].iov_base, a8 + 3);
	cr_assert_eq(dst[0].iov_len, 5);
	cr_assert_eq(dst[1].iov_base, b16);
	cr_assert_eq(dst[1].iov_len, 16);
	cr_assert_eq(vhu_iov_tail(src, 3, 0, dst, 0), 0);
}

Test(iov, to_buf_copies_across_iovecs)
{
	char p[3] = { 'a', 'b', 'c' }, q[1] = { 'd' }, r[4] = { 'e', 'f', 'g', 'h' };
	struct iovec iov[4] = { { p, 3 }, { NULL, 0 }, { q, 1 }, { r, 4 } };
	char buf[8];

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(vhu_iov_to_buf(iov, 4, 0, buf, sizeof(buf)), 8);
	cr_assert_arr_eq(buf, "abcdefgh", 8);

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(vhu_iov_to_buf(iov, 4, 2, buf, 3), 3);
	cr_assert_arr_eq(buf, "cde\0", 4);

	memset(buf, 0, sizeof(buf));
	cr_assert_eq(vhu_iov_to_buf(iov, 4, 6, buf, sizeof(buf)), 2, "short at the end");
	cr_assert_arr_eq(buf, "gh\0", 3);
	cr_assert_eq(vhu_iov_to_buf(iov, 4, 8, buf, sizeof(buf)), 0);
	cr_assert_eq(vhu_iov_to_buf(iov, 4, 100, buf, sizeof(buf)), 0);
}

Test(iov, cursor_resumes_a_real_short_transfer)
{
	char src[32], dst[32];
	struct iovec iov[3] = { { dst, 5 }, { dst + 5, 20 }, { dst + 25, 7 } };
	struct vhu_iovc c;
	int sv[2];
	unsigned int i;

	for (i = 0; i < sizeof(src); i++) {
		src[i] = (char)('A' + i);
	}
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	/* Two writes, so the receiver sees at most the first in its first read. */
	cr_assert_eq(write(sv[0], src, 11), 11);
	vhu_iovc_init(&c, iov, 3);
	while (!vhu_iovc_done(&c)) {
		ssize_t n = readv(sv[1], c.iov, (int)c.cnt);

		cr_assert_gt(n, 0);
		cr_assert_eq(vhu_iovc_advance(&c, (size_t)n), (size_t)n);
		if (vhu_iovc_len(&c) == 21) {
			cr_assert_eq(write(sv[0], src + 11, 21), 21);
		}
	}
	cr_assert_arr_eq(dst, src, sizeof(src));
	close(sv[0]);
	close(sv[1]);
}
