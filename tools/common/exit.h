/* SPDX-License-Identifier: MIT */
/*
 * The exit statuses every tool (vhu-backend, vhu-blk, vhu-probe, vhu-trace,
 * vhu-bench) shares. A code means the same thing in each tool; a tool uses
 * only those that can happen to it. Documented in each man page and in
 * docs/tools.md; the values are part of the interface: never renumber.
 */
#ifndef VHU_TOOLS_EXIT_H
#define VHU_TOOLS_EXIT_H

enum tool_exit {
	TOOL_EXIT_OK = 0,	 /**< success; also a stop by SIGINT, SIGTERM or SIGHUP */
	TOOL_EXIT_FAILURE = 1,	 /**< any other failure, output that could not be written included */
	TOOL_EXIT_USAGE = 2,	 /**< bad command line, or one the system cannot honour */
	TOOL_EXIT_CONNECT = 3,	 /**< cannot connect (no such socket, not a socket, not
				      permitted, refused, not accepted in time) or cannot listen */
	TOOL_EXIT_CLOSED = 4,	 /**< the peer closed the connection mid-exchange */
	TOOL_EXIT_PROTOCOL = 5,	 /**< the peer broke the protocol */
	TOOL_EXIT_TIMEOUT = 6,	 /**< a request got no reply within its deadline */
	TOOL_EXIT_ADDRINUSE = 7, /**< a live listener already answers on the path to listen on */
};

#endif
