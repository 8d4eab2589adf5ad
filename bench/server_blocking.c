/* SPDX-License-Identifier: MIT */
/*
 * The baseline server: the lib/ endpoint in a plain loop, as the seed
 * serves a connection. Header and body are separate recvmsg calls; a reply
 * is one send_message. Several connections get a thread each (the blocking
 * model has no other way to serve them at once), all on the server's CPU.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vhu/listener.h>

#include "listen.h"
#include "peer.h"

struct worker {
	struct vhu_endpoint *ep;
	struct bench_counts k;
	pthread_t th;
	bool started;
	int err;
	char detail[120];
	struct blk_listen *owner;	/* --listen */
	unsigned int id;		/* --listen: accept order */
};

/* One connection until the peer closes: 0 then, or the error. */
static int
serve(struct worker *w)
{
	uint8_t body[BENCH_MAX_SIZE] __attribute__((aligned(8)));
	struct vhu_fds fds;

	vhu_fds_init(&fds);
	for (;;) {
		uint8_t reply[BENCH_REPLY_SIZE];
		struct vhu_hdr hdr;
		int ret;

		ret = vhu_endpoint_recv_header(w->ep, &hdr, &fds);
		if (ret == -VHU_EDISCONNECT) {
			return 0;
		}
		if (ret == 0 && hdr.size) {
			ret = vhu_endpoint_recv_body_bytes(w->ep, &hdr, body, sizeof(body), &fds);
		}
		if (ret == 0) {
			ret = bench_serve(&w->k, &hdr, fds.fd, fds.n, reply);
		}
		vhu_fds_close(&fds);
		if (ret == 1) {
			ret = vhu_endpoint_send_message(w->ep, (const struct vhu_hdr *)reply,
							reply + sizeof(hdr), sizeof(uint64_t),
							NULL, 0);
		}
		if (ret < 0) {
			snprintf(w->detail, sizeof(w->detail), "request %llu: %s",
				 (unsigned long long)w->k.msgs, vhu_strerror(ret));
			/* the peer sees the end at once, not when the other connections end */
			shutdown(vhu_endpoint_fd(w->ep), SHUT_RDWR);
			return ret;
		}
	}
}

static void *
serve_thread(void *arg)
{
	struct worker *w = arg;

	w->err = serve(w);
	return NULL;
}

static int
blk_setup(struct bench_server *s)
{
	struct worker *w = calloc(s->nconns, sizeof(*w));

	s->priv = w;
	if (w == NULL) {
		snprintf(s->detail, sizeof(s->detail), "out of memory");
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < s->nconns; i++) {
		int ret = vhu_endpoint_from_fd(s->fds[i], &bench_server_rules, &w[i].ep);

		s->fds[i] = -1;	/* the endpoint owns it, also on failure */
		if (ret < 0) {
			snprintf(s->detail, sizeof(s->detail), "vhu_endpoint_from_fd: %s",
				 vhu_strerror(ret));
			return ret;
		}
	}
	/* threads start here, before the client does: none is made per message */
	for (unsigned int i = 0; s->nconns > 1 && i < s->nconns; i++) {
		int ret = pthread_create(&w[i].th, NULL, serve_thread, &w[i]);

		if (ret != 0) {
			snprintf(s->detail, sizeof(s->detail), "pthread_create: %s", strerror(ret));
			return -ret;
		}
		w[i].started = true;
	}
	return 0;
}

static void
add_counts(struct bench_counts *to, const struct bench_counts *k)
{
	to->msgs += k->msgs;
	to->replies += k->replies;
	to->fds += k->fds;
	to->fd_msgs += k->fd_msgs;
	to->probes += k->probes;
}

static int
blk_run(struct bench_server *s)
{
	struct worker *w = s->priv;
	int ret = 0;

	if (s->nconns == 1) {
		w[0].err = serve(&w[0]);
	}
	for (unsigned int i = 0; i < s->nconns; i++) {
		if (w[i].started) {
			pthread_join(w[i].th, NULL);
			w[i].started = false;
		}
		add_counts(&s->k, &w[i].k);
		if (w[i].err < 0 && ret == 0) {
			ret = w[i].err;
			snprintf(s->detail, sizeof(s->detail), "connection %u: %s", i + 1,
				 w[i].detail);
		}
	}
	return ret;
}

static void
blk_teardown(struct bench_server *s)
{
	struct worker *w = s->priv;

	for (unsigned int i = 0; w && i < s->nconns; i++) {
		if (w[i].started) {
			/* setup failed half-way: end the thread's receive, then wait for it */
			shutdown(vhu_endpoint_fd(w[i].ep), SHUT_RDWR);
			pthread_join(w[i].th, NULL);
		}
		vhu_endpoint_destroy(w[i].ep);
	}
	free(w);
	s->priv = NULL;
}

/* ------------------------------------------------------------------ */
/* --listen                                                            */

struct blk_listen {
	pthread_mutex_t lock;
	unsigned int accepted;
	unsigned int closed;
	unsigned int exit_after;	/* stop after this many closed (0: never) */
	int lfd;		/* the listening socket, shut down to stop accept */
};

/* For the process's life: detached threads may still use it after blk_listen() returns. */
static struct blk_listen listen_state = { .lock = PTHREAD_MUTEX_INITIALIZER, .lfd = -1 };

/* A connection is done (also one that never got a thread). */
static void
conn_done(struct blk_listen *l)
{
	pthread_mutex_lock(&l->lock);
	if (++l->closed == l->exit_after && l->lfd >= 0) {
		shutdown(l->lfd, SHUT_RDWR);	/* accept() returns: we are done */
	}
	pthread_mutex_unlock(&l->lock);
}

static void *
listen_thread(void *arg)
{
	struct worker *w = arg;
	struct blk_listen *l = w->owner;
	struct bench_conn_stat cs;
	int err;

	bench_conn_begin(&cs, w->id, CLOCK_THREAD_CPUTIME_ID);
	err = serve(w);
	vhu_endpoint_destroy(w->ep);
	bench_conn_end(&cs, "blocking", &w->k, err, w->detail);
	free(w);
	conn_done(l);	/* counts it; after the last one, shuts accept() down */
	return NULL;
}

static bool
done(struct blk_listen *l)
{
	bool d;

	pthread_mutex_lock(&l->lock);
	d = l->exit_after && l->closed >= l->exit_after;
	pthread_mutex_unlock(&l->lock);
	return d;
}

/*
 * A thread for a connection, with SIGINT, SIGTERM and SIGHUP blocked in it,
 * so that they reach the accepting thread and cut its poll short.
 */
static int
spawn(struct worker *w, pthread_attr_t *attr)
{
	sigset_t stops, old;
	int rc;

	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stops, &old);
	rc = pthread_create(&w->th, attr, listen_thread, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static int
blk_listen(const struct bench_transport *t, const char *path, unsigned int exit_after)
{
	struct blk_listen *l = &listen_state;
	struct vhu_listener *lis;
	pthread_attr_t attr;
	int ret;

	(void)t;
	ret = vhu_listener_create(path, true, &lis);
	if (ret < 0) {
		fprintf(stderr, "vhu-bench: --listen %s: %s\n", path, vhu_strerror(ret));
		return ret;
	}
	l->exit_after = exit_after;
	l->lfd = vhu_listener_fd(lis);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	bench_listen_ready(path, "blocking");
	ret = 0;
	while (!bench_listen_stopping()) {
		struct pollfd pfd = { .fd = l->lfd, .events = POLLIN };
		struct worker *w;
		int fd;

		/*
		 * Wait in poll, not in accept: the library's accept retries EINTR
		 * itself, so a stop signal would never be seen there. poll returns
		 * EINTR (no SA_RESTART), and the loop looks at the stop flag.
		 */
		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR) {
				continue;
			}
			ret = -errno;
			fprintf(stderr, "vhu-bench: poll: %s\n", strerror(errno));
			break;
		}
		fd = vhu_listener_accept_fd(lis);
		if (fd == -EINTR || fd == -ECONNABORTED || fd == -VHU_ERETRY) {
			continue;
		}
		if (fd < 0) {
			/* shut down by the thread that closed the last connection, or a real error */
			if (!done(l)) {
				ret = fd;
				fprintf(stderr, "vhu-bench: accept: %s\n", vhu_strerror(fd));
			}
			break;
		}
		w = calloc(1, sizeof(*w));
		if (w == NULL) {
			close(fd);
			conn_done(l);
			continue;
		}
		if (vhu_endpoint_from_fd(fd, &bench_server_rules, &w->ep) < 0) {
			free(w);
			conn_done(l);
			continue;
		}
		w->owner = l;
		w->id = ++l->accepted;
		if (spawn(w, &attr) != 0) {
			fprintf(stderr, "vhu-bench: connection %u: no thread for it\n", w->id);
			vhu_endpoint_destroy(w->ep);
			free(w);
			conn_done(l);
		}
	}
	/* the threads of connections still open end with the process */
	pthread_attr_destroy(&attr);
	pthread_mutex_lock(&l->lock);
	vhu_listener_destroy(lis);
	l->lfd = -1;	/* a thread closing later must not shut down a reused fd */
	pthread_mutex_unlock(&l->lock);
	return ret;
}

const struct bench_server_ops bench_server_blocking = {
	.setup = blk_setup,
	.run = blk_run,
	.teardown = blk_teardown,
	.listen = blk_listen,
};
