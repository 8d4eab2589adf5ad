/* SPDX-License-Identifier: MIT */
/*
 * The JSON string writer shared by the tools and the bench harness.
 *
 * Any input bytes give a valid JSON string in valid UTF-8:
 *  - '"' and '\\' are escaped with a backslash;
 *  - control characters (0x00..0x1f) and DEL (0x7f) are written as \u00xx
 *    (lower-case hex, as the tools have always written them);
 *  - a well-formed UTF-8 sequence (no overlong form, no surrogate, nothing
 *    above U+10FFFF) is copied unchanged;
 *  - every other byte (>= 0x80 and not part of a well-formed sequence) is
 *    written as \u00xx, its value as a code point in U+0080..U+00FF. The
 *    output stays valid and the byte value can be read back, but a reader
 *    cannot tell such a byte from the character U+00xx written escaped.
 */
#ifndef VHU_TOOLS_JSON_H
#define VHU_TOOLS_JSON_H

#include <stddef.h>
#include <stdio.h>

/** Write s (NUL-terminated) as a quoted JSON string. NULL writes null. */
void tool_json_str(FILE *f, const char *s);

/** Write len bytes at p (NULs included) as a quoted JSON string. */
void tool_json_mem(FILE *f, const void *p, size_t len);

/**
 * The length of the well-formed UTF-8 sequence at the start of p (at most
 * len bytes): 1 for ASCII, 2..4 for a multibyte character, 0 if the bytes
 * there do not begin a well-formed sequence.
 */
size_t tool_utf8_len(const unsigned char *p, size_t len);

#endif
