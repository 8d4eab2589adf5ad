/* SPDX-License-Identifier: MIT */
/* Fields in text (key=value, {...}, [...]) or as JSON members, one writer for both. */
#include <inttypes.h>
#include <stdio.h>

#include "common/json.h"
#include "trace.h"

void
e_key(struct emit *e, const char *key)
{
	if (e->sep[e->depth]) {
		putc(e->json ? ',' : ' ', e->f);
	}
	e->sep[e->depth] = true;
	if (key == NULL) {
		return;
	}
	if (e->json) {
		tool_json_str(e->f, key);
		putc(':', e->f);
	} else {
		fprintf(e->f, "%s=", key);
	}
}

void
e_open(struct emit *e, const char *key, char bracket)
{
	e_key(e, key);
	putc(bracket, e->f);
	if (e->depth + 1 < sizeof(e->sep) / sizeof(e->sep[0])) {
		e->depth++;
	}
	e->sep[e->depth] = false;
}

void
e_close(struct emit *e, char bracket)
{
	putc(bracket, e->f);
	if (e->depth > 0) {
		e->depth--;
	}
}

void
e_dec(struct emit *e, const char *key, uint64_t v)
{
	e_key(e, key);
	fprintf(e->f, "%" PRIu64, v);
}

void
e_hex(struct emit *e, const char *key, uint64_t v)
{
	e_key(e, key);
	fprintf(e->f, e->json ? "\"0x%" PRIx64 "\"" : "0x%" PRIx64, v);
}

void
e_str(struct emit *e, const char *key, const char *v)
{
	e_key(e, key);
	if (e->json) {
		tool_json_str(e->f, v);
	} else {
		fputs(v, e->f);
	}
}

void
e_bool(struct emit *e, const char *key, bool v)
{
	e_key(e, key);
	fputs(v ? "true" : "false", e->f);
}
