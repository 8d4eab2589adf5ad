/* SPDX-License-Identifier: MIT */
#include "num.h"

#include <errno.h>
#include <stddef.h>

/* Digits from s up to the first non-digit; *end points there. */
static int
digits(const char *s, uint64_t *v, const char **end)
{
	uint64_t acc = 0;
	int overflow = 0;
	const char *p = s;

	if (s == NULL || *s < '0' || *s > '9') {
		return -EINVAL;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned int d = (unsigned int)(*p - '0');

		if (acc > (UINT64_MAX - d) / 10) {
			overflow = 1;
		} else {
			acc = acc * 10 + d;
		}
	}
	*end = p;
	*v = acc;
	return overflow ? -ERANGE : 0;
}

int
tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v;
	int rc = digits(s, &v, &end);

	if (rc == -EINVAL || *end != '\0') {
		return -EINVAL;
	}
	if (rc < 0 || v < min || v > max) {
		return -ERANGE;
	}
	*out = v;
	return 0;
}

int
tool_parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *out)
{
	uint64_t v;
	int rc = tool_parse_u64(s, min, max, &v);

	if (rc == 0) {
		*out = (unsigned int)v;
	}
	return rc;
}

int
tool_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *end;
	unsigned int shift = 0;
	uint64_t v;
	int rc = digits(s, &v, &end);

	if (rc == -EINVAL) {
		return rc;
	}
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	default:
		return -EINVAL;
	}
	if (*end != '\0' && end[1] != '\0') {
		return -EINVAL;
	}
	if (rc < 0 || v > (UINT64_MAX >> shift)) {
		return -ERANGE;
	}
	v <<= shift;
	if (v < min || v > max) {
		return -ERANGE;
	}
	*out = v;
	return 0;
}
