/* SPDX-License-Identifier: MIT */
/*
 * The baseline server: the lib/ endpoint in a plain loop, as the seed
 * serves a connection. Header and body are separate recvmsg calls; a reply
 * is one send_message. Several connections get a thread each (the blocking
 * model has no other way to serve them at once), all on the server's CPU.
 */
#include <errno.h>
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
	struct blk_listen *owner;	/* --listen: the session it counts towards */
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
			/* setup failed half-way: the other threads end when their peers close */
			vhu_endpoint_destroy(w[i].ep);
			w[i].ep = NULL;
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
	pthread_cond_t idle;
	struct bench_session session;
	unsigned int sessions;	/* stop after this many (0: never) */
	int lfd;		/* the listening socket, shut down to stop accept */
};

static void *
listen_thread(void *arg)
{
	struct worker *w = arg;
	struct blk_listen *l = w->owner;
	int err = serve(w);

	vhu_endpoint_destroy(w->ep);
	pthread_mutex_lock(&l->lock);
	if (bench_session_close(&l->session, "blocking", &w->k, err, w->detail)) {
		if (l->sessions && l->session.index >= l->sessions) {
			shutdown(l->lfd, SHUT_RDWR);	/* accept() returns: we are done */
		}
		pthread_cond_broadcast(&l->idle);
	}
	pthread_mutex_unlock(&l->lock);
	free(w);
	return NULL;
}

static int
blk_listen(const struct bench_transport *t, const char *path, unsigned int sessions)
{
	struct blk_listen l = { .lock = PTHREAD_MUTEX_INITIALIZER,
				.idle = PTHREAD_COND_INITIALIZER, .sessions = sessions };
	struct vhu_listener *lis;
	pthread_attr_t attr;
	int ret;

	(void)t;
	ret = vhu_listener_create(path, true, &lis);
	if (ret < 0) {
		fprintf(stderr, "vhu-bench: --listen %s: %s\n", path, vhu_strerror(ret));
		return ret;
	}
	l.lfd = vhu_listener_fd(lis);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	bench_listen_ready(path, "blocking");
	ret = 0;
	while (!bench_listen_stopping()) {
		struct worker *w;
		int fd = vhu_listener_accept_fd(lis);

		if (fd == -EINTR || fd == -ECONNABORTED) {
			continue;
		}
		if (fd < 0) {
			pthread_mutex_lock(&l.lock);
			/* shut down by the thread that ended the last session, or a real error */
			if (!(sessions && l.session.index >= sessions)) {
				ret = fd;
				fprintf(stderr, "vhu-bench: accept: %s\n", vhu_strerror(fd));
			}
			pthread_mutex_unlock(&l.lock);
			break;
		}
		w = calloc(1, sizeof(*w));
		if (w == NULL || vhu_endpoint_from_fd(fd, &bench_server_rules, &w->ep) < 0) {
			if (w == NULL) {
				close(fd);
			}
			free(w);
			continue;
		}
		w->owner = &l;
		pthread_mutex_lock(&l.lock);
		bench_session_open(&l.session);
		pthread_mutex_unlock(&l.lock);
		if (pthread_create(&w->th, &attr, listen_thread, w) != 0) {
			vhu_endpoint_destroy(w->ep);
			pthread_mutex_lock(&l.lock);
			bench_session_close(&l.session, "blocking", NULL, -EAGAIN,
					    "pthread_create failed");
			pthread_mutex_unlock(&l.lock);
			free(w);
		}
	}
	/* let the connections of a session that is still open finish, unless stopped */
	pthread_mutex_lock(&l.lock);
	while (l.session.open > 0 && !bench_listen_stopping()) {
		pthread_cond_wait(&l.idle, &l.lock);
	}
	pthread_mutex_unlock(&l.lock);
	pthread_attr_destroy(&attr);
	vhu_listener_destroy(lis);
	return ret;
}

const struct bench_server_ops bench_server_blocking = {
	.setup = blk_setup,
	.run = blk_run,
	.teardown = blk_teardown,
	.listen = blk_listen,
};
