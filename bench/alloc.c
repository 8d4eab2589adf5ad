/* SPDX-License-Identifier: MIT */
/*
 * Heap allocation counting. vhu-bench replaces malloc and its relatives
 * with wrappers that count each call and forward to glibc's own
 * allocator (glibc's documented way of replacing malloc), so the count
 * covers every allocation in the process: libvhu, liburing, libc. Under a
 * sanitizer, which has its own allocator, nothing is replaced and nothing
 * is counted.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "peer.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BENCH_NO_ALLOC_COUNT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define BENCH_NO_ALLOC_COUNT 1
#endif
#endif

#ifndef BENCH_NO_ALLOC_COUNT

static atomic_uint_fast64_t count;

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

static inline void
counted(void)
{
	atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
}

void *
malloc(size_t size)
{
	counted();
	return __libc_malloc(size);
}

void *
calloc(size_t n, size_t size)
{
	counted();
	return __libc_calloc(n, size);
}

void *
realloc(void *p, size_t size)
{
	counted();
	return __libc_realloc(p, size);
}

void
free(void *p)
{
	__libc_free(p);
}

void *
memalign(size_t align, size_t size)
{
	counted();
	return __libc_memalign(align, size);
}

void *
aligned_alloc(size_t align, size_t size)
{
	counted();
	return __libc_memalign(align, size);
}

int
posix_memalign(void **out, size_t align, size_t size)
{
	void *p;

	if (align < sizeof(void *) || (align & (align - 1)) != 0) {
		return EINVAL;
	}
	counted();
	p = __libc_memalign(align, size);
	if (p == NULL && size != 0) {
		return ENOMEM;
	}
	*out = p;
	return 0;
}

uint64_t
bench_allocs(void)
{
	return atomic_load_explicit(&count, memory_order_relaxed);
}

bool
bench_allocs_counted(void)
{
	return true;
}

#else

uint64_t
bench_allocs(void)
{
	return 0;
}

bool
bench_allocs_counted(void)
{
	return false;
}

#endif
