/* SPDX-License-Identifier: MIT */
#include "helpers.h"
TestSuite(blkdrv_qsd, .init = t_setup, .fini = t_teardown);
