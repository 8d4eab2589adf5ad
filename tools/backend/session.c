/* SPDX-License-Identifier: MIT */
/*
 * Security model: the front-end is one step away from a guest that may have
 * escaped, so every field is range-checked here even though the engine has
 * validated layout and fd counts already, bodies are copied out before use
 * (engine buffers carry no alignment promise), and no value from the wire
 * ever indexes an array unchecked. A request this back-end does not
 * implement ends the connection instead of being half-handled.
 *
 * Guest memory is never mapped: this back-end has no device data path. The
 * region, vring and back-end channel fds are kept only so that their
 * lifetime is what the front-end expects (held until replaced or closed).
 */
#include "session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/fds.h>

#include "log.h"

#define BIT(n)		(1ull << (n))
#define PF(name)	BIT(VHU_PROTOCOL_F_##name)

/* Largest vring size the virtio spec allows for a split ring. */
#define VRING_MAX_NUM	32768u

struct be_vring {
	uint32_t num;
	uint32_t base;
	struct vhu_vring_addr addr;
	bool enabled;
	bool started;
	int kick_fd;
	int call_fd;
	int err_fd;
};

struct be_region {
	struct vhu_mem_region r;
	int fd;
};

struct be_session {
	const struct be_device *dev;
	unsigned int id;
	uint64_t features;		/* acked with SET_FEATURES */
	bool features_set;
	uint64_t protocol_features;	/* acked with SET_PROTOCOL_FEATURES */
	bool protocol_set;
	bool owner;
	uint8_t status;
	int backend_fd;			/* back-end channel socket, or -1 */
	unsigned int nregions;
	struct be_region regions[BE_MAX_MEM_SLOTS];
	unsigned int nqueues;
	struct be_vring vrings[];
};

typedef int handler_fn(struct be_session *s, struct vhu_msg *msg, struct be_reply *r);

struct handler {
	handler_fn *fn;
	uint64_t gate;		/* protocol features that must have been acked */
	bool needs_pf;		/* bit 30 acked, or SET_PROTOCOL_FEATURES seen */
	bool replies;		/* answers with a body of its own: never an extra ack */
};

static void
fd_replace(int *slot, int fd)
{
	if (*slot >= 0) {
		close(*slot);
	}
	*slot = fd;
}

static void
vring_init(struct be_vring *vr)
{
	memset(vr, 0, sizeof(*vr));
	vr->kick_fd = -1;
	vr->call_fd = -1;
	vr->err_fd = -1;
}

static void
vring_reset(struct be_vring *vr)
{
	fd_replace(&vr->kick_fd, -1);
	fd_replace(&vr->call_fd, -1);
	fd_replace(&vr->err_fd, -1);
	vring_init(vr);
}

static void
regions_close(struct be_session *s)
{
	unsigned int i;

	for (i = 0; i < s->nregions; i++) {
		fd_replace(&s->regions[i].fd, -1);
	}
	s->nregions = 0;
}

struct be_session *
be_session_new(const struct be_device *dev, unsigned int id)
{
	struct be_session *s;
	unsigned int i;

	s = calloc(1, sizeof(*s) + dev->queues * sizeof(s->vrings[0]));
	if (s == NULL) {
		return NULL;
	}
	s->dev = dev;
	s->id = id;
	s->backend_fd = -1;
	s->nqueues = dev->queues;
	for (i = 0; i < s->nqueues; i++) {
		vring_init(&s->vrings[i]);
	}
	return s;
}

void
be_session_free(struct be_session *s)
{
	unsigned int i;

	if (s == NULL) {
		return;
	}
	for (i = 0; i < s->nqueues; i++) {
		vring_reset(&s->vrings[i]);
	}
	regions_close(s);
	fd_replace(&s->backend_fd, -1);
	free(s);
}

unsigned int
be_session_id(const struct be_session *s)
{
	return s->id;
}

/* Reply and body helpers ------------------------------------------- */

static void
reply_body(struct be_reply *r, uint32_t request, const void *body, size_t len)
{
	r->present = true;
	r->hdr = vhu_hdr_reply(request, (uint32_t)len);
	r->len = len;
	if (len > 0) {
		memcpy(r->body, body, len);
	}
}

static void
reply_u64(struct be_reply *r, uint32_t request, uint64_t value)
{
	reply_body(r, request, &value, sizeof(value));
}

/* Copy a fixed-size body out of the engine's buffer. */
static int
body_get(const struct vhu_msg *msg, void *dst, size_t len)
{
	if (msg->hdr.size != len || (len > 0 && msg->body == NULL)) {
		return -VHU_EBODYSIZE;
	}
	memcpy(dst, msg->body, len);
	return 0;
}

static int
body_u64(const struct vhu_msg *msg, uint64_t *v)
{
	return body_get(msg, v, sizeof(*v));
}

static struct be_vring *
vring_at(struct be_session *s, uint64_t index)
{
	return index < s->nqueues ? &s->vrings[index] : NULL;
}

static bool
protocol_features_in_use(const struct be_session *s)
{
	return s->protocol_set || (s->features & BIT(VHU_F_PROTOCOL_FEATURES)) != 0;
}

/* Negotiation ----------------------------------------------------- */

static int
get_features(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	reply_u64(r, msg->hdr.request, be_device_features());
	return 0;
}

static int
set_features(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	uint64_t v;
	unsigned int i;
	int rc = body_u64(msg, &v);

	if (rc < 0) {
		return rc;
	}
	if ((v & ~be_device_features()) != 0) {
		return -EINVAL;
	}
	s->features = v;
	s->features_set = true;
	/* Without bit 30 there is no SET_VRING_ENABLE: every ring is enabled. */
	if ((v & BIT(VHU_F_PROTOCOL_FEATURES)) == 0) {
		for (i = 0; i < s->nqueues; i++) {
			s->vrings[i].enabled = true;
		}
	}
	return 0;
}

static int
get_protocol_features(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	reply_u64(r, msg->hdr.request, be_device_protocol_features());
	return 0;
}

static int
set_protocol_features(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	uint64_t v;
	int rc = body_u64(msg, &v);

	if (rc < 0) {
		return rc;
	}
	if ((v & ~be_device_protocol_features()) != 0) {
		return -EINVAL;
	}
	s->protocol_features = v;
	s->protocol_set = true;
	return 0;
}

static int
get_queue_num(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	reply_u64(r, msg->hdr.request, s->nqueues);
	return 0;
}

static int
get_max_mem_slots(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	reply_u64(r, msg->hdr.request, BE_MAX_MEM_SLOTS);
	return 0;
}

static int
set_backend_req_fd(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct stat st;
	int fd;

	if (msg->fds.n != 1) {
		return -VHU_EFDS;
	}
	fd = vhu_fds_take(&msg->fds, 0);
	if (fd < 0) {
		return -VHU_EFDS;
	}
	/* The back-end channel is a socket; anything else is a confused front-end. */
	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		close(fd);
		return -ENOTSOCK;
	}
	fd_replace(&s->backend_fd, fd);
	return 0;
}

static int
set_owner(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	if (s->owner) {
		return -EBUSY;
	}
	s->owner = true;
	return 0;
}

static int
reset_owner(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	unsigned int i;

	/* Back to the state of a fresh connection, minus the protocol negotiation. */
	s->owner = false;
	s->features = 0;
	s->features_set = false;
	s->status = 0;
	regions_close(s);
	for (i = 0; i < s->nqueues; i++) {
		vring_reset(&s->vrings[i]);
	}
	return 0;
}

/* Memory ---------------------------------------------------------- */

static bool
regions_overlap(const struct vhu_mem_region *a, const struct vhu_mem_region *b)
{
	/* Sizes were checked non-zero and overflow-free by the engine; recheck cheaply. */
	return a->guest_phys_addr < b->guest_phys_addr + b->size &&
	       b->guest_phys_addr < a->guest_phys_addr + a->size;
}

static bool
region_sane(const struct vhu_mem_region *m)
{
	return m->size != 0 && m->guest_phys_addr + m->size > m->guest_phys_addr &&
	       m->user_addr + m->size > m->user_addr;
}

static int
set_mem_table(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_mem_table t;
	unsigned int i, j, n;

	if (msg->hdr.size < VHU_MEM_TABLE_SIZE(0) || msg->body == NULL) {
		return -VHU_EBODYSIZE;
	}
	memcpy(&t, msg->body, VHU_MEM_TABLE_SIZE(0));
	n = t.nregions;
	if (n == 0 || n > BE_MAX_MEM_SLOTS || msg->hdr.size != VHU_MEM_TABLE_SIZE(n)) {
		return -VHU_EBODY;
	}
	if (msg->fds.n != n) {
		return -VHU_EFDS;
	}
	memcpy(&t, msg->body, VHU_MEM_TABLE_SIZE(n));
	for (i = 0; i < n; i++) {
		if (!region_sane(&t.regions[i]) || msg->fds.fd[i] < 0) {
			return -VHU_EBODY;
		}
		for (j = 0; j < i; j++) {
			if (regions_overlap(&t.regions[i], &t.regions[j])) {
				return -VHU_EBODY;
			}
		}
	}
	/* Checked as a whole first, so a bad table leaves the old one in force. */
	regions_close(s);
	for (i = 0; i < n; i++) {
		s->regions[i].r = t.regions[i];
		s->regions[i].fd = vhu_fds_take(&msg->fds, i);
	}
	s->nregions = n;
	return 0;
}

static int
add_mem_reg(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_single_region sr;
	unsigned int i;
	int rc = body_get(msg, &sr, sizeof(sr));
	int fd;

	if (rc < 0) {
		return rc;
	}
	if (!region_sane(&sr.region)) {
		return -VHU_EBODY;
	}
	if (msg->fds.n != 1) {
		return -VHU_EFDS;
	}
	if (s->nregions >= BE_MAX_MEM_SLOTS) {
		return -ENOSPC;
	}
	for (i = 0; i < s->nregions; i++) {
		if (regions_overlap(&sr.region, &s->regions[i].r)) {
			return -EEXIST;
		}
	}
	fd = vhu_fds_take(&msg->fds, 0);
	if (fd < 0) {
		return -VHU_EFDS;
	}
	s->regions[s->nregions].r = sr.region;
	s->regions[s->nregions].fd = fd;
	s->nregions++;
	return 0;
}

static int
rem_mem_reg(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_single_region sr;
	unsigned int i;
	int rc = body_get(msg, &sr, sizeof(sr));

	if (rc < 0) {
		return rc;
	}
	/* Matched as QEMU identifies a region: guest address and size. A stray fd stays in msg. */
	for (i = 0; i < s->nregions; i++) {
		if (s->regions[i].r.guest_phys_addr == sr.region.guest_phys_addr &&
		    s->regions[i].r.size == sr.region.size) {
			break;
		}
	}
	if (i == s->nregions) {
		return -ENOENT;
	}
	fd_replace(&s->regions[i].fd, -1);
	s->nregions--;
	memmove(&s->regions[i], &s->regions[i + 1],
		(s->nregions - i) * sizeof(s->regions[0]));
	return 0;
}

/* Vrings ---------------------------------------------------------- */

static int
vring_state_get(struct be_session *s, struct vhu_msg *msg, struct vhu_vring_state *st,
		struct be_vring **vr)
{
	int rc = body_get(msg, st, sizeof(*st));

	if (rc < 0) {
		return rc;
	}
	*vr = vring_at(s, st->index);
	return *vr == NULL ? -ERANGE : 0;
}

static int
set_vring_num(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_vring_state st;
	struct be_vring *vr;
	int rc = vring_state_get(s, msg, &st, &vr);

	if (rc < 0) {
		return rc;
	}
	/* Split rings: a power of two, at most 32768 (virtio spec 2.7). */
	if (st.num == 0 || st.num > VRING_MAX_NUM || (st.num & (st.num - 1)) != 0) {
		return -EINVAL;
	}
	vr->num = st.num;
	return 0;
}

static int
set_vring_base(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_vring_state st;
	struct be_vring *vr;
	int rc = vring_state_get(s, msg, &st, &vr);

	if (rc < 0) {
		return rc;
	}
	/* Packed rings are not offered, so the upper 16 bits are reserved. */
	if (st.num > 0xffff) {
		return -EINVAL;
	}
	vr->base = st.num;
	return 0;
}

static int
get_vring_base(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_vring_state st;
	struct be_vring *vr;
	int rc = vring_state_get(s, msg, &st, &vr);

	if (rc < 0) {
		return rc;
	}
	/* No data path consumed anything, so the base is the one last set. */
	st.num = vr->base;
	vr->started = false;
	fd_replace(&vr->kick_fd, -1);
	reply_body(r, msg->hdr.request, &st, sizeof(st));
	return 0;
}

static int
set_vring_addr(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_vring_addr a;
	struct be_vring *vr;
	int rc = body_get(msg, &a, sizeof(a));

	if (rc < 0) {
		return rc;
	}
	vr = vring_at(s, a.index);
	if (vr == NULL) {
		return -ERANGE;
	}
	/* Logging needs SET_LOG_BASE, which is not implemented. */
	if (a.flags != 0) {
		return -EINVAL;
	}
	vr->addr = a;
	return 0;
}

static int
set_vring_enable(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	struct vhu_vring_state st;
	struct be_vring *vr;
	int rc = vring_state_get(s, msg, &st, &vr);

	if (rc < 0) {
		return rc;
	}
	if (st.num > 1) {
		return -EINVAL;
	}
	vr->enabled = st.num == 1;
	return 0;
}

enum vring_file { VRING_KICK, VRING_CALL, VRING_ERR };

static int
set_vring_file(struct be_session *s, struct vhu_msg *msg, enum vring_file which)
{
	struct be_vring *vr;
	uint64_t v;
	int fd = -1;
	int rc = body_u64(msg, &v);

	if (rc < 0) {
		return rc;
	}
	if ((v & ~(VHU_VRING_IDX_MASK | VHU_VRING_NOFD)) != 0) {
		return -VHU_EBODY;
	}
	vr = vring_at(s, v & VHU_VRING_IDX_MASK);
	if (vr == NULL) {
		return -ERANGE;
	}
	if ((v & VHU_VRING_NOFD) == 0) {
		if (msg->fds.n != 1) {
			return -VHU_EFDS;
		}
		fd = vhu_fds_take(&msg->fds, 0);
		if (fd < 0) {
			return -VHU_EFDS;
		}
	}
	switch (which) {
	case VRING_KICK:
		/* With NOFD the front-end promises to poll: the ring starts either way. */
		fd_replace(&vr->kick_fd, fd);
		vr->started = true;
		break;
	case VRING_CALL:
		fd_replace(&vr->call_fd, fd);
		break;
	case VRING_ERR:
		fd_replace(&vr->err_fd, fd);
		break;
	}
	return 0;
}

static int
set_vring_kick(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	return set_vring_file(s, msg, VRING_KICK);
}

static int
set_vring_call(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	return set_vring_file(s, msg, VRING_CALL);
}

static int
set_vring_err(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	return set_vring_file(s, msg, VRING_ERR);
}

/* Config and status ----------------------------------------------- */

static int
get_config(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	uint8_t space[BE_CONFIG_SPACE_SIZE];
	struct vhu_config c;

	if (msg->hdr.size < VHU_CONFIG_HDR_SIZE || msg->body == NULL) {
		return -VHU_EBODYSIZE;
	}
	memcpy(&c, msg->body, VHU_CONFIG_HDR_SIZE);
	if (msg->hdr.size != VHU_CONFIG_HDR_SIZE + (uint64_t)c.size) {
		return -VHU_EBODYSIZE;
	}
	/*
	 * Out of range is answered, not fatal: an empty reply is the error
	 * answer front-ends know (libvhost-user sends it; QEMU rejects any
	 * size other than the one it asked for).
	 */
	if ((uint64_t)c.offset + c.size > BE_CONFIG_SPACE_SIZE) {
		reply_body(r, msg->hdr.request, NULL, 0);
		return 0;
	}
	be_device_config(s->dev, space);
	r->present = true;
	r->hdr = vhu_hdr_reply(msg->hdr.request, VHU_CONFIG_HDR_SIZE + c.size);
	r->len = VHU_CONFIG_HDR_SIZE + c.size;
	memcpy(r->body, &c, VHU_CONFIG_HDR_SIZE);
	memcpy(r->body + VHU_CONFIG_HDR_SIZE, space + c.offset, c.size);
	return 0;
}

static int
set_config(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	/* The config space is read-only for this device; writes are accepted and dropped. */
	return 0;
}

static int
set_status(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	uint64_t v;
	int rc = body_u64(msg, &v);

	if (rc < 0) {
		return rc;
	}
	if (v > 0xff) {
		return -EINVAL;
	}
	s->status = (uint8_t)v;
	return 0;
}

static int
get_status(struct be_session *s, struct vhu_msg *msg, struct be_reply *r)
{
	reply_u64(r, msg->hdr.request, s->status);
	return 0;
}

/* Dispatch -------------------------------------------------------- */

static const struct handler handlers[VHU_REQ_MAX + 1] = {
	[VHU_REQ_GET_FEATURES] = { get_features, 0, false, true },
	[VHU_REQ_SET_FEATURES] = { set_features, 0, false, false },
	[VHU_REQ_SET_OWNER] = { set_owner, 0, false, false },
	[VHU_REQ_RESET_OWNER] = { reset_owner, 0, false, false },
	[VHU_REQ_SET_MEM_TABLE] = { set_mem_table, 0, false, false },
	[VHU_REQ_SET_VRING_NUM] = { set_vring_num, 0, false, false },
	[VHU_REQ_SET_VRING_ADDR] = { set_vring_addr, 0, false, false },
	[VHU_REQ_SET_VRING_BASE] = { set_vring_base, 0, false, false },
	[VHU_REQ_GET_VRING_BASE] = { get_vring_base, 0, false, true },
	[VHU_REQ_SET_VRING_KICK] = { set_vring_kick, 0, false, false },
	[VHU_REQ_SET_VRING_CALL] = { set_vring_call, 0, false, false },
	[VHU_REQ_SET_VRING_ERR] = { set_vring_err, 0, false, false },
	[VHU_REQ_GET_PROTOCOL_FEATURES] = { get_protocol_features, 0, false, true },
	[VHU_REQ_SET_PROTOCOL_FEATURES] = { set_protocol_features, 0, false, false },
	[VHU_REQ_GET_QUEUE_NUM] = { get_queue_num, PF(MQ), false, true },
	[VHU_REQ_SET_VRING_ENABLE] = { set_vring_enable, 0, true, false },
	[VHU_REQ_SET_BACKEND_REQ_FD] = { set_backend_req_fd, PF(BACKEND_REQ), false, false },
	[VHU_REQ_GET_CONFIG] = { get_config, PF(CONFIG), false, true },
	[VHU_REQ_SET_CONFIG] = { set_config, PF(CONFIG), false, false },
	[VHU_REQ_GET_MAX_MEM_SLOTS] = { get_max_mem_slots, PF(CONFIGURE_MEM_SLOTS), false, true },
	[VHU_REQ_ADD_MEM_REG] = { add_mem_reg, PF(CONFIGURE_MEM_SLOTS), false, false },
	[VHU_REQ_REM_MEM_REG] = { rem_mem_reg, PF(CONFIGURE_MEM_SLOTS), false, false },
	[VHU_REQ_SET_STATUS] = { set_status, PF(STATUS), false, false },
	[VHU_REQ_GET_STATUS] = { get_status, PF(STATUS), false, true },
};

static const char *
missing_gate(const struct be_session *s, const struct handler *h)
{
	uint64_t missing = h->gate & ~s->protocol_features;
	const char *name;

	if (missing == 0) {
		return NULL;
	}
	name = vhu_protocol_feature_name((unsigned int)__builtin_ctzll(missing));
	return name != NULL ? name : "?";
}

int
be_session_handle(struct be_session *s, struct vhu_msg *msg, struct be_reply *reply)
{
	uint32_t req = msg->hdr.request;
	const char *name = vhu_req_name(VHU_CHAN_FRONTEND, req);
	const struct handler *h = req <= VHU_REQ_MAX ? &handlers[req] : NULL;
	uint64_t acking = s->protocol_features;
	const char *gate;
	int rc;

	reply->present = false;
	if (h == NULL || h->fn == NULL) {
		be_log_err("conn %u: unsupported request %s (%u); closing", s->id, name, req);
		return -EOPNOTSUPP;
	}
	gate = missing_gate(s, h);
	if (gate != NULL) {
		be_log_err("conn %u: unsupported request %s (%u) without protocol feature %s; "
			   "closing", s->id, name, req, gate);
		return -EOPNOTSUPP;
	}
	if (h->needs_pf && !protocol_features_in_use(s)) {
		be_log_err("conn %u: unsupported request %s (%u) without PROTOCOL_FEATURES; "
			   "closing", s->id, name, req);
		return -EOPNOTSUPP;
	}
	/*
	 * SET_PROTOCOL_FEATURES is acked by the rule it sets: the front-end
	 * that offers REPLY_ACK in it waits for the answer, success or not.
	 */
	if (req == VHU_REQ_SET_PROTOCOL_FEATURES && body_u64(msg, &acking) < 0) {
		acking = 0;
	}

	rc = h->fn(s, msg, reply);
	if (h->replies) {
		if (rc < 0) {
			be_log_err("conn %u: %s failed: %s; closing", s->id, name,
				   vhu_strerror(rc));
		}
		return rc;
	}
	if ((acking & PF(REPLY_ACK)) != 0 && (msg->hdr.flags & VHU_FLAG_NEED_REPLY) != 0) {
		if (rc < 0) {
			be_log_err("conn %u: %s failed: %s; sent a failure ack", s->id, name,
				   vhu_strerror(rc));
		}
		reply_u64(reply, req, rc < 0 ? 1 : 0);
		return 0;
	}
	if (rc < 0) {
		/* Nothing to report the failure with: closing is the only signal left. */
		be_log_err("conn %u: %s failed: %s; closing", s->id, name, vhu_strerror(rc));
	}
	return rc;
}
