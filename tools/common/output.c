/* SPDX-License-Identifier: MIT */
#include "output.h"

#include <errno.h>
#include <string.h>

#include <vhu/version.h>

void
tool_print_version(FILE *f, const char *name)
{
	fprintf(f, "%s vhu %s\n", name, vhu_version());
}

int
tool_output_flush(FILE *f)
{
	errno = 0;
	if (fflush(f) != 0) {
		return errno ? -errno : -EIO;
	}
	if (ferror(f)) {
		/* an earlier write failed; stdio does not keep its errno */
		return -EIO;
	}
	return 0;
}

int
tool_output_close(FILE *f, const char *name, const char *what)
{
	int rc = tool_output_flush(f);

	if (f != stdout && f != stderr) {
		errno = 0;
		if (fclose(f) != 0 && rc == 0) {
			rc = errno ? -errno : -EIO;
		}
	}
	if (rc < 0) {
		fprintf(stderr, "%s: writing %s: %s\n", name, what, strerror(-rc));
	}
	return rc;
}
