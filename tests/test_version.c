/* SPDX-License-Identifier: MIT */
/*
 * The version three ways: the macros of <vhu/version.h>, the string the
 * library returns, and meson's project version (VHU_PROJECT_VERSION, passed
 * by tests/meson.build). This test links libvhu.so, as programs do (unless
 * the build has no libvhu.so: VHU_LINKED_SHARED).
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <vhu/vhu.h>

TestSuite(version, .init = t_setup, .fini = t_teardown);

Test(version, library_matches_headers)
{
	cr_assert_not_null(vhu_version());
	cr_assert_str_eq(vhu_version(), VHU_VERSION_STRING);
}

Test(version, headers_match_project)
{
	cr_assert_str_eq(VHU_VERSION_STRING, VHU_PROJECT_VERSION);
}

Test(version, string_matches_numbers)
{
	char s[64];

	snprintf(s, sizeof(s), "%d.%d.%d", VHU_VERSION_MAJOR, VHU_VERSION_MINOR,
		 VHU_VERSION_PATCH);
	cr_assert_str_eq(s, VHU_VERSION_STRING);
}

Test(version, number_orders_versions)
{
	cr_assert_eq(VHU_VERSION_NUMBER,
		     VHU_VERSION_ENCODE(VHU_VERSION_MAJOR, VHU_VERSION_MINOR, VHU_VERSION_PATCH));
	cr_assert_lt(VHU_VERSION_ENCODE(0, 9, 999), VHU_VERSION_ENCODE(0, 10, 0));
	cr_assert_lt(VHU_VERSION_ENCODE(0, 999, 999), VHU_VERSION_ENCODE(1, 0, 0));
#if VHU_VERSION_NUMBER < VHU_VERSION_ENCODE(0, 1, 0)
	cr_assert_fail("VHU_VERSION_NUMBER is not usable in #if");
#endif
}

/* vhu_version() comes from the shared library, not from a copy linked in. */
Test(version, from_the_shared_library)
{
	Dl_info info;

	if (!VHU_LINKED_SHARED)
		cr_skip_test("-Ddefault_library=static: no libvhu.so");
	cr_assert_neq(dladdr((void *)vhu_version, &info), 0);
	cr_assert_not_null(strstr(info.dli_fname, "/libvhu.so"), "vhu_version() is in %s",
			   info.dli_fname);
}
