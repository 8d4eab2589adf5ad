/* SPDX-License-Identifier: MIT */
/*
 * The SIGBUS guard: a front-end that shrinks a memory region's file (or
 * an unsealed memfd) under our MAP_SHARED mapping turns our next access
 * to the lost pages into SIGBUS, which would kill the whole process and
 * every other front-end's device with it. The guard's handler finds the
 * faulting address in a registry of live guest-memory mappings, replaces
 * that whole mapping in place with anonymous zero pages, marks the region
 * (and its table) lost, and returns: the access completes on zeroes and
 * guest_mem reports the loss by name (-VHU_EMEMLOST). Any other SIGBUS
 * goes to the handler that was installed before the guard.
 *
 * The registry is lock-free and async-signal-safe: slots in chunks that
 * are never freed, each with a state word. A handler may only act on a
 * slot it moved from LIVE to FIXING; unregistering moves LIVE to BUSY
 * (waiting out a FIXING handler on another thread), so once it returns no
 * handler touches the range and munmap cannot race with a remap of an
 * address range somebody else has been given since.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>

#include <vhu/guest_mem.h>

#include "mem_guard.h"

enum {
	SLOT_FREE,
	SLOT_BUSY,	/* its owner is filling or clearing it */
	SLOT_LIVE,	/* registered: handlers may act on it */
	SLOT_FIXING,	/* a handler is replacing the mapping */
};

struct mem_guard_slot {
	int state;
	uintptr_t start;
	size_t len;
	int *lost;
	int *mem_lost;
};

#define CHUNK_SLOTS	128u

struct chunk {
	struct chunk *next;
	struct mem_guard_slot s[CHUNK_SLOTS];
};

static struct chunk *chunks;	/* newest first; chunks are never freed */
static struct sigaction prev;	/* the SIGBUS disposition before the guard */
static int guard_state;		/* 0 none, 1 installing, 2 installed */

static void
slot_fill(struct mem_guard_slot *s, void *start, size_t len, int *lost, int *mem_lost)
{
	__atomic_store_n(&s->start, (uintptr_t)start, __ATOMIC_RELAXED);
	__atomic_store_n(&s->len, len, __ATOMIC_RELAXED);
	__atomic_store_n(&s->lost, lost, __ATOMIC_RELAXED);
	__atomic_store_n(&s->mem_lost, mem_lost, __ATOMIC_RELAXED);
	__atomic_store_n(&s->state, SLOT_LIVE, __ATOMIC_RELEASE);
}

int
vhu__mem_guard_add(void *start, size_t len, int *lost, int *mem_lost,
		   struct mem_guard_slot **out)
{
	struct chunk *c;
	unsigned int i;

	for (c = __atomic_load_n(&chunks, __ATOMIC_ACQUIRE); c != NULL; c = c->next) {
		for (i = 0; i < CHUNK_SLOTS; i++) {
			int st = SLOT_FREE;

			if (__atomic_compare_exchange_n(&c->s[i].state, &st, SLOT_BUSY, false,
							__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
				slot_fill(&c->s[i], start, len, lost, mem_lost);
				*out = &c->s[i];
				return 0;
			}
		}
	}
	/* Every slot taken: a new chunk, its first slot ours before anyone sees it. */
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return -ENOMEM;
	}
	slot_fill(&c->s[0], start, len, lost, mem_lost);
	c->next = __atomic_load_n(&chunks, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&chunks, &c->next, c, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED)) {
	}
	*out = &c->s[0];
	return 0;
}

void
vhu__mem_guard_del(struct mem_guard_slot *s)
{
	int st = SLOT_LIVE;

	if (s == NULL) {
		return;
	}
	/* A handler replacing the mapping right now finishes first (one mmap). */
	while (!__atomic_compare_exchange_n(&s->state, &st, SLOT_BUSY, false, __ATOMIC_ACQUIRE,
					    __ATOMIC_ACQUIRE)) {
		st = SLOT_LIVE;
		sched_yield();
	}
	__atomic_store_n(&s->start, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->len, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->state, SLOT_FREE, __ATOMIC_RELEASE);
}

static bool
slot_holds(struct mem_guard_slot *s, uintptr_t addr)
{
	uintptr_t start = __atomic_load_n(&s->start, __ATOMIC_RELAXED);
	size_t len = __atomic_load_n(&s->len, __ATOMIC_RELAXED);

	return addr >= start && addr - start < len;
}

/*
 * Replace the registered mapping that holds addr with zero pages.
 * \return true if addr was in guest memory and the access can be retried.
 */
static bool
guard_fix(uintptr_t addr)
{
	struct chunk *c;
	unsigned int i;

again:
	for (c = __atomic_load_n(&chunks, __ATOMIC_ACQUIRE); c != NULL; c = c->next) {
		for (i = 0; i < CHUNK_SLOTS; i++) {
			struct mem_guard_slot *s = &c->s[i];
			int st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
			void *p;

			if ((st != SLOT_LIVE && st != SLOT_FIXING) || !slot_holds(s, addr)) {
				continue;
			}
			if (st == SLOT_FIXING) {
				/* Another thread is replacing it: retry the access after. */
				while (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SLOT_FIXING) {
				}
				return true;
			}
			if (!__atomic_compare_exchange_n(&s->state, &st, SLOT_FIXING, false,
							 __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
				goto again;	/* unregistered or taken meanwhile: look again */
			}
			if (!slot_holds(s, addr)) {
				/* Re-registered for another range between the look and the pin. */
				__atomic_store_n(&s->state, SLOT_LIVE, __ATOMIC_RELEASE);
				goto again;
			}
			p = mmap((void *)s->start, s->len, PROT_READ | PROT_WRITE,
				 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (p != MAP_FAILED) {
				__atomic_store_n(s->lost, 1, __ATOMIC_RELEASE);
				__atomic_store_n(s->mem_lost, 1, __ATOMIC_RELEASE);
			}
			__atomic_store_n(&s->state, SLOT_LIVE, __ATOMIC_RELEASE);
			return p != MAP_FAILED;
		}
	}
	return false;
}

/* Not ours: what the previous disposition would have done. */
static void
chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl;

	if (prev.sa_flags & SA_SIGINFO) {
		prev.sa_sigaction(sig, si, uc);
		return;
	}
	if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
		prev.sa_handler(sig);
		return;
	}
	if (prev.sa_handler == SIG_IGN && si->si_code <= 0) {
		return;		/* a SIGBUS sent by someone, and ignored before */
	}
	/* The default action: a fault repeats on return, a sent signal is sent again. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	if (si->si_code <= 0) {
		raise(sig);
	}
}

static void
guard_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;

	if (si->si_code == BUS_ADRERR && guard_fix((uintptr_t)si->si_addr)) {
		errno = saved;
		return;
	}
	errno = saved;
	chain(sig, si, uc);
}

int
vhu_mem_sigbus_guard(void)
{
	struct sigaction sa;
	int st = 0, rc = 0;

	while (!__atomic_compare_exchange_n(&guard_state, &st, 1, false, __ATOMIC_ACQUIRE,
					    __ATOMIC_ACQUIRE)) {
		if (st == 2) {
			return 0;
		}
		st = 0;
		sched_yield();	/* another thread is installing it */
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = guard_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	/* prev first: the handler may run as soon as it is installed. */
	if (sigaction(SIGBUS, NULL, &prev) < 0 || sigaction(SIGBUS, &sa, NULL) < 0) {
		rc = -errno;
	}
	__atomic_store_n(&guard_state, rc == 0 ? 2 : 0, __ATOMIC_RELEASE);
	return rc;
}
