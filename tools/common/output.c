/* SPDX-License-Identifier: MIT */
#include "output.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <vhu/version.h>

void
tool_print_version(FILE *f, const char *name)
{
	fprintf(f, "%s vhu %s\n", name, vhu_version());
}

/* tool_output_flush; *known is false when only the error flag says a write failed. */
static int
flush_known(FILE *f, bool *known)
{
	*known = true;
	errno = 0;
	if (fflush(f) != 0) {
		return errno ? -errno : -EIO;
	}
	if (ferror(f)) {
		/* an earlier write failed; stdio does not keep its errno */
		*known = false;
		return -EIO;
	}
	return 0;
}

int
tool_output_flush(FILE *f)
{
	bool known;

	return flush_known(f, &known);
}

int
tool_output_close(FILE *f, const char *name, const char *what)
{
	bool known;
	int rc = flush_known(f, &known);

	if (f != stdout && f != stderr) {
		errno = 0;
		if (fclose(f) != 0 && rc == 0) {
			rc = errno ? -errno : -EIO;
		}
	}
	if (rc < 0 && known) {
		fprintf(stderr, "%s: writing %s: %s\n", name, what, strerror(-rc));
	} else if (rc < 0) {
		fprintf(stderr, "%s: writing %s failed (a full device? a reader that went "
			"away?)\n", name, what);
	}
	return rc;
}
