/* SPDX-License-Identifier: MIT */
#include <vhu/version.h>

const char *vhu_version(void)
{
	return VHU_VERSION_STRING;
}
