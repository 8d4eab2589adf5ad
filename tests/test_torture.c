/* SPDX-License-Identifier: MIT */
#include "helpers.h"

TestSuite(placeholder, .init = t_setup, .fini = t_teardown);

Test(placeholder, fixture_counts_fds)
{
	cr_assert_geq(t_fd_count(), 0);
}
