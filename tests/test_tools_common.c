/* SPDX-License-Identifier: MIT */
/*
 * tools/common: the JSON string writer (valid UTF-8 JSON for any bytes)
 * and the strict number parsers; socket paths (live listener or stale
 * file), the output check and --version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <vhu/version.h>

#include "common/json.h"
#include "common/num.h"
#include "common/output.h"
#include "common/sock.h"
#include "helpers.h"

TestSuite(tools_common, .init = t_setup, .fini = t_teardown);

/* ---- JSON ------------------------------------------------------------ */

struct out {
	char *buf;
	size_t len;
};

static void
json_of(const void *p, size_t len, struct out *o)
{
	FILE *f = open_memstream(&o->buf, &o->len);

	cr_assert_not_null(f);
	tool_json_mem(f, p, len);
	cr_assert_eq(fclose(f), 0);
}

/* An independent UTF-8 check by code point: no overlong, surrogate or > U+10FFFF. */
static bool
valid_utf8(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint32_t cp, min;
		size_t n, k;

		if (s[i] < 0x80) {
			i++;
			continue;
		} else if ((s[i] & 0xe0) == 0xc0) {
			n = 2, cp = s[i] & 0x1f, min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			n = 3, cp = s[i] & 0x0f, min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			n = 4, cp = s[i] & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (i + n > len) {
			return false;
		}
		for (k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80) {
				return false;
			}
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			return false;
		}
		i += n;
	}
	return true;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

/*
 * Check o is one valid JSON string in valid UTF-8, and read it back by the
 * writer's documented rule (\u00xx is the byte xx) into back.
 */
static size_t
json_check(const struct out *o, unsigned char *back, size_t cap)
{
	const unsigned char *s = (const unsigned char *)o->buf;
	size_t i, n = 0;

	cr_assert(valid_utf8(s, o->len), "output is not valid UTF-8: %s", o->buf);
	cr_assert_geq(o->len, 2);
	cr_assert_eq(s[0], '"');
	cr_assert_eq(s[o->len - 1], '"');
	for (i = 1; i < o->len - 1; i++) {
		cr_assert_lt(n, cap);
		cr_assert(s[i] >= 0x20 && s[i] != 0x7f, "raw control byte 0x%02x at %zu", s[i], i);
		cr_assert_neq(s[i], '"', "unescaped quote at %zu", i);
		if (s[i] != '\\') {
			back[n++] = s[i];
			continue;
		}
		cr_assert_lt(i + 1, o->len - 1);
		if (s[i + 1] == '"' || s[i + 1] == '\\') {
			back[n++] = s[++i];
			continue;
		}
		cr_assert_eq(s[i + 1], 'u', "unknown escape \\%c", s[i + 1]);
		cr_assert_leq(i + 6, o->len - 1);
		cr_assert(s[i + 2] == '0' && s[i + 3] == '0', "escape above U+00FF");
		cr_assert(hexval(s[i + 4]) >= 0 && hexval(s[i + 5]) >= 0, "bad hex digit");
		back[n++] = (unsigned char)(hexval(s[i + 4]) * 16 + hexval(s[i + 5]));
		i += 5;
	}
	return n;
}

static void
expect_round_trip(const void *in, size_t len)
{
	unsigned char back[1024];
	struct out o;
	size_t n;

	json_of(in, len, &o);
	n = json_check(&o, back, sizeof(back));
	cr_assert_eq(n, len, "read back %zu bytes of %zu: %s", n, len, o.buf);
	cr_assert_arr_eq(back, in, len, "read back differs: %s", o.buf);
	free(o.buf);
}

static void
expect_json(const void *in, size_t len, const char *want)
{
	struct out o;

	json_of(in, len, &o);
	cr_assert_str_eq(o.buf, want);
	free(o.buf);
}

Test(tools_common, json_every_single_byte)
{
	unsigned int b;

	for (b = 0; b < 256; b++) {
		unsigned char c = (unsigned char)b;

		expect_round_trip(&c, 1);
	}
}

Test(tools_common, json_all_bytes_in_one_string)
{
	unsigned char all[256];
	unsigned int b;

	for (b = 0; b < 256; b++) {
		all[b] = (unsigned char)b;
	}
	expect_round_trip(all, sizeof(all));
}

Test(tools_common, json_escapes_quote_backslash_controls)
{
	expect_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
	expect_json("\n\t\x01", 3, "\"\\u000a\\u0009\\u0001\"");
	expect_json("\x7f", 1, "\"\\u007f\"");
	expect_json("\0x", 2, "\"\\u0000x\"");
	expect_json("", 0, "\"\"");
}

Test(tools_common, json_valid_multibyte_passes_unchanged)
{
	/* é (2 bytes), € (3), U+1F600 (4), U+10FFFF (the last code point). */
	const char *s = "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
	char want[64];

	snprintf(want, sizeof(want), "\"%s\"", s);
	expect_json(s, strlen(s), want);
	expect_round_trip(s, strlen(s));
}

Test(tools_common, json_invalid_utf8_is_escaped_byte_by_byte)
{
	/* A lone continuation byte, a truncated sequence, an overlong '/'. */
	expect_json("\x80", 1, "\"\\u0080\"");
	expect_json("\xe2\x82", 2, "\"\\u00e2\\u0082\"");
	expect_json("\xc0\xaf", 2, "\"\\u00c0\\u00af\"");
	/* Overlong 3-byte, a surrogate, above U+10FFFF, 0xf5 and 0xff leads. */
	expect_json("\xe0\x80\xaf", 3, "\"\\u00e0\\u0080\\u00af\"");
	expect_json("\xed\xa0\x80", 3, "\"\\u00ed\\u00a0\\u0080\"");
	expect_json("\xf4\x90\x80\x80", 4, "\"\\u00f4\\u0090\\u0080\\u0080\"");
	expect_json("\xf5\xff", 2, "\"\\u00f5\\u00ff\"");
	/* A bad byte between good ones leaves the good ones alone. */
	expect_json("\xc3\xa9\xff\xc3\xa9", 5, "\"\xc3\xa9\\u00ff\xc3\xa9\"");
	expect_round_trip("\xed\xa0\x80\xc3\xe2\x82\xac\xf0\x9f\x98", 10);
}

Test(tools_common, json_str_null_and_nul_terminated)
{
	struct out o;
	FILE *f = open_memstream(&o.buf, &o.len);

	cr_assert_not_null(f);
	tool_json_str(f, NULL);
	fputc(' ', f);
	tool_json_str(f, "x\xff");
	cr_assert_eq(fclose(f), 0);
	cr_assert_str_eq(o.buf, "null \"x\\u00ff\"");
	free(o.buf);
}

/* ---- numbers --------------------------------------------------------- */

Test(tools_common, parse_u64_accepts_whole_decimals_in_range)
{
	uint64_t v = 7;

	cr_assert_eq(tool_parse_u64("0", 0, 10, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(tool_parse_u64("10", 0, 10, &v), 0);
	cr_assert_eq(v, 10);
	cr_assert_eq(tool_parse_u64("007", 1, 10, &v), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(tool_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
}

Test(tools_common, parse_u64_rejects_what_is_not_a_number)
{
	static const char *bad[] = {
		"", " 1", "1 ", "+1", "-1", "0x10", "1e3", "1.5", "12a", "a", "١",
	};
	uint64_t v = 42;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(tool_parse_u64(bad[i], 0, UINT64_MAX, &v), -EINVAL, "\"%s\"", bad[i]);
	}
	cr_assert_eq(tool_parse_u64(NULL, 0, 1, &v), -EINVAL);
	cr_assert_eq(v, 42, "untouched on failure");
}

Test(tools_common, parse_u64_range_and_overflow_are_erange)
{
	uint64_t v = 42;

	cr_assert_eq(tool_parse_u64("0", 1, 10, &v), -ERANGE);
	cr_assert_eq(tool_parse_u64("11", 1, 10, &v), -ERANGE);
	cr_assert_eq(tool_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	cr_assert_eq(tool_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	cr_assert_eq(v, 42);
}

Test(tools_common, parse_uint_fits_unsigned_int)
{
	unsigned int u = 0;

	cr_assert_eq(tool_parse_uint("3600000", 1, 3600000, &u), 0);
	cr_assert_eq(u, 3600000);
	cr_assert_eq(tool_parse_uint("4294967296", 0, UINT32_MAX, &u), -ERANGE);
	cr_assert_eq(tool_parse_uint("0", 1, 5, &u), -ERANGE);
}

Test(tools_common, parse_size_suffixes)
{
	uint64_t v = 0;

	cr_assert_eq(tool_parse_size("512", 1, UINT64_MAX, &v), 0);
	cr_assert_eq(v, 512);
	cr_assert_eq(tool_parse_size("4k", 1, UINT64_MAX, &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(tool_parse_size("64M", 1, UINT64_MAX, &v), 0);
	cr_assert_eq(v, 64ull << 20);
	cr_assert_eq(tool_parse_size("2g", 1, UINT64_MAX, &v), 0);
	cr_assert_eq(v, 2ull << 30);
	cr_assert_eq(tool_parse_size("1KB", 1, UINT64_MAX, &v), -EINVAL);
	cr_assert_eq(tool_parse_size("1T", 1, UINT64_MAX, &v), -EINVAL);
	cr_assert_eq(tool_parse_size("K", 1, UINT64_MAX, &v), -EINVAL);
	cr_assert_eq(tool_parse_size("0", 1, UINT64_MAX, &v), -ERANGE);
	cr_assert_eq(tool_parse_size("17179869184G", 1, UINT64_MAX, &v), -ERANGE);
	cr_assert_eq(tool_parse_size("2k", 1, 1024, &v), -ERANGE);
}

/* ---- socket paths, output, version ---------------------------------- */

/* A bound socket at path, listening with backlog (or only bound when backlog < 0). */
static int
bound_socket(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	if (backlog >= 0) {
		cr_assert_eq(listen(fd, backlog), 0);
	}
	return fd;
}

Test(tools_common, listen_check_free_and_stale)
{
	const char *path = t_path("s.sock");
	char why[256] = "";
	int fd;

	cr_assert_eq(tool_listen_check(path, why, sizeof(why)), 0, "nothing there");
	/* bound but never listening, then closed: what a dead process leaves */
	fd = bound_socket(path, -1);
	close(fd);
	cr_assert_eq(tool_listen_check(path, why, sizeof(why)), 0, "stale: %s", why);
	unlink(path);
}

Test(tools_common, listen_check_refuses_live_listener)
{
	const char *path = t_path("s.sock");
	char why[256] = "";
	int fd = bound_socket(path, 4);

	cr_assert_eq(tool_listen_check(path, why, sizeof(why)), -EADDRINUSE);
	cr_assert(strstr(why, "live listener"), "%s", why);
	close(fd);
	unlink(path);
}

/* tool_listen_check in a thread, so that the test can act on the listener meanwhile. */
struct check_run {
	const char *path;
	char why[256];
	int rc;
};

static void *
check_thread(void *p)
{
	struct check_run *c = p;

	c->rc = tool_listen_check(c->path, c->why, sizeof(c->why));
	return NULL;
}

/* Wait (bounded) for a connection on the listener fd. */
static void
wait_connection(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	cr_assert_eq(poll(&p, 1, T_PROC_WAIT_MS), 1, "no connection in %d ms", T_PROC_WAIT_MS);
}

/*
 * A listener that closes with the check's connection still in its backlog
 * (a back-end just SIGKILLed: its io_uring lets go of the socket a few ms
 * after the process) is not live: the file it leaves is stale.
 */
Test(tools_common, listen_check_waits_out_a_closing_listener)
{
	struct check_run c = { .path = t_path("s.sock") };
	int fd = bound_socket(c.path, 4);
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, check_thread, &c), 0);
	wait_connection(fd);
	close(fd);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(c.rc, 0, "stale after the close: %s", c.why);
	unlink(c.path);
}

/* One that hangs up on each connection but goes on listening is live. */
Test(tools_common, listen_check_refuses_a_listener_that_drops_connections)
{
	struct check_run c = { .path = t_path("s.sock") };
	int fd = bound_socket(c.path, 4);
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, check_thread, &c), 0);
	wait_connection(fd);
	close(accept(fd, NULL, NULL));
	wait_connection(fd);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(c.rc, -EADDRINUSE, "%s", c.why);
	cr_assert(strstr(c.why, "live listener"), "%s", c.why);
	close(fd);
	unlink(c.path);
}

Test(tools_common, listen_check_refuses_listener_with_full_backlog)
{
	const char *path = t_path("s.sock");
	char why[256] = "";
	int fd = bound_socket(path, 0), c[4];
	unsigned int n = 0;

	/* fill the backlog: non-blocking connects until one is refused with EAGAIN */
	for (; n < 4; n++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		c[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(c[n], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			cr_assert_eq(errno, EAGAIN, "%s", strerror(errno));
			close(c[n]);
			break;
		}
	}
	cr_assert_lt(n, 4, "the backlog filled up");
	cr_assert_eq(tool_listen_check(path, why, sizeof(why)), -EADDRINUSE, "%s", why);
	for (unsigned int i = 0; i < n; i++) {
		close(c[i]);
	}
	close(fd);
	unlink(path);
}

Test(tools_common, listen_check_never_replaces_a_file)
{
	const char *path = t_path("file");
	char why[256] = "";
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(tool_listen_check(path, why, sizeof(why)), -EEXIST);
	cr_assert(strstr(why, "not a socket"), "%s", why);
	unlink(path);
}

Test(tools_common, connect_check_names_the_cause)
{
	const char *file = t_path("file"), *stale = t_path("stale.sock");
	char why[256] = "";
	FILE *f = fopen(file, "w");
	int fd;

	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(tool_connect_check(t_path("none.sock"), 1000, why, sizeof(why)), -ENOENT);
	cr_assert(strstr(why, "no such socket"), "%s", why);
	cr_assert_lt(tool_connect_check(file, 1000, why, sizeof(why)), 0);
	cr_assert(strstr(why, "not a socket"), "%s", why);
	close(bound_socket(stale, -1));
	cr_assert_eq(tool_connect_check(stale, 1000, why, sizeof(why)), -ECONNREFUSED);
	cr_assert(strstr(why, "stale socket"), "%s", why);
	fd = bound_socket(t_path("live.sock"), 4);
	cr_assert_eq(tool_connect_check(t_path("live.sock"), 1000, why, sizeof(why)), 0);
	close(fd);
	tool_connect_why("/x", -ETIMEDOUT, 2000, why, sizeof(why));
	cr_assert(strstr(why, "did not accept within 2000 ms"), "%s", why);
	unlink(file);
	unlink(stale);
	unlink(t_path("live.sock"));
}

Test(tools_common, output_flush_reports_a_full_device)
{
	FILE *f = fopen("/dev/full", "w");

	cr_assert_not_null(f);
	fputs("x\n", f);
	cr_assert_eq(tool_output_flush(f), -ENOSPC);
	fclose(f);
}

Test(tools_common, output_close_reports_a_closed_pipe)
{
	int p[2];
	FILE *f;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	f = fdopen(p[1], "w");
	cr_assert_not_null(f);
	fputs("x\n", f);
	cr_assert_eq(tool_output_close(f, "test", "the pipe"), -EPIPE);
}

Test(tools_common, version_names_tool_and_library)
{
	char *buf = NULL, want[64];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	tool_print_version(f, "vhu-x");
	fclose(f);
	snprintf(want, sizeof(want), "vhu-x vhu %s\n", vhu_version());
	cr_assert_str_eq(buf, want);
	free(buf);
}
