/* SPDX-License-Identifier: MIT */
/*
 * Strict number parsing for command lines: the whole string must be a
 * decimal number, digits only (no sign, no space, no 0x, nothing after it),
 * within [min, max].
 * \return 0 with *out set, -EINVAL if the string is not such a number,
 *         -ERANGE if it is one but lies outside [min, max] (or beyond 64
 *         bits). *out is untouched on failure.
 */
#ifndef VHU_TOOLS_NUM_H
#define VHU_TOOLS_NUM_H

#include <stdint.h>

int tool_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/** tool_parse_u64 for an unsigned int. */
int tool_parse_uint(const char *s, unsigned int min, unsigned int max, unsigned int *out);

/**
 * A size in bytes: a decimal number, optionally followed by one of K, M, G
 * (either case: KiB, MiB, GiB), with the result in [min, max].
 */
int tool_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
