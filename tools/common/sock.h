/* SPDX-License-Identifier: MIT */
/*
 * Socket paths as the tools meet them: before listening, tell a live
 * listener (refuse) from a socket file a dead process left behind
 * (replace it); before or after a failed connect, say why in words.
 */
#ifndef VHU_TOOLS_SOCK_H
#define VHU_TOOLS_SOCK_H

#include <stddef.h>

/**
 * May a listener be created on path (the library's unlink_stale then
 * replacing a dead socket file)? A connection the listener takes is held
 * up to 500 ms: one that hangs up meanwhile means a listener closing (a
 * back-end just killed; its io_uring keeps the socket open a few ms after
 * the process), and path is looked at once more.
 * \return 0 when nothing is there, or a socket file nobody listens on
 *         (connect is refused); -EADDRINUSE when a listener answers (the
 *         connect succeeds and is not hung up, or succeeds twice, or its
 *         backlog is full); -EEXIST when path is
 *         something other than a socket (never replaced); -errno when it
 *         cannot be checked (-EACCES...). why gets a one-line reason.
 */
int tool_listen_check(const char *path, char *why, size_t len);

/**
 * Describe a failed connect to path (err: -errno of it, -ETIMEDOUT for a
 * deadline of timeout_ms that passed) in words, naming the likely cause:
 * no such file, not a socket, not permitted, nothing listening, backlog full.
 */
void tool_connect_why(const char *path, int err, int timeout_ms, char *why, size_t len);

/**
 * Connect to path within timeout_ms and hang up at once: can a front-end
 * connect there? \return 0, or -errno with why filled (tool_connect_why).
 */
int tool_connect_check(const char *path, int timeout_ms, char *why, size_t len);

#endif
