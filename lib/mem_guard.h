/* SPDX-License-Identifier: MIT */
/*
 * Internal: the registry of live guest-memory mappings that the SIGBUS
 * guard (vhu_mem_sigbus_guard, <vhu/guest_mem.h>) consults. guest_mem.c
 * registers a region's mapping right after mmap and unregisters it before
 * munmap; nothing else uses it.
 */
#ifndef VHU_MEM_GUARD_H
#define VHU_MEM_GUARD_H

#include <stddef.h>

struct mem_guard_slot;

/*
 * Register [start, start + len): a SIGBUS inside it replaces the whole
 * range with anonymous zero pages and sets *lost and *mem_lost to 1 (both
 * must outlive the registration). \return 0 with *out set, or -ENOMEM.
 */
int vhu__mem_guard_add(void *start, size_t len, int *lost, int *mem_lost,
		       struct mem_guard_slot **out);

/*
 * Unregister: when this returns, no signal handler (on any thread) is
 * touching the range or the flags, and none will; munmap is then safe.
 * NULL is a no-op.
 */
void vhu__mem_guard_del(struct mem_guard_slot *s);

#endif
