/* SPDX-License-Identifier: MIT */
/*
 * The life of a serving tool (vhu-backend, vhu-blk) around its ring: may
 * it listen on its path, and the loop that runs the ring until a signal.
 * Both report through tools/common/log.
 */
#ifndef VHU_TOOLS_SERVE_H
#define VHU_TOOLS_SERVE_H

#include <stdbool.h>

struct vhu_ring;

/*
 * tool_listen_check() with its reason logged.
 * \return 0 when the tool may listen on path; else the exit status:
 *         TOOL_EXIT_ADDRINUSE (a live listener answers), TOOL_EXIT_CONNECT.
 */
int tool_serve_check_path(const char *path);

/*
 * What a serving tool installs before it serves: the stop signals
 * (tool_signals_install) and the SIGBUS guard (vhu_mem_sigbus_guard: a
 * front-end that shrinks its memory under us loses its device, not the
 * process). \return 0, or a negative errno after logging which failed.
 */
int tool_serve_prepare(void);

/*
 * Run ring until SIGINT, SIGTERM or SIGHUP: waiting in slices (or spinning
 * with busy_poll), writing pending log lines after each pass; logs which
 * signal stopped it. \return 0, or the ring's error (logged).
 */
int tool_serve(struct vhu_ring *ring, bool busy_poll);

#endif
