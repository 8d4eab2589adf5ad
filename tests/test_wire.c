/* SPDX-License-Identifier: MIT */
#include "helpers.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/wire.h>

TestSuite(wire, .init = t_setup, .fini = t_teardown);

static const struct vhu_rules fe_req = { VHU_CHAN_FRONTEND, VHU_EXPECT_REQUEST, 0 };
static const struct vhu_rules fe_rep = { VHU_CHAN_FRONTEND, VHU_EXPECT_REPLY, 0 };
static const struct vhu_rules fe_any = { VHU_CHAN_FRONTEND, VHU_EXPECT_EITHER, 0 };
static const struct vhu_rules be_req = { VHU_CHAN_BACKEND, VHU_EXPECT_REQUEST, 0 };
static const struct vhu_rules be_rep = { VHU_CHAN_BACKEND, VHU_EXPECT_REPLY, 0 };

#define REQ	0x1u
#define REQ_ACK	0x9u
#define REP	0x5u

static int
hdr(const struct vhu_rules *r, uint32_t request, uint32_t flags, uint32_t size)
{
	struct vhu_hdr h = { request, flags, size };

	return vhu_hdr_check(r, &h);
}

static int
msg(const struct vhu_rules *r, uint32_t request, uint32_t flags, const void *body,
    uint32_t size, unsigned int nfds)
{
	struct vhu_hdr h = { request, flags, size };

	return vhu_msg_check(r, &h, body, nfds);
}

/* Request check on the main socket, flags 0x1. */
static int
fe(uint32_t request, const void *body, uint32_t size, unsigned int nfds)
{
	return msg(&fe_req, request, REQ, body, size, nfds);
}

/* ------------------------------------------------------------------ */
/* Layouts and header bytes                                            */

Test(wire, body_layouts)
{
	cr_assert_eq(sizeof(struct vhu_hdr), 12);
	cr_assert_eq(sizeof(struct vhu_u64), 8);
	cr_assert_eq(sizeof(struct vhu_vring_state), 8);
	cr_assert_eq(sizeof(struct vhu_vring_addr), 40);
	cr_assert_eq(offsetof(struct vhu_vring_addr, used), 16);
	cr_assert_eq(offsetof(struct vhu_vring_addr, avail), 24);
	cr_assert_eq(sizeof(struct vhu_mem_region), 32);
	cr_assert_eq(offsetof(struct vhu_mem_table, regions), 8);
	cr_assert_eq(sizeof(struct vhu_single_region), 40);
	cr_assert_eq(offsetof(struct vhu_single_region, region), 8);
	cr_assert_eq(sizeof(struct vhu_log), 16);
	cr_assert_eq(sizeof(struct vhu_config), 12);
	cr_assert_eq(offsetof(struct vhu_config, payload), 12);
	cr_assert_eq(sizeof(struct vhu_inflight), 24);
	cr_assert_eq(offsetof(struct vhu_inflight, queue_size), 18);
	cr_assert_eq(sizeof(struct vhu_iotlb), 32);
	cr_assert_eq(offsetof(struct vhu_iotlb, perm), 24);
	cr_assert_eq(offsetof(struct vhu_iotlb, type), 25);
	cr_assert_eq(sizeof(struct vhu_vring_area), 24);
	cr_assert_eq(sizeof(struct vhu_shared_object), 16);
	cr_assert_eq(sizeof(struct vhu_device_state), 8);
	cr_assert_eq(sizeof(struct vhu_shmem_map), 40);
	cr_assert_eq(offsetof(struct vhu_shmem_map, fd_offset), 8);
	cr_assert_eq(sizeof(struct vhu_shmem_config), 2056);
}

Test(wire, header_helpers_bytes)
{
	static const uint8_t want_req[12] = { 5, 0, 0, 0, 0x9, 0, 0, 0, 40, 0, 0, 0 };
	static const uint8_t want_rep[12] = { 1, 0, 0, 0, 0x5, 0, 0, 0, 8, 0, 0, 0 };
	struct vhu_hdr h;
	uint8_t bytes[12];

	h = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, 40, true);
	memcpy(bytes, &h, sizeof(bytes));
	cr_assert_arr_eq(bytes, want_req, 12);
	h = vhu_hdr_request(VHU_REQ_GET_FEATURES, 0, false);
	cr_assert_eq(h.flags, 0x1u);
	h = vhu_hdr_reply(VHU_REQ_GET_FEATURES, 8);
	memcpy(bytes, &h, sizeof(bytes));
	cr_assert_arr_eq(bytes, want_rep, 12);
}

/* ------------------------------------------------------------------ */
/* Header: version and flags                                           */

Test(wire, version_rejected)
{
	uint32_t bad[] = { 0x0, 0x2, 0x3 };

	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(hdr(&fe_req, VHU_REQ_GET_FEATURES, bad[i], 0), -VHU_EVERSION);
		cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, bad[i] | 0x4, 8), -VHU_EVERSION);
		/* Version comes first: a bad version with bad everything else. */
		cr_assert_eq(hdr(&fe_req, 10000, bad[i] | 0xf0, 0xffffffffu), -VHU_EVERSION);
	}
}

Test(wire, reserved_flag_bits_rejected)
{
	for (unsigned int bit = 4; bit < 32; bit++) {
		uint32_t f = 1u << bit;

		cr_assert_eq(hdr(&fe_req, VHU_REQ_GET_FEATURES, REQ | f, 0), -VHU_EFLAGS,
			     "bit %u", bit);
		cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, REP | f, 8), -VHU_EFLAGS,
			     "bit %u", bit);
		cr_assert_eq(hdr(&be_req, VHU_BREQ_CONFIG_CHANGE_MSG, REQ | f, 0), -VHU_EFLAGS,
			     "bit %u", bit);
	}
}

Test(wire, reply_and_need_reply_placement)
{
	/* Requests: 0x1 and 0x9 accepted, REPLY rejected. */
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, 0x1, 0), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, 0x9, 0), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, 0x5, 0), -VHU_EFLAGS);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, 0xd, 0), -VHU_EFLAGS);
	/* Replies: exactly 0x5. */
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, 0x5, 8), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, 0xd, 8), -VHU_EFLAGS);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, 0x1, 8), -VHU_EFLAGS);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, 0x9, 8), -VHU_EFLAGS);
	cr_assert_eq(hdr(&be_rep, VHU_BREQ_IOTLB_MSG, 0x5, 8), 0);
	cr_assert_eq(hdr(&be_rep, VHU_BREQ_IOTLB_MSG, 0xd, 8), -VHU_EFLAGS);
}

Test(wire, either_lets_reply_bit_pick_the_rules)
{
	/* GET_FEATURES: request has no body, reply has a u64. */
	cr_assert_eq(hdr(&fe_any, VHU_REQ_GET_FEATURES, REQ, 0), 0);
	cr_assert_eq(hdr(&fe_any, VHU_REQ_GET_FEATURES, REQ, 8), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_any, VHU_REQ_GET_FEATURES, REP, 8), 0);
	cr_assert_eq(hdr(&fe_any, VHU_REQ_GET_FEATURES, REP, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_any, VHU_REQ_GET_FEATURES, 0xd, 8), -VHU_EFLAGS);
	cr_assert_eq(hdr(&fe_any, VHU_REQ_GET_FEATURES, REQ_ACK, 0), 0);
}

Test(wire, bad_arguments)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_FEATURES, 8, false);
	struct vhu_rules bad = { VHU_CHAN_FRONTEND, 7, 0 };
	unsigned int lo, hi;

	cr_assert_eq(vhu_hdr_check(NULL, &h), -EINVAL);
	cr_assert_eq(vhu_hdr_check(&fe_req, NULL), -EINVAL);
	cr_assert_eq(vhu_hdr_check(&bad, &h), -EINVAL);
	/* A size without a body is the caller's bug, not a peer fault. */
	cr_assert_eq(vhu_msg_check(&fe_req, &h, NULL, 0), -EINVAL);
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, NULL, NULL, &hi), -EINVAL);
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, NULL, &lo, NULL), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Request codes                                                       */

/* The smallest size the header check accepts for a rule. */
static uint32_t
min_size(uint8_t rule, uint16_t size)
{
	switch (rule) {
	case VHU_BODY_NONE:
		return 0;
	case VHU_BODY_MEM_TABLE:
		return VHU_MEM_TABLE_SIZE(1);
	case VHU_BODY_CONFIG:
		return VHU_CONFIG_HDR_SIZE + 1;
	default:
		return size;
	}
}

static void
check_code_range(const struct vhu_rules *req, const struct vhu_rules *rep, uint32_t max)
{
	enum vhu_channel ch = (enum vhu_channel)req->channel;

	for (uint32_t code = 0; code <= max + 50; code++) {
		const struct vhu_req_info *row = vhu_req_info(ch, code);

		if (code == 0 || code > max) {
			cr_assert_null(row, "code %u", code);
			cr_assert_eq(hdr(req, code, REQ, 0), -VHU_EREQUEST, "code %u", code);
			cr_assert_eq(hdr(rep, code, REP, 8), -VHU_EREQUEST, "code %u", code);
			cr_assert_str_eq(vhu_req_name(ch, code), "UNKNOWN");
			continue;
		}
		cr_assert_not_null(row, "code %u", code);
		cr_assert_not_null(row->name, "code %u", code);
		cr_assert_str_eq(vhu_req_name(ch, code), row->name);
		cr_assert_eq(hdr(req, code, REQ, min_size(row->body, row->body_size)), 0,
			     "%s", row->name);
		cr_assert_eq(hdr(rep, code, REP, min_size(row->reply_body, row->reply_size)), 0,
			     "%s reply", row->name);
	}
	cr_assert_eq(hdr(req, 10000, REQ, 0), -VHU_EREQUEST);
	cr_assert_eq(hdr(req, UINT32_MAX, REQ, 0), -VHU_EREQUEST);
}

Test(wire, frontend_codes)
{
	check_code_range(&fe_req, &fe_rep, VHU_REQ_MAX);
	cr_assert_eq(VHU_REQ_MAX, 44);
	cr_assert_eq(hdr(&fe_req, 45, REQ, 0), -VHU_EREQUEST);
}

Test(wire, backend_codes)
{
	check_code_range(&be_req, &be_rep, VHU_BREQ_MAX);
	cr_assert_eq(VHU_BREQ_MAX, 10);
	cr_assert_eq(hdr(&be_req, 11, REQ, 0), -VHU_EREQUEST);
}

Test(wire, names)
{
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_FRONTEND, 5), "SET_MEM_TABLE");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_FRONTEND, 1), "GET_FEATURES");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_FRONTEND, 44), "GET_SHMEM_CONFIG");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_FRONTEND, 0), "UNKNOWN");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_FRONTEND, 45), "UNKNOWN");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_BACKEND, 1), "BACKEND_IOTLB_MSG");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_BACKEND, 10), "BACKEND_SHMEM_UNMAP");
	cr_assert_str_eq(vhu_req_name(VHU_CHAN_BACKEND, 11), "UNKNOWN");
	cr_assert_str_eq(vhu_req_name((enum vhu_channel)2, 1), "UNKNOWN");
	cr_assert_null(vhu_req_info((enum vhu_channel)2, 1));
}

Test(wire, protocol_feature_names)
{
	static const char *const want[] = {
		"MQ", "LOG_SHMFD", "RARP", "REPLY_ACK", "NET_MTU", "BACKEND_REQ",
		"CROSS_ENDIAN", "CRYPTO_SESSION", "PAGEFAULT", "CONFIG", "BACKEND_SEND_FD",
		"HOST_NOTIFIER", "INFLIGHT_SHMFD", "RESET_DEVICE", "INBAND_NOTIFICATIONS",
		"CONFIGURE_MEM_SLOTS", "STATUS", "XEN_MMAP", "SHARED_OBJECT", "DEVICE_STATE",
	};

	cr_assert_eq(sizeof(want) / sizeof(want[0]), VHU_PROTOCOL_F_MAX);
	for (unsigned int b = 0; b < VHU_PROTOCOL_F_MAX; b++) {
		cr_assert_not_null(vhu_protocol_feature_name(b), "bit %u", b);
		cr_assert_str_eq(vhu_protocol_feature_name(b), want[b]);
	}
	cr_assert_null(vhu_protocol_feature_name(VHU_PROTOCOL_F_MAX));
	cr_assert_null(vhu_protocol_feature_name(63));
	cr_assert_null(vhu_protocol_feature_name(64));
	cr_assert_null(vhu_protocol_feature_name(~0u));
}

Test(wire, feature_names)
{
	cr_assert_str_eq(vhu_feature_name(VHU_F_PROTOCOL_FEATURES), "PROTOCOL_FEATURES");
	cr_assert_str_eq(vhu_feature_name(30), "PROTOCOL_FEATURES");
	cr_assert_str_eq(vhu_feature_name(32), "VERSION_1");
	cr_assert_str_eq(vhu_feature_name(26), "LOG_ALL");
	cr_assert_str_eq(vhu_feature_name(29), "RING_EVENT_IDX");
	cr_assert_str_eq(vhu_feature_name(34), "RING_PACKED");
	cr_assert_str_eq(vhu_feature_name(40), "RING_RESET");
	unsigned int named[] = { 24, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36, 37, 38, 40 };
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		cr_assert_not_null(vhu_feature_name(named[i]), "bit %u", named[i]);
	}
	cr_assert_null(vhu_feature_name(0));
	cr_assert_null(vhu_feature_name(23));
	cr_assert_null(vhu_feature_name(25));
	cr_assert_null(vhu_feature_name(31));
	cr_assert_null(vhu_feature_name(63));
	cr_assert_null(vhu_feature_name(64));
	cr_assert_null(vhu_feature_name(~0u));
}

/* ------------------------------------------------------------------ */
/* The tables, row by row, against the wire document                   */

struct row {
	uint32_t code;
	uint8_t body;
	uint16_t body_size;
	uint8_t fds;
	uint8_t reply;
	uint8_t reply_body;
	uint16_t reply_size;
	uint8_t reply_fds;
};

#define N_ VHU_BODY_NONE
#define F_ VHU_BODY_FIXED
#define M_ VHU_BODY_MEM_TABLE
#define C_ VHU_BODY_CONFIG
#define V_ VHU_BODY_VAR
#define ACK VHU_REPLY_ACK, F_, 8, VHU_FDS_NONE
#define ALW VHU_REPLY_ALWAYS
#define D0 VHU_FDS_NONE
#define D1 VHU_FDS_ONE
#define DO VHU_FDS_OPT_ONE
#define DN VHU_FDS_NREGIONS
#define DB VHU_FDS_NOFD_BIT

static const struct row fe_rows[] = {
	{ VHU_REQ_GET_FEATURES, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_SET_FEATURES, F_, 8, D0, ACK },
	{ VHU_REQ_SET_OWNER, N_, 0, D0, ACK },
	{ VHU_REQ_RESET_OWNER, N_, 0, D0, ACK },
	{ VHU_REQ_SET_MEM_TABLE, M_, 0, DN, VHU_REPLY_ACK, V_, 8, D0 },
	{ VHU_REQ_SET_LOG_BASE, F_, 16, DO, ALW, F_, 8, D0 },
	{ VHU_REQ_SET_LOG_FD, N_, 0, D1, ACK },
	{ VHU_REQ_SET_VRING_NUM, F_, 8, D0, ACK },
	{ VHU_REQ_SET_VRING_ADDR, F_, 40, D0, ACK },
	{ VHU_REQ_SET_VRING_BASE, F_, 8, D0, ACK },
	{ VHU_REQ_GET_VRING_BASE, F_, 8, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_SET_VRING_KICK, F_, 8, DB, ACK },
	{ VHU_REQ_SET_VRING_CALL, F_, 8, DB, ACK },
	{ VHU_REQ_SET_VRING_ERR, F_, 8, DB, ACK },
	{ VHU_REQ_GET_PROTOCOL_FEATURES, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_SET_PROTOCOL_FEATURES, F_, 8, D0, ACK },
	{ VHU_REQ_GET_QUEUE_NUM, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_SET_VRING_ENABLE, F_, 8, D0, ACK },
	{ VHU_REQ_SEND_RARP, F_, 8, D0, ACK },
	{ VHU_REQ_NET_SET_MTU, F_, 8, D0, ACK },
	{ VHU_REQ_SET_BACKEND_REQ_FD, N_, 0, D1, ACK },
	{ VHU_REQ_IOTLB_MSG, F_, 32, D0, ACK },
	{ VHU_REQ_SET_VRING_ENDIAN, F_, 8, D0, ACK },
	{ VHU_REQ_GET_CONFIG, C_, 0, D0, ALW, C_, 0, D0 },
	{ VHU_REQ_SET_CONFIG, C_, 0, D0, ACK },
	{ VHU_REQ_CREATE_CRYPTO_SESSION, V_, 8, D0, ALW, V_, 8, D0 },
	{ VHU_REQ_CLOSE_CRYPTO_SESSION, F_, 8, D0, ACK },
	{ VHU_REQ_POSTCOPY_ADVISE, N_, 0, D0, ALW, N_, 0, D1 },
	{ VHU_REQ_POSTCOPY_LISTEN, N_, 0, D0, ACK },
	{ VHU_REQ_POSTCOPY_END, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_GET_INFLIGHT_FD, F_, 24, D0, ALW, F_, 24, DO },
	{ VHU_REQ_SET_INFLIGHT_FD, F_, 24, D1, ACK },
	{ VHU_REQ_GPU_SET_SOCKET, N_, 0, D1, ACK },
	{ VHU_REQ_RESET_DEVICE, N_, 0, D0, ACK },
	{ VHU_REQ_VRING_KICK, F_, 8, D0, ACK },
	{ VHU_REQ_GET_MAX_MEM_SLOTS, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_ADD_MEM_REG, F_, 40, D1, VHU_REPLY_ACK, V_, 8, D0 },
	{ VHU_REQ_REM_MEM_REG, F_, 40, DO, ACK },
	{ VHU_REQ_SET_STATUS, F_, 8, D0, ACK },
	{ VHU_REQ_GET_STATUS, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_GET_SHARED_OBJECT, F_, 16, D0, ALW, F_, 8, DO },
	{ VHU_REQ_SET_DEVICE_STATE_FD, F_, 8, D1, ALW, F_, 8, DO },
	{ VHU_REQ_CHECK_DEVICE_STATE, N_, 0, D0, ALW, F_, 8, D0 },
	{ VHU_REQ_GET_SHMEM_CONFIG, N_, 0, D0, ALW, F_, 2056, D0 },
};

static const struct row be_rows[] = {
	{ VHU_BREQ_IOTLB_MSG, F_, 32, D0, ACK },
	{ VHU_BREQ_CONFIG_CHANGE_MSG, N_, 0, D0, ACK },
	{ VHU_BREQ_VRING_HOST_NOTIFIER_MSG, F_, 24, DB, ACK },
	{ VHU_BREQ_VRING_CALL, F_, 8, D0, ACK },
	{ VHU_BREQ_VRING_ERR, F_, 8, D0, ACK },
	{ VHU_BREQ_SHARED_OBJECT_ADD, F_, 16, D0, ACK },
	{ VHU_BREQ_SHARED_OBJECT_REMOVE, F_, 16, D0, ACK },
	{ VHU_BREQ_SHARED_OBJECT_LOOKUP, F_, 16, D0, ALW, F_, 8, DO },
	{ VHU_BREQ_SHMEM_MAP, F_, 40, D1, ACK },
	{ VHU_BREQ_SHMEM_UNMAP, F_, 40, D0, ACK },
};

static void
check_rows(enum vhu_channel ch, const struct row *rows, size_t n, uint32_t max)
{
	cr_assert_eq(n, max, "every code has an expected row");
	for (size_t i = 0; i < n; i++) {
		const struct row *w = &rows[i];
		const struct vhu_req_info *r = vhu_req_info(ch, w->code);

		cr_assert_eq(w->code, i + 1);
		cr_assert_not_null(r, "code %u", w->code);
		cr_assert_eq(r->body, w->body, "%s body", r->name);
		cr_assert_eq(r->body_size, w->body_size, "%s body_size", r->name);
		cr_assert_eq(r->fds, w->fds, "%s fds", r->name);
		cr_assert_eq(r->reply, w->reply, "%s reply", r->name);
		cr_assert_eq(r->reply_body, w->reply_body, "%s reply_body", r->name);
		cr_assert_eq(r->reply_size, w->reply_size, "%s reply_size", r->name);
		cr_assert_eq(r->reply_fds, w->reply_fds, "%s reply_fds", r->name);
	}
}

Test(wire, frontend_table_rows)
{
	check_rows(VHU_CHAN_FRONTEND, fe_rows, sizeof(fe_rows) / sizeof(fe_rows[0]),
		   VHU_REQ_MAX);
}

Test(wire, backend_table_rows)
{
	check_rows(VHU_CHAN_BACKEND, be_rows, sizeof(be_rows) / sizeof(be_rows[0]),
		   VHU_BREQ_MAX);
}

/* ------------------------------------------------------------------ */
/* Size field: oversize and shapes                                     */

Test(wire, oversized)
{
	struct vhu_rules small = { VHU_CHAN_FRONTEND, VHU_EXPECT_REQUEST, 100 };
	struct vhu_rules big = { VHU_CHAN_FRONTEND, VHU_EXPECT_REQUEST, 8192 };
	uint32_t crypto = VHU_REQ_CREATE_CRYPTO_SESSION;

	cr_assert_eq(hdr(&fe_req, crypto, REQ, VHU_DEFAULT_MAX_SIZE), 0);
	cr_assert_eq(hdr(&fe_req, crypto, REQ, VHU_DEFAULT_MAX_SIZE + 1), -VHU_EOVERSIZED);
	cr_assert_eq(hdr(&fe_req, crypto, REQ, 0xffffffffu), -VHU_EOVERSIZED);
	cr_assert_eq(hdr(&small, crypto, REQ, 100), 0);
	cr_assert_eq(hdr(&small, crypto, REQ, 101), -VHU_EOVERSIZED);
	cr_assert_eq(hdr(&big, crypto, REQ, 8192), 0);
	cr_assert_eq(hdr(&big, crypto, REQ, 8193), -VHU_EOVERSIZED);
	/* A huge size on a fixed-size request is named OversizedMsg, not a shape fault. */
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_FEATURES, REQ, 0xffffffffu), -VHU_EOVERSIZED);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_GET_FEATURES, REQ, 4097), -VHU_EOVERSIZED);
	/* ... but an unknown code is named first. */
	cr_assert_eq(hdr(&fe_req, 77, REQ, 0xffffffffu), -VHU_EREQUEST);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_FEATURES, REP, 0xffffffffu), -VHU_EOVERSIZED);
}

Test(wire, shape_none_and_fixed)
{
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, REQ, 0), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, REQ, 1), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_OWNER, REQ, 8), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_FEATURES, REQ, 8), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_FEATURES, REQ, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_FEATURES, REQ, 7), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_FEATURES, REQ, 9), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_LOG_BASE, REQ, 16), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_LOG_BASE, REQ, 8), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_VRING_ADDR, REQ, 40), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_VRING_ADDR, REQ, 32), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_GET_INFLIGHT_FD, REQ, 24), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_GET_INFLIGHT_FD, REQ, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&be_req, VHU_BREQ_VRING_HOST_NOTIFIER_MSG, REQ, 24), 0);
	cr_assert_eq(hdr(&be_req, VHU_BREQ_VRING_HOST_NOTIFIER_MSG, REQ, 8), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&be_req, VHU_BREQ_SHMEM_MAP, REQ, 40), 0);
	cr_assert_eq(hdr(&be_req, VHU_BREQ_SHMEM_MAP, REQ, 41), -VHU_EBODYSIZE);
}

Test(wire, shape_mem_table)
{
	uint32_t t = VHU_REQ_SET_MEM_TABLE;

	for (uint32_t n = 1; n <= VHU_MAX_MEM_REGIONS; n++) {
		cr_assert_eq(hdr(&fe_req, t, REQ, VHU_MEM_TABLE_SIZE(n)), 0, "%u regions", n);
		cr_assert_eq(hdr(&fe_req, t, REQ, VHU_MEM_TABLE_SIZE(n) + 1), -VHU_EBODYSIZE);
		cr_assert_eq(hdr(&fe_req, t, REQ, VHU_MEM_TABLE_SIZE(n) - 1), -VHU_EBODYSIZE);
	}
	cr_assert_eq(hdr(&fe_req, t, REQ, VHU_MEM_TABLE_SIZE(0)), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, t, REQ, VHU_MEM_TABLE_SIZE(33)), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, t, REQ, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, t, REQ, 4), -VHU_EBODYSIZE);
}

Test(wire, shape_config_and_var)
{
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_CONFIG, REQ, 12), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_CONFIG, REQ, 11), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_SET_CONFIG, REQ, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_GET_CONFIG, REQ, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_CONFIG, REP, 0), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_CONFIG, REP, 11), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_CONFIG, REP, 16), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_CREATE_CRYPTO_SESSION, REQ, 7), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_CREATE_CRYPTO_SESSION, REQ, 8), 0);
	cr_assert_eq(hdr(&fe_req, VHU_REQ_CREATE_CRYPTO_SESSION, REQ, 300), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_CREATE_CRYPTO_SESSION, REP, 7), -VHU_EBODYSIZE);
}

Test(wire, shape_replies)
{
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_SET_FEATURES, REP, 8), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_SET_FEATURES, REP, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_SET_FEATURES, REP, 16), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_VRING_BASE, REP, 8), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_SHMEM_CONFIG, REP, 2056), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_SHMEM_CONFIG, REP, 2048), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_POSTCOPY_ADVISE, REP, 0), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_POSTCOPY_ADVISE, REP, 8), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, 8), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, 0), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_ADD_MEM_REG, REP, 4), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_INFLIGHT_FD, REP, 24), 0);
	cr_assert_eq(hdr(&fe_rep, VHU_REQ_GET_INFLIGHT_FD, REP, 8), -VHU_EBODYSIZE);
	cr_assert_eq(hdr(&be_rep, VHU_BREQ_SHMEM_MAP, REP, 8), 0);
	cr_assert_eq(hdr(&be_rep, VHU_BREQ_SHMEM_MAP, REP, 40), -VHU_EBODYSIZE);
}

/* ------------------------------------------------------------------ */
/* Memory table                                                        */

#define MIB (1ull << 20)

static void
region_at(struct vhu_mem_region *r, uint64_t gpa, uint64_t size)
{
	r->guest_phys_addr = gpa;
	r->size = size;
	r->user_addr = 0x7f0000000000ull + gpa;
	r->mmap_offset = 0;
}

/* n adjacent regions of 1 MiB each, starting at guest-physical 0. */
static void
table_of(struct vhu_mem_table *t, uint32_t n)
{
	memset(t, 0, sizeof(*t));
	t->nregions = n;
	for (uint32_t i = 0; i < n && i < VHU_MAX_MEM_REGIONS; i++) {
		region_at(&t->regions[i], i * MIB, MIB);
	}
}

static int
table_check(const struct vhu_mem_table *t, unsigned int nfds)
{
	return fe(VHU_REQ_SET_MEM_TABLE, t, VHU_MEM_TABLE_SIZE(t->nregions), nfds);
}

Test(wire, mem_table_1_to_32_regions)
{
	struct vhu_mem_table t;

	for (uint32_t n = 1; n <= VHU_MAX_MEM_REGIONS; n++) {
		table_of(&t, n);
		cr_assert_eq(table_check(&t, n), 0, "%u regions", n);
		cr_assert_eq(table_check(&t, n - 1), -VHU_EFDS, "%u regions, one fd short", n);
		cr_assert_eq(table_check(&t, n + 1), -VHU_EFDS, "%u regions, one fd extra", n);
	}
}

Test(wire, mem_table_count_out_of_range)
{
	struct vhu_mem_table t;

	table_of(&t, 1);
	t.nregions = 0;
	/* The size field says one region; the count says none. */
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(1), 0), -VHU_EBODY);
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(0), 0), -VHU_EBODYSIZE);
	table_of(&t, 32);
	t.nregions = 33;
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(32), 32), -VHU_EBODY);
	t.nregions = 0xffffffffu;
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(32), 32), -VHU_EBODY);
}

Test(wire, mem_table_count_mismatch)
{
	struct vhu_mem_table t;

	table_of(&t, 3);
	t.nregions = 2;
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(3), 3), -VHU_EBODY);
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(3), 2), -VHU_EBODY);
	t.nregions = 4;
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, &t, VHU_MEM_TABLE_SIZE(3), 4), -VHU_EBODY);
}

Test(wire, mem_table_padding)
{
	struct vhu_mem_table t;

	table_of(&t, 2);
	t.padding = 1;
	cr_assert_eq(table_check(&t, 2), -VHU_EBODY);
	t.padding = 0x80000000u;
	cr_assert_eq(table_check(&t, 2), -VHU_EBODY);
}

Test(wire, mem_table_zero_size_region)
{
	struct vhu_mem_table t;

	for (uint32_t i = 0; i < 4; i++) {
		table_of(&t, 4);
		t.regions[i].size = 0;
		cr_assert_eq(table_check(&t, 4), -VHU_EBODY, "region %u", i);
	}
}

Test(wire, mem_table_overflow)
{
	struct vhu_mem_table t;

	/* Ending exactly at the top of the address space is fine. */
	table_of(&t, 1);
	t.regions[0].guest_phys_addr = UINT64_MAX - MIB;
	t.regions[0].user_addr = UINT64_MAX - MIB;
	t.regions[0].mmap_offset = UINT64_MAX - MIB;
	cr_assert_eq(table_check(&t, 1), 0);

	table_of(&t, 2);
	t.regions[1].guest_phys_addr = UINT64_MAX - MIB + 2;
	cr_assert_eq(table_check(&t, 2), -VHU_EBODY, "guest_phys_addr + size wraps");

	table_of(&t, 2);
	t.regions[1].user_addr = UINT64_MAX - 1;
	cr_assert_eq(table_check(&t, 2), -VHU_EBODY, "user_addr + size wraps");

	table_of(&t, 2);
	t.regions[1].mmap_offset = UINT64_MAX - MIB + 1;
	cr_assert_eq(table_check(&t, 2), -VHU_EBODY, "mmap_offset + size wraps");

	table_of(&t, 1);
	t.regions[0].size = UINT64_MAX;
	t.regions[0].guest_phys_addr = 1;
	cr_assert_eq(table_check(&t, 1), -VHU_EBODY, "size of the whole space");
}

Test(wire, mem_table_overlap)
{
	struct vhu_mem_table t;

	/* Adjacent regions (end of one == start of the next) do not overlap. */
	table_of(&t, 3);
	cr_assert_eq(table_check(&t, 3), 0);

	/* One byte of overlap. */
	table_of(&t, 3);
	t.regions[1].guest_phys_addr -= 1;
	cr_assert_eq(table_check(&t, 3), -VHU_EBODY);

	/* Later region inside an earlier one. */
	table_of(&t, 3);
	region_at(&t.regions[2], MIB / 2, 16);
	cr_assert_eq(table_check(&t, 3), -VHU_EBODY);

	/* Earlier region inside a later one. */
	table_of(&t, 3);
	region_at(&t.regions[2], 0, 3 * MIB);
	cr_assert_eq(table_check(&t, 3), -VHU_EBODY);

	/* Identical regions. */
	table_of(&t, 2);
	t.regions[1] = t.regions[0];
	cr_assert_eq(table_check(&t, 2), -VHU_EBODY);

	/* Out of order but disjoint is fine. */
	table_of(&t, 2);
	region_at(&t.regions[0], 8 * MIB, MIB);
	region_at(&t.regions[1], 2 * MIB, MIB);
	cr_assert_eq(table_check(&t, 2), 0);
}

Test(wire, mem_table_unaligned_body)
{
	static uint8_t raw[sizeof(struct vhu_mem_table) + 8];
	struct vhu_mem_table t;
	uint32_t size;

	table_of(&t, 5);
	size = VHU_MEM_TABLE_SIZE(5);
	for (size_t off = 1; off < 8; off += 2) {
		memcpy(raw + off, &t, size);
		cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, raw + off, size, 5), 0, "offset %zu", off);
	}
	t.regions[3].guest_phys_addr = 0;
	memcpy(raw + 1, &t, size);
	cr_assert_eq(fe(VHU_REQ_SET_MEM_TABLE, raw + 1, size, 5), -VHU_EBODY);
}

Test(wire, mem_table_fd_bounds_from_size)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, VHU_MEM_TABLE_SIZE(7), false);
	struct vhu_mem_table t;
	unsigned int lo = 99, hi = 99;

	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, NULL, &lo, &hi), 0);
	cr_assert_eq(lo, 7);
	cr_assert_eq(hi, 7);
	table_of(&t, 7);
	lo = hi = 99;
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, &t, &lo, &hi), 0);
	cr_assert_eq(lo, 7);
	cr_assert_eq(hi, 7);
}

/* Found by fuzz_wire: the region count is the peer's and must not leak out as a bound. */
Test(wire, mem_table_fd_bounds_capped)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, VHU_MEM_TABLE_SIZE(1), false);
	struct vhu_hdr huge = vhu_hdr_request(VHU_REQ_SET_MEM_TABLE, 0xfffffff8u, false);
	uint8_t body[VHU_MEM_TABLE_SIZE(1)] = { 0 };
	uint32_t n = 0x10000000u;
	unsigned int lo = 0, hi = 0;

	memcpy(body, &n, sizeof(n));
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, body, &lo, &hi), 0);
	cr_assert_eq(lo, VHU_MAX_FDS);
	cr_assert_eq(hi, VHU_MAX_FDS);
	cr_assert_eq(vhu_msg_check(&fe_req, &h, body, 1), -VHU_EBODY);
	lo = hi = 0;
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &huge, NULL, &lo, &hi), 0);
	cr_assert_leq(hi, VHU_MAX_FDS);
}

/* ------------------------------------------------------------------ */
/* Single region (ADD/REM_MEM_REG)                                     */

Test(wire, single_region)
{
	struct vhu_single_region s = { 0 };
	uint32_t add = VHU_REQ_ADD_MEM_REG, rem = VHU_REQ_REM_MEM_REG;

	region_at(&s.region, 4 * MIB, MIB);
	cr_assert_eq(fe(add, &s, sizeof(s), 1), 0);
	cr_assert_eq(fe(add, &s, sizeof(s), 0), -VHU_EFDS);
	cr_assert_eq(fe(add, &s, sizeof(s), 2), -VHU_EFDS);
	cr_assert_eq(fe(rem, &s, sizeof(s), 0), 0);
	cr_assert_eq(fe(rem, &s, sizeof(s), 1), 0);
	cr_assert_eq(fe(rem, &s, sizeof(s), 2), -VHU_EFDS);

	s.region.size = 0;
	cr_assert_eq(fe(add, &s, sizeof(s), 1), -VHU_EBODY);
	cr_assert_eq(fe(rem, &s, sizeof(s), 0), -VHU_EBODY);

	region_at(&s.region, UINT64_MAX - 10, MIB);
	cr_assert_eq(fe(add, &s, sizeof(s), 1), -VHU_EBODY);
	region_at(&s.region, 0, MIB);
	s.region.user_addr = UINT64_MAX;
	cr_assert_eq(fe(add, &s, sizeof(s), 1), -VHU_EBODY);
	region_at(&s.region, 0, MIB);
	s.region.mmap_offset = UINT64_MAX - 5;
	cr_assert_eq(fe(rem, &s, sizeof(s), 0), -VHU_EBODY);
}

Test(wire, mem_replies)
{
	struct vhu_mem_table t;
	struct vhu_single_region s = { 0 };
	uint64_t ack = 0;

	/* SET_MEM_TABLE: a u64 ack, or in postcopy the table the back-end mapped. */
	cr_assert_eq(msg(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, &ack, 8, 0), 0);
	table_of(&t, 2);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, &t, VHU_MEM_TABLE_SIZE(2), 0), 0);
	t.regions[1].size = 0;
	cr_assert_eq(msg(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, &t, VHU_MEM_TABLE_SIZE(2), 0),
		     -VHU_EBODY);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, &t, 20, 0), -VHU_EBODY);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_SET_MEM_TABLE, REP, &ack, 8, 1), -VHU_EFDS);

	/* ADD_MEM_REG: a u64 ack, or the region. */
	cr_assert_eq(msg(&fe_rep, VHU_REQ_ADD_MEM_REG, REP, &ack, 8, 0), 0);
	region_at(&s.region, 0, MIB);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_ADD_MEM_REG, REP, &s, sizeof(s), 0), 0);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_ADD_MEM_REG, REP, &s, 24, 0), -VHU_EBODY);
	s.region.size = 0;
	cr_assert_eq(msg(&fe_rep, VHU_REQ_ADD_MEM_REG, REP, &s, sizeof(s), 0), -VHU_EBODY);
}

/* ------------------------------------------------------------------ */
/* Vring requests                                                      */

Test(wire, vring_addr)
{
	struct vhu_vring_addr a = {
		.index = 1, .flags = 0, .desc = 0x1000, .used = 0x2004, .avail = 0x3002,
		.log = 0x5,
	};
	uint32_t r = VHU_REQ_SET_VRING_ADDR;

	cr_assert_eq(fe(r, &a, sizeof(a), 0), 0);
	cr_assert_eq(fe(r, &a, sizeof(a), 1), -VHU_EFDS);
	a.flags = VHU_VRING_F_LOG;
	cr_assert_eq(fe(r, &a, sizeof(a), 0), 0);
	for (unsigned int bit = 1; bit < 32; bit++) {
		a.flags = 1u << bit;
		cr_assert_eq(fe(r, &a, sizeof(a), 0), -VHU_EBODY, "flag bit %u", bit);
	}
	a.flags = 0;
	for (uint64_t m = 1; m < 16; m++) {
		a.desc = 0x1000 + m;
		cr_assert_eq(fe(r, &a, sizeof(a), 0), -VHU_EBODY, "desc +%lu", (unsigned long)m);
	}
	a.desc = 0x1010;
	cr_assert_eq(fe(r, &a, sizeof(a), 0), 0);
	for (uint64_t m = 1; m < 4; m++) {
		a.used = 0x2000 + m;
		cr_assert_eq(fe(r, &a, sizeof(a), 0), -VHU_EBODY, "used +%lu", (unsigned long)m);
	}
	a.used = 0x2000;
	a.avail = 0x3001;
	cr_assert_eq(fe(r, &a, sizeof(a), 0), -VHU_EBODY);
	a.avail = 0x3000;
	cr_assert_eq(fe(r, &a, sizeof(a), 0), 0);
}

Test(wire, vring_addr_unaligned_body)
{
	static uint8_t raw[64];
	struct vhu_vring_addr a = { .desc = 0x10, .used = 0x4, .avail = 0x2 };

	memcpy(raw + 3, &a, sizeof(a));
	cr_assert_eq(fe(VHU_REQ_SET_VRING_ADDR, raw + 3, sizeof(a), 0), 0);
	a.desc = 0x18;
	memcpy(raw + 3, &a, sizeof(a));
	cr_assert_eq(fe(VHU_REQ_SET_VRING_ADDR, raw + 3, sizeof(a), 0), -VHU_EBODY);
}

Test(wire, nofd_word_requests)
{
	uint32_t codes[] = { VHU_REQ_SET_VRING_KICK, VHU_REQ_SET_VRING_CALL,
			     VHU_REQ_SET_VRING_ERR };

	for (size_t i = 0; i < 3; i++) {
		uint32_t c = codes[i];
		uint64_t w;

		w = VHU_VRING_NOFD | 3;
		cr_assert_eq(fe(c, &w, 8, 0), 0, "%s NOFD, 0 fds", vhu_req_name(0, c));
		cr_assert_eq(fe(c, &w, 8, 1), -VHU_EFDS, "%s NOFD, 1 fd", vhu_req_name(0, c));
		w = 3;
		cr_assert_eq(fe(c, &w, 8, 1), 0, "%s fd", vhu_req_name(0, c));
		cr_assert_eq(fe(c, &w, 8, 0), -VHU_EFDS, "%s missing fd", vhu_req_name(0, c));
		cr_assert_eq(fe(c, &w, 8, 2), -VHU_EFDS);
		w = VHU_VRING_IDX_MASK;
		cr_assert_eq(fe(c, &w, 8, 1), 0);
		for (unsigned int bit = 9; bit < 64; bit++) {
			w = (1ull << bit) | VHU_VRING_NOFD;
			cr_assert_eq(fe(c, &w, 8, 0), -VHU_EBODY, "bit %u", bit);
		}
	}
}

Test(wire, nofd_fd_bounds)
{
	struct vhu_hdr h = vhu_hdr_request(VHU_REQ_SET_VRING_CALL, 8, false);
	uint64_t w = VHU_VRING_NOFD;
	unsigned int lo = 9, hi = 9;

	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, &w, &lo, &hi), 0);
	cr_assert_eq(lo, 0);
	cr_assert_eq(hi, 0);
	w = 0;
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, &w, &lo, &hi), 0);
	cr_assert_eq(lo, 1);
	cr_assert_eq(hi, 1);
	/* Without the body the rule cannot tell yet. */
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, NULL, &lo, &hi), 0);
	cr_assert_eq(lo, 0);
	cr_assert_eq(hi, 1);
	h.request = 99;
	cr_assert_eq(vhu_msg_fd_bounds(&fe_req, &h, &w, &lo, &hi), -VHU_EREQUEST);
}

Test(wire, host_notifier)
{
	struct vhu_vring_area a = { .u64 = 2, .size = 4096, .offset = 0 };
	uint32_t c = VHU_BREQ_VRING_HOST_NOTIFIER_MSG;

	cr_assert_eq(msg(&be_req, c, REQ, &a, sizeof(a), 1), 0);
	cr_assert_eq(msg(&be_req, c, REQ, &a, sizeof(a), 0), -VHU_EFDS);
	a.u64 = 2 | VHU_VRING_NOFD;
	cr_assert_eq(msg(&be_req, c, REQ, &a, sizeof(a), 0), 0);
	cr_assert_eq(msg(&be_req, c, REQ, &a, sizeof(a), 1), -VHU_EFDS);
	a.u64 = 1ull << 9;
	cr_assert_eq(msg(&be_req, c, REQ, &a, sizeof(a), 1), -VHU_EBODY);
}

Test(wire, vring_enable_and_endian)
{
	uint32_t codes[] = { VHU_REQ_SET_VRING_ENABLE, VHU_REQ_SET_VRING_ENDIAN };

	for (size_t i = 0; i < 2; i++) {
		struct vhu_vring_state s = { .index = 5, .num = 0 };

		cr_assert_eq(fe(codes[i], &s, sizeof(s), 0), 0);
		s.num = 1;
		cr_assert_eq(fe(codes[i], &s, sizeof(s), 0), 0);
		s.num = 2;
		cr_assert_eq(fe(codes[i], &s, sizeof(s), 0), -VHU_EBODY);
		s.num = 0xffffffffu;
		cr_assert_eq(fe(codes[i], &s, sizeof(s), 0), -VHU_EBODY);
	}
	/* Other vring-state requests take any num. */
	struct vhu_vring_state s = { .index = 0, .num = 0xffffffffu };
	cr_assert_eq(fe(VHU_REQ_SET_VRING_BASE, &s, sizeof(s), 0), 0);
	cr_assert_eq(fe(VHU_REQ_SET_VRING_NUM, &s, sizeof(s), 0), 0);
}

/* ------------------------------------------------------------------ */
/* Config                                                              */

static int
cfg(const struct vhu_rules *r, uint32_t code, uint32_t flags, uint32_t off, uint32_t len,
    uint32_t cflags, uint32_t size)
{
	struct vhu_config c = { .offset = off, .size = len, .flags = cflags };
	uint64_t m[10];

	memset(m, 0, sizeof(m));
	memcpy(m, &c, sizeof(c));
	return msg(r, code, flags, m, size, 0);
}

Test(wire, config_requests)
{
	uint32_t codes[] = { VHU_REQ_GET_CONFIG, VHU_REQ_SET_CONFIG };

	for (size_t i = 0; i < 2; i++) {
		uint32_t c = codes[i];

		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 0, 20), 0);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0x100, 60, 0, 72), 0);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0xffc, 4, 0, 16), 0);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 1, 20), 0);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 3, 20), 0);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 0, 0, 12), -VHU_EBODY, "size 0");
		cr_assert_eq(cfg(&fe_req, c, REQ, 0xffd, 4, 0, 16), -VHU_EBODY, "past 0x1000");
		cr_assert_eq(cfg(&fe_req, c, REQ, 0x1000, 1, 0, 13), -VHU_EBODY);
		/* 0xfffffff0 + 0x20 wraps to 0x10 in 32 bits. */
		cr_assert_eq(cfg(&fe_req, c, REQ, 0xfffffff0u, 0x20, 0, 44), -VHU_EBODY);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 0, 16), -VHU_EBODY, "header says less");
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 0, 24), -VHU_EBODY, "header says more");
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 0xfffffff8u, 0, 20), -VHU_EBODY);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 4, 20), -VHU_EBODY, "flags");
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 0x80000000u, 20), -VHU_EBODY);
		cr_assert_eq(cfg(&fe_req, c, REQ, 0, 8, 0, 8), -VHU_EBODYSIZE);
	}
}

Test(wire, config_reply)
{
	uint32_t c = VHU_REQ_GET_CONFIG;

	/* An empty reply is how a back-end reports that GET_CONFIG failed. */
	cr_assert_eq(msg(&fe_rep, c, REP, NULL, 0, 0), 0);
	cr_assert_eq(cfg(&fe_rep, c, REP, 0, 8, 0, 20), 0);
	cr_assert_eq(cfg(&fe_rep, c, REP, 0, 8, 0, 24), -VHU_EBODY);
	cr_assert_eq(cfg(&fe_rep, c, REP, 0, 0, 0, 12), -VHU_EBODY);
	cr_assert_eq(cfg(&fe_rep, c, REP, 0xfff, 8, 0, 20), -VHU_EBODY);
	cr_assert_eq(msg(&fe_rep, c, REP, NULL, 0, 1), -VHU_EFDS);
	/* SET_CONFIG is answered by a plain ack. */
	cr_assert_eq(cfg(&fe_rep, VHU_REQ_SET_CONFIG, REP, 0, 8, 0, 20), -VHU_EBODYSIZE);
}

/* ------------------------------------------------------------------ */
/* Log, inflight, iotlb, device state, shmem                           */

Test(wire, log_base)
{
	struct vhu_log l = { .mmap_size = 0x10000, .mmap_offset = 0x1000 };
	uint32_t c = VHU_REQ_SET_LOG_BASE;
	uint64_t ack = 0;

	cr_assert_eq(fe(c, &l, sizeof(l), 1), 0);
	cr_assert_eq(fe(c, &l, sizeof(l), 0), 0);
	cr_assert_eq(fe(c, &l, sizeof(l), 2), -VHU_EFDS);
	l.mmap_offset = UINT64_MAX - l.mmap_size;
	cr_assert_eq(fe(c, &l, sizeof(l), 1), 0);
	l.mmap_offset += 1;
	cr_assert_eq(fe(c, &l, sizeof(l), 1), -VHU_EBODY);
	l.mmap_offset = 0;
	l.mmap_size = 0;
	cr_assert_eq(fe(c, &l, sizeof(l), 1), -VHU_EBODY);
	cr_assert_eq(msg(&fe_rep, c, REP, &ack, 8, 0), 0);
	cr_assert_eq(msg(&fe_rep, c, REP, &ack, 8, 1), -VHU_EFDS);
}

Test(wire, inflight)
{
	struct vhu_inflight in = { .mmap_size = 0, .mmap_offset = 0, .num_queues = 2,
				   .queue_size = 256 };
	uint32_t get = VHU_REQ_GET_INFLIGHT_FD, set = VHU_REQ_SET_INFLIGHT_FD;

	cr_assert_eq(fe(get, &in, sizeof(in), 0), 0);
	cr_assert_eq(fe(get, &in, sizeof(in), 1), -VHU_EFDS);
	in.mmap_size = 0x4000;
	cr_assert_eq(fe(set, &in, sizeof(in), 1), 0);
	cr_assert_eq(fe(set, &in, sizeof(in), 0), -VHU_EFDS);
	in.num_queues = 0;
	cr_assert_eq(fe(get, &in, sizeof(in), 0), -VHU_EBODY);
	cr_assert_eq(fe(set, &in, sizeof(in), 1), -VHU_EBODY);
	in.num_queues = 2;
	in.queue_size = 0;
	cr_assert_eq(fe(get, &in, sizeof(in), 0), -VHU_EBODY);
	cr_assert_eq(fe(set, &in, sizeof(in), 1), -VHU_EBODY);
	/* The reply carries the area, with its fd when the back-end has one. */
	in.queue_size = 256;
	cr_assert_eq(msg(&fe_rep, get, REP, &in, sizeof(in), 1), 0);
	cr_assert_eq(msg(&fe_rep, get, REP, &in, sizeof(in), 0), 0);
	cr_assert_eq(msg(&fe_rep, get, REP, &in, sizeof(in), 2), -VHU_EFDS);
}

static int
iotlb(const struct vhu_rules *r, uint8_t perm, uint8_t type)
{
	struct vhu_iotlb m = { .iova = 0x1000, .size = 0x1000, .uaddr = 0x7f00000000,
			       .perm = perm, .type = type };

	return msg(r, VHU_REQ_IOTLB_MSG, REQ, &m, sizeof(m), 0);
}

Test(wire, iotlb_both_channels)
{
	const struct vhu_rules *rs[] = { &fe_req, &be_req };

	for (size_t i = 0; i < 2; i++) {
		const struct vhu_rules *r = rs[i];
		uint32_t code = i == 0 ? VHU_REQ_IOTLB_MSG : VHU_BREQ_IOTLB_MSG;
		struct vhu_iotlb m = { .perm = 3, .type = 2 };

		for (uint8_t p = 0; p <= 3; p++) {
			for (uint8_t t = 1; t <= 4; t++) {
				m.perm = p;
				m.type = t;
				cr_assert_eq(msg(r, code, REQ, &m, sizeof(m), 0), 0);
			}
		}
		m.perm = 4;
		cr_assert_eq(msg(r, code, REQ, &m, sizeof(m), 0), -VHU_EBODY);
		m.perm = 0xff;
		cr_assert_eq(msg(r, code, REQ, &m, sizeof(m), 0), -VHU_EBODY);
		m.perm = 3;
		m.type = 0;
		cr_assert_eq(msg(r, code, REQ, &m, sizeof(m), 0), -VHU_EBODY);
		m.type = 5;
		cr_assert_eq(msg(r, code, REQ, &m, sizeof(m), 0), -VHU_EBODY);
		m.type = 2;
		cr_assert_eq(msg(r, code, REQ, &m, sizeof(m), 1), -VHU_EFDS);
	}
	cr_assert_eq(iotlb(&fe_req, 1, 1), 0);
	cr_assert_eq(iotlb(&fe_req, 1, 9), -VHU_EBODY);
}

Test(wire, device_state)
{
	struct vhu_device_state d = { .direction = 0, .phase = 0 };
	uint32_t c = VHU_REQ_SET_DEVICE_STATE_FD;
	uint64_t reply = VHU_VRING_NOFD;

	cr_assert_eq(fe(c, &d, sizeof(d), 1), 0);
	cr_assert_eq(fe(c, &d, sizeof(d), 0), -VHU_EFDS);
	d.direction = 1;
	cr_assert_eq(fe(c, &d, sizeof(d), 1), 0);
	d.direction = 2;
	cr_assert_eq(fe(c, &d, sizeof(d), 1), -VHU_EBODY);
	d.direction = 0;
	d.phase = 1;
	cr_assert_eq(fe(c, &d, sizeof(d), 1), -VHU_EBODY);
	cr_assert_eq(msg(&fe_rep, c, REP, &reply, 8, 0), 0);
	cr_assert_eq(msg(&fe_rep, c, REP, &reply, 8, 1), 0);
	cr_assert_eq(msg(&fe_rep, c, REP, &reply, 8, 2), -VHU_EFDS);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_CHECK_DEVICE_STATE, REP, &reply, 8, 0), 0);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_CHECK_DEVICE_STATE, REP, &reply, 8, 1), -VHU_EFDS);
}

Test(wire, shmem_map)
{
	struct vhu_shmem_map m = { .shmid = 1, .fd_offset = 0, .shm_offset = 0x1000,
				   .len = 0x2000, .flags = 1 };
	uint32_t map = VHU_BREQ_SHMEM_MAP, unmap = VHU_BREQ_SHMEM_UNMAP;

	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), 0);
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 0), -VHU_EFDS);
	cr_assert_eq(msg(&be_req, unmap, REQ, &m, sizeof(m), 0), 0);
	cr_assert_eq(msg(&be_req, unmap, REQ, &m, sizeof(m), 1), -VHU_EFDS);
	m.flags = 0;
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), 0);
	m.flags = 2;
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), -VHU_EBODY);
	m.flags = 1;
	m.len = 0;
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), -VHU_EBODY);
	cr_assert_eq(msg(&be_req, unmap, REQ, &m, sizeof(m), 0), -VHU_EBODY);
	m.len = 0x2000;
	m.fd_offset = UINT64_MAX - 0x1000;
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), -VHU_EBODY);
	m.fd_offset = UINT64_MAX - 0x2000;
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), 0);
	m.fd_offset = 0;
	m.shm_offset = UINT64_MAX;
	cr_assert_eq(msg(&be_req, map, REQ, &m, sizeof(m), 1), -VHU_EBODY);
}

/* ------------------------------------------------------------------ */
/* fd rules of every request and reply, from the table                 */

/* A body that passes every field validator, for any code. */
static uint32_t
valid_body(enum vhu_channel ch, uint32_t code, bool reply, void *buf)
{
	const struct vhu_req_info *r = vhu_req_info(ch, code);
	uint8_t rule = reply ? r->reply_body : r->body;
	uint16_t size = reply ? r->reply_size : r->body_size;
	uint8_t *b = buf;

	memset(buf, 0, 4096);
	if (rule == VHU_BODY_NONE) {
		return 0;
	}
	if (rule == VHU_BODY_MEM_TABLE) {
		table_of(buf, 1);
		return VHU_MEM_TABLE_SIZE(1);
	}
	if (rule == VHU_BODY_CONFIG) {
		struct vhu_config c = { .offset = 0, .size = 4, .flags = 0 };

		memcpy(buf, &c, sizeof(c));
		return 16;
	}
	if (!reply && ch == VHU_CHAN_FRONTEND) {
		switch (code) {
		case VHU_REQ_SET_LOG_BASE:
		case VHU_REQ_GET_INFLIGHT_FD:
		case VHU_REQ_SET_INFLIGHT_FD:
			/* mmap_size, and num_queues/queue_size of inflight */
			b[0] = 1;
			b[16] = 1;
			b[18] = 1;
			break;
		case VHU_REQ_IOTLB_MSG:
			b[25] = 1;
			break;
		case VHU_REQ_ADD_MEM_REG:
		case VHU_REQ_REM_MEM_REG:
			b[16] = 1;
			break;
		default:
			break;
		}
	} else if (!reply) {
		if (code == VHU_BREQ_IOTLB_MSG) {
			b[25] = 1;
		} else if (code == VHU_BREQ_SHMEM_MAP || code == VHU_BREQ_SHMEM_UNMAP) {
			b[24] = 1;
		}
	}
	return size;
}

static void
fixed_bounds(uint8_t rule, unsigned int *lo, unsigned int *hi)
{
	*lo = rule == VHU_FDS_ONE ? 1 : 0;
	*hi = rule == VHU_FDS_NONE ? 0 : 1;
}

static void
check_fd_rules(const struct vhu_rules *rules, uint32_t max, bool reply)
{
	static uint8_t body[4096];
	enum vhu_channel ch = (enum vhu_channel)rules->channel;
	int checked = 0;

	for (uint32_t code = 1; code <= max; code++) {
		const struct vhu_req_info *r = vhu_req_info(ch, code);
		uint8_t rule = reply ? r->reply_fds : r->fds;
		uint32_t size = valid_body(ch, code, reply, body);
		struct vhu_hdr h = { code, reply ? REP : REQ, size };
		unsigned int lo, hi, glo = 99, ghi = 99;

		if (rule != VHU_FDS_NONE && rule != VHU_FDS_ONE && rule != VHU_FDS_OPT_ONE) {
			continue;
		}
		fixed_bounds(rule, &lo, &hi);
		cr_assert_eq(vhu_msg_fd_bounds(rules, &h, body, &glo, &ghi), 0);
		cr_assert_eq(glo, lo, "%s", r->name);
		cr_assert_eq(ghi, hi, "%s", r->name);
		for (unsigned int n = 0; n <= VHU_MAX_FDS + 1; n++) {
			int want = n >= lo && n <= hi ? 0 : -VHU_EFDS;

			cr_assert_eq(vhu_msg_check(rules, &h, body, n), want, "%s%s with %u fds",
				     r->name, reply ? " reply" : "", n);
		}
		checked++;
	}
	cr_assert_gt(checked, 0);
}

Test(wire, fd_rules_frontend_requests)
{
	check_fd_rules(&fe_req, VHU_REQ_MAX, false);
}

Test(wire, fd_rules_frontend_replies)
{
	check_fd_rules(&fe_rep, VHU_REQ_MAX, true);
}

Test(wire, fd_rules_backend_requests)
{
	check_fd_rules(&be_req, VHU_BREQ_MAX, false);
}

Test(wire, fd_rules_backend_replies)
{
	check_fd_rules(&be_rep, VHU_BREQ_MAX, true);
}

Test(wire, specific_fd_rules)
{
	uint64_t u = 0;

	/* One fd exactly where the protocol hands over a file. */
	cr_assert_eq(fe(VHU_REQ_SET_BACKEND_REQ_FD, NULL, 0, 1), 0);
	cr_assert_eq(fe(VHU_REQ_SET_BACKEND_REQ_FD, NULL, 0, 0), -VHU_EFDS);
	cr_assert_eq(fe(VHU_REQ_SET_LOG_FD, NULL, 0, 1), 0);
	cr_assert_eq(fe(VHU_REQ_SET_LOG_FD, NULL, 0, 2), -VHU_EFDS);
	cr_assert_eq(fe(VHU_REQ_GPU_SET_SOCKET, NULL, 0, 1), 0);
	cr_assert_eq(fe(VHU_REQ_GPU_SET_SOCKET, NULL, 0, 0), -VHU_EFDS);
	/* Nowhere else. */
	cr_assert_eq(fe(VHU_REQ_GET_FEATURES, NULL, 0, 1), -VHU_EFDS);
	cr_assert_eq(fe(VHU_REQ_SET_FEATURES, &u, 8, 1), -VHU_EFDS);
	/* Replies: userfaultfd, shared objects, acks. */
	cr_assert_eq(msg(&fe_rep, VHU_REQ_POSTCOPY_ADVISE, REP, NULL, 0, 1), 0);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_POSTCOPY_ADVISE, REP, NULL, 0, 0), -VHU_EFDS);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_GET_SHARED_OBJECT, REP, &u, 8, 1), 0);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_GET_SHARED_OBJECT, REP, &u, 8, 0), 0);
	cr_assert_eq(msg(&fe_rep, VHU_REQ_SET_FEATURES, REP, &u, 8, 1), -VHU_EFDS);
	cr_assert_eq(msg(&be_rep, VHU_BREQ_SHARED_OBJECT_LOOKUP, REP, &u, 8, 1), 0);
	cr_assert_eq(msg(&be_rep, VHU_BREQ_SHARED_OBJECT_LOOKUP, REP, &u, 8, 2), -VHU_EFDS);
	cr_assert_eq(msg(&be_rep, VHU_BREQ_SHMEM_MAP, REP, &u, 8, 1), -VHU_EFDS);
}

Test(wire, body_checked_before_fds)
{
	struct vhu_log l = { .mmap_size = 0 };

	/* A bad body with a bad fd count is named by the body fault. */
	cr_assert_eq(fe(VHU_REQ_SET_LOG_BASE, &l, sizeof(l), 5), -VHU_EBODY);
	/* And a header fault wins over both. */
	cr_assert_eq(msg(&fe_req, VHU_REQ_SET_LOG_BASE, 0x0, &l, sizeof(l), 5), -VHU_EVERSION);
}
