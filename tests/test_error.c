/* SPDX-License-Identifier: MIT */
#include "helpers.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <vhu/error.h>

TestSuite(error, .init = t_setup, .fini = t_teardown);

struct expect {
	int code;
	const char *name;
	const char *protocol;	/* the string must start with "<protocol>: " */
	bool invalid;
	bool fds;
	bool guest;
};

static const struct expect codes[] = {
	{ VHU_EDISCONNECT, "VHU_EDISCONNECT", "Disconnect", false, false, false },
	{ VHU_EPARTIAL, "VHU_EPARTIAL", "PartialMessage", false, false, false },
	{ VHU_EINVALID, "VHU_EINVALID", "InvalidMessage", true, false, false },
	{ VHU_EFDS, "VHU_EFDS", "IncorrectFds", false, true, false },
	{ VHU_EOVERSIZED, "VHU_EOVERSIZED", "OversizedMsg", false, false, false },
	{ VHU_EVERSION, "VHU_EVERSION", "InvalidMessage", true, false, false },
	{ VHU_EFLAGS, "VHU_EFLAGS", "InvalidMessage", true, false, false },
	{ VHU_EREQUEST, "VHU_EREQUEST", "InvalidMessage", true, false, false },
	{ VHU_EBODYSIZE, "VHU_EBODYSIZE", "InvalidMessage", true, false, false },
	{ VHU_EBODY, "VHU_EBODY", "InvalidMessage", true, false, false },
	{ VHU_ECTRUNC, "VHU_ECTRUNC", "IncorrectFds", false, true, false },
	{ VHU_EQFULL, "VHU_EQFULL", "Backpressure", false, false, false },
	{ VHU_EREPLY, "VHU_EREPLY", "InvalidMessage", true, false, false },
	{ VHU_EFDKIND, "VHU_EFDKIND", "IncorrectFds", false, true, false },
	{ VHU_EGUESTADDR, "VHU_EGUESTADDR", "GuestMemory", false, false, true },
	{ VHU_EMEMREGION, "VHU_EMEMREGION", "GuestMemory", false, false, false },
	{ VHU_EMEMSLOTS, "VHU_EMEMSLOTS", "GuestMemory", false, false, false },
	{ VHU_EVQSIZE, "VHU_EVQSIZE", "VirtqueueBroken", false, false, true },
	{ VHU_EVQRING, "VHU_EVQRING", "VirtqueueBroken", false, false, true },
	{ VHU_EVQIDX, "VHU_EVQIDX", "VirtqueueBroken", false, false, true },
	{ VHU_EVQDESC, "VHU_EVQDESC", "VirtqueueBroken", false, false, true },
	{ VHU_EVQLOOP, "VHU_EVQLOOP", "VirtqueueBroken", false, false, true },
	{ VHU_EVQINDIRECT, "VHU_EVQINDIRECT", "VirtqueueBroken", false, false, true },
	{ VHU_EVQORDER, "VHU_EVQORDER", "VirtqueueBroken", false, false, true },
	{ VHU_EVQSEGS, "VHU_EVQSEGS", "VirtqueueBroken", false, false, true },
	{ VHU_EUSEDID, "VHU_EUSEDID", "DeviceBroken", false, false, false },
	{ VHU_EUSEDLEN, "VHU_EUSEDLEN", "DeviceBroken", false, false, false },
	{ VHU_EUSEDIDX, "VHU_EUSEDIDX", "DeviceBroken", false, false, false },
	{ VHU_EBLKSTATUS, "VHU_EBLKSTATUS", "DeviceBroken", false, false, false },
	{ VHU_EINFLIGHT, "VHU_EINFLIGHT", "VirtqueueBroken", false, false, true },
	{ VHU_EMEMLOST, "VHU_EMEMLOST", "GuestMemory", false, false, true },
};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

Test(error, table_covers_every_code)
{
	/* A new code added to error.h without a row here fails this test. */
	cr_assert_eq(NCODES, (size_t)(VHU_ERROR_END - VHU_ERROR_BASE - 1));
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_eq(codes[i].code, VHU_ERROR_BASE + 1 + (int)i);
	}
}

Test(error, strings_name_the_protocol_fault)
{
	for (size_t i = 0; i < NCODES; i++) {
		const char *s = vhu_strerror(-codes[i].code);
		size_t n = strlen(codes[i].protocol);

		cr_assert_not_null(s);
		cr_assert_eq(strncmp(s, codes[i].protocol, n), 0, "%s: \"%s\"", codes[i].name, s);
		cr_assert_eq(strncmp(s + n, ": ", 2), 0, "%s: \"%s\"", codes[i].name, s);
		cr_assert_gt(strlen(s), n + 2, "%s has no sentence", codes[i].name);
	}
}

Test(error, strings_are_distinct)
{
	for (size_t i = 0; i < NCODES; i++) {
		for (size_t j = i + 1; j < NCODES; j++) {
			const char *a = vhu_strerror(-codes[i].code);
			const char *b = vhu_strerror(-codes[j].code);

			cr_assert_str_neq(a, b, "%s and %s share a string", codes[i].name,
					  codes[j].name);
		}
		cr_assert_str_neq(vhu_strerror(-codes[i].code), vhu_strerror(-VHU_ERETRY));
	}
}

Test(error, disconnect_text)
{
	cr_assert_str_eq(vhu_strerror(-VHU_EDISCONNECT), "Disconnect: peer closed the connection");
}

Test(error, retry_is_socket_retry)
{
	cr_assert_eq(VHU_ERETRY, EAGAIN);
	cr_assert_eq(strncmp(vhu_strerror(-VHU_ERETRY), "SocketRetry: ", 13), 0);
	cr_assert_str_eq(vhu_strerror(-EWOULDBLOCK), vhu_strerror(-VHU_ERETRY));
}

Test(error, errname_round_trips)
{
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_str_eq(vhu_errname(-codes[i].code), codes[i].name);
		cr_assert_str_eq(vhu_errname(codes[i].code), codes[i].name);
	}
	cr_assert_str_eq(vhu_errname(-EPIPE), "EPIPE");
	cr_assert_str_eq(vhu_errname(-ECONNRESET), "ECONNRESET");
	cr_assert_str_eq(vhu_errname(-ECONNREFUSED), "ECONNREFUSED");
	cr_assert_str_eq(vhu_errname(-EAGAIN), "EAGAIN");
	cr_assert_str_eq(vhu_errname(-EINTR), "EINTR");
	cr_assert_str_eq(vhu_errname(-EBADF), "EBADF");
	cr_assert_str_eq(vhu_errname(-ENOBUFS), "ENOBUFS");
	cr_assert_str_eq(vhu_errname(-EMFILE), "EMFILE");
	cr_assert_str_eq(vhu_errname(-EINVAL), "EINVAL");
	cr_assert_str_eq(vhu_errname(EPIPE), "EPIPE");
}

Test(error, errname_unknown)
{
	cr_assert_str_eq(vhu_errname(-VHU_ERROR_BASE), "E?");
	cr_assert_str_eq(vhu_errname(-VHU_ERROR_END), "E?");
	cr_assert_str_eq(vhu_errname(-100000), "E?");
	cr_assert_str_eq(vhu_errname(INT_MIN), "E?");
	cr_assert_str_eq(vhu_errname(INT_MAX), "E?");
}

Test(error, sign_does_not_matter)
{
	int vals[] = { VHU_EPARTIAL, VHU_EBODY, VHU_ERETRY, EPIPE, ECONNRESET, 100000 };

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		cr_assert_str_eq(vhu_strerror(vals[i]), vhu_strerror(-vals[i]));
		cr_assert_str_eq(vhu_errname(vals[i]), vhu_errname(-vals[i]));
		cr_assert_eq(vhu_err_is_invalid_message(vals[i]),
			     vhu_err_is_invalid_message(-vals[i]));
		cr_assert_eq(vhu_err_is_incorrect_fds(vals[i]), vhu_err_is_incorrect_fds(-vals[i]));
	}
}

Test(error, errno_falls_back_to_strerror)
{
	int vals[] = { EPIPE, ECONNRESET, ECONNREFUSED, ENOENT, EBADF, EINTR, EMSGSIZE };

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		cr_assert_str_eq(vhu_strerror(-vals[i]), strerror(vals[i]));
	}
}

Test(error, unknown_values_get_a_string)
{
	cr_assert_not_null(vhu_strerror(-VHU_ERROR_BASE));
	cr_assert_not_null(vhu_strerror(-VHU_ERROR_END));
	cr_assert_not_null(vhu_strerror(INT_MIN));
	cr_assert_not_null(vhu_strerror(123456));
	cr_assert_gt(strlen(vhu_strerror(123456)), 0);
	/* The base and end markers are not codes and must not pose as one. */
	cr_assert_eq(strchr(vhu_strerror(-VHU_ERROR_BASE), ':'), NULL);
	cr_assert_eq(strchr(vhu_strerror(-VHU_ERROR_END), ':'), NULL);
}

Test(error, group_predicates)
{
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_eq(vhu_err_is_invalid_message(-codes[i].code), codes[i].invalid,
			     "%s", codes[i].name);
		cr_assert_eq(vhu_err_is_incorrect_fds(-codes[i].code), codes[i].fds,
			     "%s", codes[i].name);
		cr_assert_eq(vhu_err_is_guest_fault(-codes[i].code), codes[i].guest,
			     "%s", codes[i].name);
		cr_assert_eq(vhu_err_is_guest_fault(codes[i].code), codes[i].guest,
			     "%s", codes[i].name);
	}
	cr_assert_not(vhu_err_is_guest_fault(0));
	cr_assert_not(vhu_err_is_guest_fault(-EFAULT));
	cr_assert_not(vhu_err_is_guest_fault(INT_MIN));
	cr_assert_not(vhu_err_is_invalid_message(0));
	cr_assert_not(vhu_err_is_invalid_message(-EINVAL));
	cr_assert_not(vhu_err_is_invalid_message(-EPROTO));
	cr_assert_not(vhu_err_is_incorrect_fds(-EBADF));
	cr_assert_not(vhu_err_is_incorrect_fds(-VHU_ERETRY));
	cr_assert_not(vhu_err_is_invalid_message(INT_MIN));
}
