/* SPDX-License-Identifier: MIT */
/*
 * Shared test helpers: fd-leak accounting, temporary directories, files to
 * pass as fds, and the real vhost-user peers installed from Debian.
 */
#ifndef VHU_TEST_HELPERS_H
#define VHU_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <criterion/criterion.h>

/* Number of open fds of this process (from /proc/self/fd). */
int t_fd_count(void);

/*
 * Suite fixture: t_setup records the fd count and makes a temporary
 * directory; t_teardown removes the directory and fails the test if the fd
 * count differs (a leak, or a double close of someone else's fd).
 * Use: TestSuite(name, .init = t_setup, .fini = t_teardown);
 */
void t_setup(void);
void t_teardown(void);

/* The current test's temporary directory (made by t_setup). */
const char *t_dir(void);

/* A path inside t_dir(); returns a static buffer (one slot per call, 8 deep). */
const char *t_path(const char *name);

/* A memfd holding content (NUL-terminated string). */
int t_memfd(const char *content);

/* An eventfd. */
int t_eventfd(void);

/*
 * True if a and b are the same open file: a byte written through a can be
 * read through b (memfds: compared by write + pread; eventfds: write a
 * count through a, read it through b; other files: same st_dev/st_ino).
 */
bool t_same_file(int a, int b);

/* Read a whole memfd (from offset 0) into buf; returns bytes read. */
ssize_t t_read_file(int fd, char *buf, size_t len);

/* A real vhost-user peer process listening on a socket vhu bound for it. */
struct t_peer {
	pid_t pid;
	char path[108];
	char name[32];
};

/*
 * Start qemu-storage-daemon with a vhost-user-blk export of a 64 MiB
 * null-co block device (num-queues 1), or /usr/lib/qemu/virtiofsd sharing
 * t_dir(). The listening socket is bound here and handed to the daemon as
 * an fd, so connect() succeeds as soon as this returns (no waiting, no
 * race). The daemon dies with the test process (PR_SET_PDEATHSIG).
 * Fails the test if the binary is missing.
 */
void t_peer_start_qsd(struct t_peer *p);
void t_peer_start_virtiofsd(struct t_peer *p);

/* Kill (SIGKILL) and reap the peer; idempotent. */
void t_peer_stop(struct t_peer *p);

#define T_QSD_BIN	"/usr/bin/qemu-storage-daemon"
#define T_VIRTIOFSD_BIN	"/usr/lib/qemu/virtiofsd"

#endif
