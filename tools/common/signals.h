/* SPDX-License-Identifier: MIT */
/*
 * Signal set-up shared by the tools: SIGINT, SIGTERM and SIGHUP set a stop
 * flag, without SA_RESTART, so that a blocking call (poll, accept, a ring
 * wait) returns EINTR and the loop around it can look at the flag. SIGPIPE
 * is ignored: a reader of our output that went away must not kill us
 * mid-session; the write fails with EPIPE instead.
 */
#ifndef VHU_TOOLS_SIGNALS_H
#define VHU_TOOLS_SIGNALS_H

/** Install the handlers. \return 0 or -errno. */
int tool_signals_install(void);

/** The stop signal that arrived last (SIGINT, SIGTERM, SIGHUP), or 0 if none. */
int tool_stop_signal(void);

#endif
