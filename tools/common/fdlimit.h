/* SPDX-License-Identifier: MIT */
/*
 * The fd budget of a serving tool (vhu-backend, vhu-blk): every front-end's
 * fds are bounded by what the device layer keeps for it (one per memory
 * slot, kick, call and err per queue, the back-end channel), so the number
 * of front-ends served at once follows from RLIMIT_NOFILE. No front-end
 * can then use up the fd table, and an honest VMM's fds are never
 * truncated by the kernel for want of room.
 */
#ifndef VHU_TOOLS_FDLIMIT_H
#define VHU_TOOLS_FDLIMIT_H

/* vhu-backend's memory slots (GET_MAX_MEM_SLOTS): one fd each. */
#define TOOL_MEM_SLOTS		32u

/* fds a process needs besides its front-ends': stdio, the ring, the listener, slack. */
#define TOOL_FD_RESERVE		64u

/* \return the fds one front-end of a device with slots memory slots and queues queues may hold. */
unsigned long long tool_fd_budget(unsigned int slots, unsigned int queues);

/*
 * Raise RLIMIT_NOFILE to its hard limit, then fit *max_conns to it: 0
 * becomes as many front-ends as it holds at the budget of slots memory
 * slots and queues queues
 * (at most 2^20). \return 0, or -EMFILE after a message on stderr
 * ("NAME: ...") when not even one fits or *max_conns is more than fit (a
 * usage error: exit TOOL_EXIT_USAGE).
 */
int tool_fit_fd_limit(const char *name, unsigned int slots, unsigned int queues,
		      unsigned int *max_conns);

#endif
