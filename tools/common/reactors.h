/* SPDX-License-Identifier: MIT */
/*
 * Reactors for a serving tool (vhu-blk --cpus): one thread per CPU of a
 * list, pinned to it, each creating and driving its own ring. The calling
 * thread is the first reactor (the control ring: the listener, the
 * connections, the log) and the only one that takes the stop signals; the
 * others only run their rings. Stopping: the tool destroys its device
 * server, tool_reactors_serve() drives the first ring until the server is
 * gone (ops->server_gone = tool_reactors_server_gone), then stops the
 * threads, each destroying its own ring.
 */
#ifndef VHU_TOOLS_REACTORS_H
#define VHU_TOOLS_REACTORS_H

#include <stdbool.h>

struct vhu_ring;
struct vhu_ring_opts;
struct vhu_dev_server;

/* CPUs a list may name (one reactor each). */
#define TOOL_MAX_CPUS	64u

/*
 * A CPU list: "N", "N-M" and commas between ("0,2-3"), each CPU once, in
 * the order given, each one this process may run on (its affinity mask).
 * \return 0 with cpus[0..*n) set; -EINVAL (syntax, a CPU twice, more than
 *         TOOL_MAX_CPUS), -ERANGE (a CPU this process may not use); a
 *         message naming the fault goes to why (whysz bytes).
 */
int tool_parse_cpus(const char *s, unsigned int *cpus, unsigned int *n, char *why,
		    unsigned int whysz);

struct tool_reactors;

/*
 * Pin this thread to cpus[0] and start one thread for each further CPU,
 * pinned, each with a ring of its own made with ro. \return 0 with *out
 * set, or -errno (logged; nothing is left running).
 */
int tool_reactors_start(const unsigned int *cpus, unsigned int n, const struct vhu_ring_opts *ro,
			struct tool_reactors **out);

/* The rings, [0] the calling thread's; tool_reactors_count() of them. */
struct vhu_ring *const *tool_reactors_rings(const struct tool_reactors *rx);
unsigned int tool_reactors_count(const struct tool_reactors *rx);

/* For vhu_dev_ops.server_gone: the server let go of every ring. */
void tool_reactors_server_gone(void *ctx);

/*
 * Run the first ring until SIGINT, SIGTERM or SIGHUP (as tool_serve), then
 * destroy srv, drive the first ring until the server is gone (its devices'
 * requests finished or dropped on every ring; at most a few seconds), stop
 * and join the threads and destroy every ring; rx is freed. \return 0, or
 * the first ring's error (logged).
 */
int tool_reactors_serve(struct tool_reactors *rx, struct vhu_dev_server *srv, bool busy_poll);

/*
 * Stop and join the threads, destroy every ring and free rx (start-up
 * failures, before a server exists).
 */
void tool_reactors_stop(struct tool_reactors *rx);

#endif
