/* SPDX-License-Identifier: MIT */
#include "json.h"

#include <stdbool.h>
#include <string.h>

static bool
is_cont(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

size_t
tool_utf8_len(const unsigned char *p, size_t len)
{
	unsigned char c;
	size_t need, i;

	if (len == 0) {
		return 0;
	}
	c = p[0];
	if (c < 0x80) {
		return 1;
	}
	if (c < 0xc2) {
		/* A continuation byte, or the lead of an overlong 2-byte form. */
		return 0;
	}
	if (c < 0xe0) {
		need = 2;
	} else if (c < 0xf0) {
		need = 3;
	} else if (c < 0xf5) {
		need = 4;
	} else {
		return 0;
	}
	if (len < need) {
		return 0;
	}
	for (i = 1; i < need; i++) {
		if (!is_cont(p[i])) {
			return 0;
		}
	}
	/* The second byte's range rules out overlongs, surrogates and > U+10FFFF. */
	if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) ||
	    (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)) {
		return 0;
	}
	return need;
}

void
tool_json_mem(FILE *f, const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t i = 0, n;

	putc('"', f);
	while (i < len) {
		unsigned char c = b[i];

		if (c == '"' || c == '\\') {
			putc('\\', f);
			putc(c, f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			putc(c, f);
			i++;
		} else if ((n = tool_utf8_len(b + i, len - i)) != 0) {
			fwrite(b + i, 1, n, f);
			i += n;
		} else {
			fprintf(f, "\\u%04x", c);
			i++;
		}
	}
	putc('"', f);
}

void
tool_json_str(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("null", f);
		return;
	}
	tool_json_mem(f, s, strlen(s));
}
