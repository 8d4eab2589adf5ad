/* SPDX-License-Identifier: MIT */
/*
 * Security model.
 *
 * The peer on the other end of a vhost-user socket is one step away from an
 * escaped guest: a compromised back-end process, or a front-end that a guest
 * already controls. Nothing it sends is trusted. No header field, body field
 * or fd count is believed until it has been checked here, and every check in
 * this file runs before any handler sees the message. A failed check is a
 * protocol fault reported as a vhu code; it never asserts, aborts or exits,
 * and it never reads past hdr->size bytes of body. Bodies may sit at any
 * address inside a byte stream, so every field is read through memcpy.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vhu/error.h>
#include <vhu/wire.h>

/* ------------------------------------------------------------------ */
/* Layout guarantees: these structs are the wire, not an approximation. */

#define ASSERT_OFF(type, field, off) \
	_Static_assert(offsetof(struct type, field) == (off), #type "." #field " offset")
#define ASSERT_SIZE(type, size) \
	_Static_assert(sizeof(struct type) == (size), #type " size")

ASSERT_SIZE(vhu_hdr, VHU_HDR_SIZE);
ASSERT_OFF(vhu_hdr, request, 0);
ASSERT_OFF(vhu_hdr, flags, 4);
ASSERT_OFF(vhu_hdr, size, 8);

ASSERT_SIZE(vhu_u64, 8);
ASSERT_OFF(vhu_u64, value, 0);

ASSERT_SIZE(vhu_vring_state, 8);
ASSERT_OFF(vhu_vring_state, index, 0);
ASSERT_OFF(vhu_vring_state, num, 4);

ASSERT_SIZE(vhu_vring_addr, 40);
ASSERT_OFF(vhu_vring_addr, index, 0);
ASSERT_OFF(vhu_vring_addr, flags, 4);
ASSERT_OFF(vhu_vring_addr, desc, 8);
ASSERT_OFF(vhu_vring_addr, used, 16);
ASSERT_OFF(vhu_vring_addr, avail, 24);
ASSERT_OFF(vhu_vring_addr, log, 32);

ASSERT_SIZE(vhu_mem_region, 32);
ASSERT_OFF(vhu_mem_region, guest_phys_addr, 0);
ASSERT_OFF(vhu_mem_region, size, 8);
ASSERT_OFF(vhu_mem_region, user_addr, 16);
ASSERT_OFF(vhu_mem_region, mmap_offset, 24);

ASSERT_SIZE(vhu_mem_table, VHU_MEM_TABLE_SIZE(VHU_MAX_MEM_REGIONS));
ASSERT_OFF(vhu_mem_table, nregions, 0);
ASSERT_OFF(vhu_mem_table, padding, 4);
ASSERT_OFF(vhu_mem_table, regions, 8);

ASSERT_SIZE(vhu_single_region, 40);
ASSERT_OFF(vhu_single_region, padding, 0);
ASSERT_OFF(vhu_single_region, region, 8);

ASSERT_SIZE(vhu_log, 16);
ASSERT_OFF(vhu_log, mmap_size, 0);
ASSERT_OFF(vhu_log, mmap_offset, 8);

ASSERT_SIZE(vhu_config, VHU_CONFIG_HDR_SIZE);
ASSERT_OFF(vhu_config, offset, 0);
ASSERT_OFF(vhu_config, size, 4);
ASSERT_OFF(vhu_config, flags, 8);
ASSERT_OFF(vhu_config, payload, 12);

ASSERT_SIZE(vhu_inflight, 24);
ASSERT_OFF(vhu_inflight, mmap_size, 0);
ASSERT_OFF(vhu_inflight, mmap_offset, 8);
ASSERT_OFF(vhu_inflight, num_queues, 16);
ASSERT_OFF(vhu_inflight, queue_size, 18);
ASSERT_OFF(vhu_inflight, padding, 20);

ASSERT_SIZE(vhu_iotlb, 32);
ASSERT_OFF(vhu_iotlb, iova, 0);
ASSERT_OFF(vhu_iotlb, size, 8);
ASSERT_OFF(vhu_iotlb, uaddr, 16);
ASSERT_OFF(vhu_iotlb, perm, 24);
ASSERT_OFF(vhu_iotlb, type, 25);
ASSERT_OFF(vhu_iotlb, padding, 26);

ASSERT_SIZE(vhu_vring_area, 24);
ASSERT_OFF(vhu_vring_area, u64, 0);
ASSERT_OFF(vhu_vring_area, size, 8);
ASSERT_OFF(vhu_vring_area, offset, 16);

ASSERT_SIZE(vhu_shared_object, 16);
ASSERT_OFF(vhu_shared_object, uuid, 0);

ASSERT_SIZE(vhu_device_state, 8);
ASSERT_OFF(vhu_device_state, direction, 0);
ASSERT_OFF(vhu_device_state, phase, 4);

ASSERT_SIZE(vhu_shmem_map, 40);
ASSERT_OFF(vhu_shmem_map, shmid, 0);
ASSERT_OFF(vhu_shmem_map, padding, 1);
ASSERT_OFF(vhu_shmem_map, fd_offset, 8);
ASSERT_OFF(vhu_shmem_map, shm_offset, 16);
ASSERT_OFF(vhu_shmem_map, len, 24);
ASSERT_OFF(vhu_shmem_map, flags, 32);

ASSERT_SIZE(vhu_shmem_config, 2056);
ASSERT_OFF(vhu_shmem_config, nregions, 0);
ASSERT_OFF(vhu_shmem_config, padding, 4);
ASSERT_OFF(vhu_shmem_config, memory_sizes, 8);

/* The table stores sizes in 16 bits; the largest body must fit. */
_Static_assert(sizeof(struct vhu_shmem_config) <= UINT16_MAX, "reply_size fits u16");

/* ------------------------------------------------------------------ */
/* Request tables                                                      */

/*
 * Columns: code, request body rule, request body size, request fd rule,
 * reply rule, reply body rule, reply body size, reply fd rule, then the
 * kind of file the request's fds and the reply's fds must be.
 * ACK rows describe the optional u64 ack (FIXED 8, no fds).
 */
#define FRONTEND_REQUESTS(X) \
	X(GET_FEATURES,          NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_FEATURES,          FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_OWNER,             NONE,      0,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(RESET_OWNER,           NONE,      0,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_MEM_TABLE,         MEM_TABLE, 0,  NREGIONS, ACK,    VAR,    8,    NONE, FILE   , ANY    ) \
	X(SET_LOG_BASE,          FIXED,     16, OPT_ONE,  ALWAYS, FIXED,  8,    NONE, FILE   , ANY    ) \
	X(SET_LOG_FD,            NONE,      0,  ONE,      ACK,    FIXED,  8,    NONE, EVENTFD, ANY    ) \
	X(SET_VRING_NUM,         FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_VRING_ADDR,        FIXED,     40, NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_VRING_BASE,        FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_VRING_BASE,        FIXED,     8,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_VRING_KICK,        FIXED,     8,  NOFD_BIT, ACK,    FIXED,  8,    NONE, EVENTFD, ANY    ) \
	X(SET_VRING_CALL,        FIXED,     8,  NOFD_BIT, ACK,    FIXED,  8,    NONE, EVENTFD, ANY    ) \
	X(SET_VRING_ERR,         FIXED,     8,  NOFD_BIT, ACK,    FIXED,  8,    NONE, EVENTFD, ANY    ) \
	X(GET_PROTOCOL_FEATURES, NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_PROTOCOL_FEATURES, FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_QUEUE_NUM,         NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_VRING_ENABLE,      FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SEND_RARP,             FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(NET_SET_MTU,           FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_BACKEND_REQ_FD,    NONE,      0,  ONE,      ACK,    FIXED,  8,    NONE, SOCKET , ANY    ) \
	X(IOTLB_MSG,             FIXED,     32, NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(SET_VRING_ENDIAN,      FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_CONFIG,            CONFIG,    0,  NONE,     ALWAYS, CONFIG, 0,    NONE, ANY    , ANY    ) \
	X(SET_CONFIG,            CONFIG,    0,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(CREATE_CRYPTO_SESSION, VAR,       8,  NONE,     ALWAYS, VAR,    8,    NONE, ANY    , ANY    ) \
	X(CLOSE_CRYPTO_SESSION,  FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(POSTCOPY_ADVISE,       NONE,      0,  NONE,     ALWAYS, NONE,   0,    ONE, ANY    , ANY    ) \
	X(POSTCOPY_LISTEN,       NONE,      0,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(POSTCOPY_END,          NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_INFLIGHT_FD,       FIXED,     24, NONE,     ALWAYS, FIXED,  24,   OPT_ONE, ANY    , FILE   ) \
	X(SET_INFLIGHT_FD,       FIXED,     24, ONE,      ACK,    FIXED,  8,    NONE, FILE   , ANY    ) \
	X(GPU_SET_SOCKET,        NONE,      0,  ONE,      ACK,    FIXED,  8,    NONE, SOCKET , ANY    ) \
	X(RESET_DEVICE,          NONE,      0,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(VRING_KICK,            FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_MAX_MEM_SLOTS,     NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(ADD_MEM_REG,           FIXED,     40, ONE,      ACK,    VAR,    8,    NONE, FILE   , ANY    ) \
	X(REM_MEM_REG,           FIXED,     40, OPT_ONE,  ACK,    FIXED,  8,    NONE, FILE   , ANY    ) \
	X(SET_STATUS,            FIXED,     8,  NONE,     ACK,    FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_STATUS,            NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_SHARED_OBJECT,     FIXED,     16, NONE,     ALWAYS, FIXED,  8,    OPT_ONE, ANY    , ANY    ) \
	X(SET_DEVICE_STATE_FD,   FIXED,     8,  ONE,      ALWAYS, FIXED,  8,    OPT_ONE, PIPE   , PIPE   ) \
	X(CHECK_DEVICE_STATE,    NONE,      0,  NONE,     ALWAYS, FIXED,  8,    NONE, ANY    , ANY    ) \
	X(GET_SHMEM_CONFIG,      NONE,      0,  NONE,     ALWAYS, FIXED,  2056, NONE, ANY    , ANY    )

#define BACKEND_REQUESTS(X) \
	X(IOTLB_MSG,                FIXED, 32, NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    ) \
	X(CONFIG_CHANGE_MSG,        NONE,  0,  NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    ) \
	X(VRING_HOST_NOTIFIER_MSG,  FIXED, 24, NOFD_BIT, ACK,    FIXED, 8, NONE, MAP    , ANY    ) \
	X(VRING_CALL,               FIXED, 8,  NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    ) \
	X(VRING_ERR,                FIXED, 8,  NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    ) \
	X(SHARED_OBJECT_ADD,        FIXED, 16, NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    ) \
	X(SHARED_OBJECT_REMOVE,     FIXED, 16, NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    ) \
	X(SHARED_OBJECT_LOOKUP,     FIXED, 16, NONE,     ALWAYS, FIXED, 8, OPT_ONE, ANY    , ANY    ) \
	X(SHMEM_MAP,                FIXED, 40, ONE,      ACK,    FIXED, 8, NONE, MAP    , ANY    ) \
	X(SHMEM_UNMAP,              FIXED, 40, NONE,     ACK,    FIXED, 8, NONE, ANY    , ANY    )

#define ROW(idx, nm, b, bs, f, r, rb, rs, rf, fk, rfk) \
	[idx] = { \
		.name = (nm), \
		.body = VHU_BODY_##b, \
		.fds = VHU_FDS_##f, \
		.body_size = (bs), \
		.reply = VHU_REPLY_##r, \
		.reply_body = VHU_BODY_##rb, \
		.reply_fds = VHU_FDS_##rf, \
		.reply_size = (rs), \
		.fd_kind = VHU_FDK_##fk, \
		.reply_fd_kind = VHU_FDK_##rfk, \
	},
#define FRONTEND_ROW(code, ...) ROW(VHU_REQ_##code, #code, __VA_ARGS__)
#define BACKEND_ROW(code, ...) ROW(VHU_BREQ_##code, "BACKEND_" #code, __VA_ARGS__)

static const struct vhu_req_info frontend_table[VHU_REQ_MAX + 1] = {
	FRONTEND_REQUESTS(FRONTEND_ROW)
};

static const struct vhu_req_info backend_table[VHU_BREQ_MAX + 1] = {
	BACKEND_REQUESTS(BACKEND_ROW)
};

const struct vhu_req_info *
vhu_req_info(enum vhu_channel chan, uint32_t request)
{
	const struct vhu_req_info *row = NULL;

	if (chan == VHU_CHAN_FRONTEND && request <= VHU_REQ_MAX) {
		row = &frontend_table[request];
	} else if (chan == VHU_CHAN_BACKEND && request <= VHU_BREQ_MAX) {
		row = &backend_table[request];
	}
	/* Code 0 has a zeroed row with no name: it is never valid. */
	if (row != NULL && row->name == NULL) {
		row = NULL;
	}
	return row;
}

const char *
vhu_req_name(enum vhu_channel chan, uint32_t request)
{
	const struct vhu_req_info *row = vhu_req_info(chan, request);

	return row != NULL ? row->name : "UNKNOWN";
}

static const char *const protocol_feature_names[VHU_PROTOCOL_F_MAX] = {
	[VHU_PROTOCOL_F_MQ] = "MQ",
	[VHU_PROTOCOL_F_LOG_SHMFD] = "LOG_SHMFD",
	[VHU_PROTOCOL_F_RARP] = "RARP",
	[VHU_PROTOCOL_F_REPLY_ACK] = "REPLY_ACK",
	[VHU_PROTOCOL_F_NET_MTU] = "NET_MTU",
	[VHU_PROTOCOL_F_BACKEND_REQ] = "BACKEND_REQ",
	[VHU_PROTOCOL_F_CROSS_ENDIAN] = "CROSS_ENDIAN",
	[VHU_PROTOCOL_F_CRYPTO_SESSION] = "CRYPTO_SESSION",
	[VHU_PROTOCOL_F_PAGEFAULT] = "PAGEFAULT",
	[VHU_PROTOCOL_F_CONFIG] = "CONFIG",
	[VHU_PROTOCOL_F_BACKEND_SEND_FD] = "BACKEND_SEND_FD",
	[VHU_PROTOCOL_F_HOST_NOTIFIER] = "HOST_NOTIFIER",
	[VHU_PROTOCOL_F_INFLIGHT_SHMFD] = "INFLIGHT_SHMFD",
	[VHU_PROTOCOL_F_RESET_DEVICE] = "RESET_DEVICE",
	[VHU_PROTOCOL_F_INBAND_NOTIFICATIONS] = "INBAND_NOTIFICATIONS",
	[VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS] = "CONFIGURE_MEM_SLOTS",
	[VHU_PROTOCOL_F_STATUS] = "STATUS",
	[VHU_PROTOCOL_F_XEN_MMAP] = "XEN_MMAP",
	[VHU_PROTOCOL_F_SHARED_OBJECT] = "SHARED_OBJECT",
	[VHU_PROTOCOL_F_DEVICE_STATE] = "DEVICE_STATE",
};

const char *
vhu_protocol_feature_name(unsigned int bit)
{
	if (bit >= VHU_PROTOCOL_F_MAX) {
		return NULL;
	}
	return protocol_feature_names[bit];
}

static const char *const feature_names[64] = {
	[VHU_F_NOTIFY_ON_EMPTY] = "NOTIFY_ON_EMPTY",
	[VHU_F_LOG_ALL] = "LOG_ALL",
	[VHU_F_ANY_LAYOUT] = "ANY_LAYOUT",
	[VHU_F_RING_INDIRECT_DESC] = "RING_INDIRECT_DESC",
	[VHU_F_RING_EVENT_IDX] = "RING_EVENT_IDX",
	[VHU_F_PROTOCOL_FEATURES] = "PROTOCOL_FEATURES",
	[VHU_F_VERSION_1] = "VERSION_1",
	[VHU_F_ACCESS_PLATFORM] = "ACCESS_PLATFORM",
	[VHU_F_RING_PACKED] = "RING_PACKED",
	[VHU_F_IN_ORDER] = "IN_ORDER",
	[VHU_F_ORDER_PLATFORM] = "ORDER_PLATFORM",
	[VHU_F_SR_IOV] = "SR_IOV",
	[VHU_F_NOTIFICATION_DATA] = "NOTIFICATION_DATA",
	[VHU_F_NOTIF_CONFIG_DATA] = "NOTIF_CONFIG_DATA",
	[VHU_F_RING_RESET] = "RING_RESET",
};

const char *
vhu_feature_name(unsigned int bit)
{
	if (bit >= sizeof(feature_names) / sizeof(feature_names[0])) {
		return NULL;
	}
	return feature_names[bit];
}

/* ------------------------------------------------------------------ */
/* Body layouts                                                        */

/*
 * The struct each body is, where the rule tables above cannot tell it by
 * size alone. Rows not listed here get their layout from the tables: a
 * FIXED body of 8 bytes is a u64, and so is the 8-byte form of a VAR body
 * whose minimum is 8 (the ack a postcopy reply may also be).
 */
static const uint8_t frontend_request_layouts[VHU_REQ_MAX + 1] = {
	[VHU_REQ_SET_FEATURES] = VHU_LAYOUT_FEATURES,
	[VHU_REQ_SET_PROTOCOL_FEATURES] = VHU_LAYOUT_PROTOCOL_FEATURES,
	[VHU_REQ_SET_MEM_TABLE] = VHU_LAYOUT_MEM_TABLE,
	[VHU_REQ_ADD_MEM_REG] = VHU_LAYOUT_SINGLE_REGION,
	[VHU_REQ_REM_MEM_REG] = VHU_LAYOUT_SINGLE_REGION,
	[VHU_REQ_SET_LOG_BASE] = VHU_LAYOUT_LOG,
	[VHU_REQ_SET_VRING_NUM] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_SET_VRING_BASE] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_GET_VRING_BASE] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_SET_VRING_ENABLE] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_SET_VRING_ENDIAN] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_VRING_KICK] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_SET_VRING_ADDR] = VHU_LAYOUT_VRING_ADDR,
	[VHU_REQ_SET_VRING_KICK] = VHU_LAYOUT_VRING_FILE,
	[VHU_REQ_SET_VRING_CALL] = VHU_LAYOUT_VRING_FILE,
	[VHU_REQ_SET_VRING_ERR] = VHU_LAYOUT_VRING_FILE,
	[VHU_REQ_GET_CONFIG] = VHU_LAYOUT_CONFIG,
	[VHU_REQ_SET_CONFIG] = VHU_LAYOUT_CONFIG,
	[VHU_REQ_GET_INFLIGHT_FD] = VHU_LAYOUT_INFLIGHT,
	[VHU_REQ_SET_INFLIGHT_FD] = VHU_LAYOUT_INFLIGHT,
	[VHU_REQ_IOTLB_MSG] = VHU_LAYOUT_IOTLB,
	[VHU_REQ_SET_DEVICE_STATE_FD] = VHU_LAYOUT_DEVICE_STATE,
	[VHU_REQ_GET_SHARED_OBJECT] = VHU_LAYOUT_SHARED_OBJECT,
};

static const uint8_t frontend_reply_layouts[VHU_REQ_MAX + 1] = {
	[VHU_REQ_GET_FEATURES] = VHU_LAYOUT_FEATURES,
	[VHU_REQ_GET_PROTOCOL_FEATURES] = VHU_LAYOUT_PROTOCOL_FEATURES,
	[VHU_REQ_GET_VRING_BASE] = VHU_LAYOUT_VRING_STATE,
	[VHU_REQ_GET_CONFIG] = VHU_LAYOUT_CONFIG,
	[VHU_REQ_GET_INFLIGHT_FD] = VHU_LAYOUT_INFLIGHT,
	[VHU_REQ_GET_SHMEM_CONFIG] = VHU_LAYOUT_SHMEM_CONFIG,
	[VHU_REQ_SET_MEM_TABLE] = VHU_LAYOUT_MEM_TABLE,
	[VHU_REQ_ADD_MEM_REG] = VHU_LAYOUT_SINGLE_REGION,
};

static const uint8_t backend_request_layouts[VHU_BREQ_MAX + 1] = {
	[VHU_BREQ_IOTLB_MSG] = VHU_LAYOUT_IOTLB,
	[VHU_BREQ_VRING_HOST_NOTIFIER_MSG] = VHU_LAYOUT_VRING_AREA,
	[VHU_BREQ_VRING_CALL] = VHU_LAYOUT_VRING_STATE,
	[VHU_BREQ_VRING_ERR] = VHU_LAYOUT_VRING_STATE,
	[VHU_BREQ_SHARED_OBJECT_ADD] = VHU_LAYOUT_SHARED_OBJECT,
	[VHU_BREQ_SHARED_OBJECT_REMOVE] = VHU_LAYOUT_SHARED_OBJECT,
	[VHU_BREQ_SHARED_OBJECT_LOOKUP] = VHU_LAYOUT_SHARED_OBJECT,
	[VHU_BREQ_SHMEM_MAP] = VHU_LAYOUT_SHMEM_MAP,
	[VHU_BREQ_SHMEM_UNMAP] = VHU_LAYOUT_SHMEM_MAP,
};

static const uint16_t layout_sizes[VHU_LAYOUT_COUNT] = {
	[VHU_LAYOUT_U64] = sizeof(struct vhu_u64),
	[VHU_LAYOUT_FEATURES] = sizeof(struct vhu_u64),
	[VHU_LAYOUT_PROTOCOL_FEATURES] = sizeof(struct vhu_u64),
	[VHU_LAYOUT_VRING_STATE] = sizeof(struct vhu_vring_state),
	[VHU_LAYOUT_VRING_ADDR] = sizeof(struct vhu_vring_addr),
	[VHU_LAYOUT_VRING_FILE] = sizeof(struct vhu_u64),
	[VHU_LAYOUT_MEM_TABLE] = VHU_MEM_TABLE_SIZE(0),
	[VHU_LAYOUT_SINGLE_REGION] = sizeof(struct vhu_single_region),
	[VHU_LAYOUT_LOG] = sizeof(struct vhu_log),
	[VHU_LAYOUT_CONFIG] = VHU_CONFIG_HDR_SIZE,
	[VHU_LAYOUT_INFLIGHT] = sizeof(struct vhu_inflight),
	[VHU_LAYOUT_IOTLB] = sizeof(struct vhu_iotlb),
	[VHU_LAYOUT_VRING_AREA] = sizeof(struct vhu_vring_area),
	[VHU_LAYOUT_SHARED_OBJECT] = sizeof(struct vhu_shared_object),
	[VHU_LAYOUT_DEVICE_STATE] = sizeof(struct vhu_device_state),
	[VHU_LAYOUT_SHMEM_MAP] = sizeof(struct vhu_shmem_map),
	[VHU_LAYOUT_SHMEM_CONFIG] = offsetof(struct vhu_shmem_config, memory_sizes),
};

enum vhu_layout
vhu_body_layout(enum vhu_channel chan, uint32_t request, bool reply, uint32_t size)
{
	const struct vhu_req_info *row = vhu_req_info(chan, request);
	const uint8_t *table;
	uint8_t rule;
	uint16_t want;

	if (row == NULL) {
		return VHU_LAYOUT_NONE;
	}
	rule = reply ? row->reply_body : row->body;
	want = reply ? row->reply_size : row->body_size;
	if (rule == VHU_BODY_VAR && want == sizeof(struct vhu_u64) && size == want) {
		return VHU_LAYOUT_U64;
	}
	if (chan == VHU_CHAN_FRONTEND) {
		table = reply ? frontend_reply_layouts : frontend_request_layouts;
	} else {
		table = reply ? NULL : backend_request_layouts;
	}
	if (table != NULL && table[request] != VHU_LAYOUT_NONE) {
		return (enum vhu_layout)table[request];
	}
	if (rule == VHU_BODY_FIXED && want == sizeof(struct vhu_u64)) {
		return VHU_LAYOUT_U64;
	}
	return VHU_LAYOUT_NONE;
}

size_t
vhu_layout_size(enum vhu_layout layout)
{
	if ((unsigned int)layout >= VHU_LAYOUT_COUNT) {
		return 0;
	}
	return layout_sizes[layout];
}

/* ------------------------------------------------------------------ */
/* Header validation                                                   */

static bool
is_reply(const struct vhu_rules *rules, const struct vhu_hdr *hdr)
{
	if (rules->expect == VHU_EXPECT_REPLY) {
		return true;
	}
	if (rules->expect == VHU_EXPECT_EITHER) {
		return (hdr->flags & VHU_FLAG_REPLY) != 0;
	}
	return false;
}

static int
check_shape(uint8_t rule, uint32_t want, uint32_t size, bool reply)
{
	uint32_t n;

	switch (rule) {
	case VHU_BODY_NONE:
		return size == 0 ? 0 : -VHU_EBODYSIZE;
	case VHU_BODY_FIXED:
		return size == want ? 0 : -VHU_EBODYSIZE;
	case VHU_BODY_MEM_TABLE:
		if (size < VHU_MEM_TABLE_SIZE(0) || (size - VHU_MEM_TABLE_SIZE(0)) % 32u != 0) {
			return -VHU_EBODYSIZE;
		}
		n = (size - VHU_MEM_TABLE_SIZE(0)) / 32u;
		return n >= 1 && n <= VHU_MAX_MEM_REGIONS ? 0 : -VHU_EBODYSIZE;
	case VHU_BODY_CONFIG:
		/* A back-end that failed GET_CONFIG answers with an empty body. */
		if (reply && size == 0) {
			return 0;
		}
		return size >= VHU_CONFIG_HDR_SIZE ? 0 : -VHU_EBODYSIZE;
	case VHU_BODY_VAR:
		return size >= want ? 0 : -VHU_EBODYSIZE;
	default:
		return -VHU_EBODYSIZE;
	}
}

static const struct vhu_req_info *
hdr_row(const struct vhu_rules *rules, const struct vhu_hdr *hdr, int *err)
{
	const struct vhu_req_info *row;
	uint32_t max = rules->max_size != 0 ? rules->max_size : VHU_DEFAULT_MAX_SIZE;
	bool reply;

	if ((hdr->flags & VHU_FLAG_VERSION_MASK) != VHU_VERSION) {
		*err = -VHU_EVERSION;
		return NULL;
	}
	if ((hdr->flags & VHU_FLAG_RESERVED_MASK) != 0) {
		*err = -VHU_EFLAGS;
		return NULL;
	}
	reply = is_reply(rules, hdr);
	if (reply) {
		/* A reply carries REPLY and never asks for an answer itself. */
		if ((hdr->flags & VHU_FLAG_REPLY) == 0 || (hdr->flags & VHU_FLAG_NEED_REPLY) != 0) {
			*err = -VHU_EFLAGS;
			return NULL;
		}
	} else if ((hdr->flags & VHU_FLAG_REPLY) != 0) {
		*err = -VHU_EFLAGS;
		return NULL;
	}
	row = vhu_req_info((enum vhu_channel)rules->channel, hdr->request);
	if (row == NULL) {
		*err = -VHU_EREQUEST;
		return NULL;
	}
	/* Before the shape check, so that a huge size is named as such. */
	if (hdr->size > max) {
		*err = -VHU_EOVERSIZED;
		return NULL;
	}
	if (reply) {
		*err = check_shape(row->reply_body, row->reply_size, hdr->size, true);
	} else {
		*err = check_shape(row->body, row->body_size, hdr->size, false);
	}
	return *err == 0 ? row : NULL;
}

static int
check_args(const struct vhu_rules *rules, const struct vhu_hdr *hdr)
{
	if (rules == NULL || hdr == NULL || rules->expect > VHU_EXPECT_EITHER) {
		return -EINVAL;
	}
	return 0;
}

int
vhu_hdr_check(const struct vhu_rules *rules, const struct vhu_hdr *hdr)
{
	int err = check_args(rules, hdr);

	if (err == 0) {
		hdr_row(rules, hdr, &err);
	}
	return err;
}

/* ------------------------------------------------------------------ */
/* Body validation                                                     */

static inline uint8_t
rd8(const void *p, size_t off)
{
	return ((const uint8_t *)p)[off];
}

static inline uint16_t
rd16(const void *p, size_t off)
{
	uint16_t v;

	memcpy(&v, (const uint8_t *)p + off, sizeof(v));
	return v;
}

static inline uint32_t
rd32(const void *p, size_t off)
{
	uint32_t v;

	memcpy(&v, (const uint8_t *)p + off, sizeof(v));
	return v;
}

static inline uint64_t
rd64(const void *p, size_t off)
{
	uint64_t v;

	memcpy(&v, (const uint8_t *)p + off, sizeof(v));
	return v;
}

/* True if base + len does not wrap around the 64-bit address space. */
static inline bool
fits(uint64_t base, uint64_t len)
{
	return len <= UINT64_MAX - base;
}

#define OFF(type, field) offsetof(struct type, field)

static int
check_region(const void *r)
{
	uint64_t gpa = rd64(r, OFF(vhu_mem_region, guest_phys_addr));
	uint64_t size = rd64(r, OFF(vhu_mem_region, size));
	uint64_t uaddr = rd64(r, OFF(vhu_mem_region, user_addr));
	uint64_t off = rd64(r, OFF(vhu_mem_region, mmap_offset));

	if (size == 0 || !fits(gpa, size) || !fits(uaddr, size) || !fits(off, size)) {
		return -VHU_EBODY;
	}
	return 0;
}

static int
check_mem_table(const void *body, uint32_t size)
{
	const uint8_t *regions = (const uint8_t *)body + OFF(vhu_mem_table, regions);
	const size_t rsz = sizeof(struct vhu_mem_region);
	uint32_t n = rd32(body, OFF(vhu_mem_table, nregions));
	uint32_t i, j;

	if (size < VHU_MEM_TABLE_SIZE(0) || n < 1 || n > VHU_MAX_MEM_REGIONS ||
	    VHU_MEM_TABLE_SIZE(n) != size || rd32(body, OFF(vhu_mem_table, padding)) != 0) {
		return -VHU_EBODY;
	}
	for (i = 0; i < n; i++) {
		if (check_region(regions + i * rsz) != 0) {
			return -VHU_EBODY;
		}
	}
	/* Pairwise is fine at 32 regions, and sorting would need a copy. */
	for (i = 0; i < n; i++) {
		uint64_t a0 = rd64(regions + i * rsz, OFF(vhu_mem_region, guest_phys_addr));
		uint64_t a1 = a0 + rd64(regions + i * rsz, OFF(vhu_mem_region, size));

		for (j = i + 1; j < n; j++) {
			uint64_t b0 = rd64(regions + j * rsz,
					   OFF(vhu_mem_region, guest_phys_addr));
			uint64_t b1 = b0 + rd64(regions + j * rsz, OFF(vhu_mem_region, size));

			if (a0 < b1 && b0 < a1) {
				return -VHU_EBODY;
			}
		}
	}
	return 0;
}

static int
check_vring_addr(const void *body)
{
	uint32_t flags = rd32(body, OFF(vhu_vring_addr, flags));

	if ((flags & ~VHU_VRING_F_LOG) != 0 ||
	    (rd64(body, OFF(vhu_vring_addr, desc)) & 15u) != 0 ||
	    (rd64(body, OFF(vhu_vring_addr, used)) & 3u) != 0 ||
	    (rd64(body, OFF(vhu_vring_addr, avail)) & 1u) != 0) {
		return -VHU_EBODY;
	}
	return 0;
}

static int
check_config(const void *body, uint32_t size)
{
	uint32_t off = rd32(body, OFF(vhu_config, offset));
	uint32_t len = rd32(body, OFF(vhu_config, size));
	uint32_t flags = rd32(body, OFF(vhu_config, flags));

	/* 64-bit sums: a u32 offset plus a u32 length cannot wrap there. */
	if (len == 0 || (uint64_t)VHU_CONFIG_HDR_SIZE + len != size ||
	    (uint64_t)off + len > VHU_CONFIG_SPACE_SIZE || (flags & ~3u) != 0) {
		return -VHU_EBODY;
	}
	return 0;
}

static int
check_log(const void *body)
{
	uint64_t size = rd64(body, OFF(vhu_log, mmap_size));
	uint64_t off = rd64(body, OFF(vhu_log, mmap_offset));

	return size != 0 && fits(off, size) ? 0 : -VHU_EBODY;
}

static int
check_inflight(const void *body)
{
	if (rd16(body, OFF(vhu_inflight, num_queues)) == 0 ||
	    rd16(body, OFF(vhu_inflight, queue_size)) == 0) {
		return -VHU_EBODY;
	}
	return 0;
}

static int
check_iotlb(const void *body)
{
	uint8_t perm = rd8(body, OFF(vhu_iotlb, perm));
	uint8_t type = rd8(body, OFF(vhu_iotlb, type));

	return perm <= 3 && type >= 1 && type <= 4 ? 0 : -VHU_EBODY;
}

static int
check_nofd_word(const void *body)
{
	uint64_t w = rd64(body, 0);

	return (w & ~(VHU_VRING_IDX_MASK | VHU_VRING_NOFD)) == 0 ? 0 : -VHU_EBODY;
}

static int
check_bool_num(const void *body)
{
	return rd32(body, OFF(vhu_vring_state, num)) <= 1 ? 0 : -VHU_EBODY;
}

static int
check_device_state(const void *body)
{
	if (rd32(body, OFF(vhu_device_state, direction)) > 1 ||
	    rd32(body, OFF(vhu_device_state, phase)) != 0) {
		return -VHU_EBODY;
	}
	return 0;
}

static int
check_shmem_map(const void *body)
{
	uint64_t fd_off = rd64(body, OFF(vhu_shmem_map, fd_offset));
	uint64_t shm_off = rd64(body, OFF(vhu_shmem_map, shm_offset));
	uint64_t len = rd64(body, OFF(vhu_shmem_map, len));
	uint64_t flags = rd64(body, OFF(vhu_shmem_map, flags));

	if ((flags & ~1ull) != 0 || len == 0 || !fits(fd_off, len) || !fits(shm_off, len)) {
		return -VHU_EBODY;
	}
	return 0;
}

/* The header check has already fixed the size for every FIXED rule used below. */
static int
check_frontend_request(uint32_t req, const void *body, uint32_t size)
{
	switch (req) {
	case VHU_REQ_SET_MEM_TABLE:
		return check_mem_table(body, size);
	case VHU_REQ_SET_LOG_BASE:
		return check_log(body);
	case VHU_REQ_SET_VRING_ADDR:
		return check_vring_addr(body);
	case VHU_REQ_SET_VRING_KICK:
	case VHU_REQ_SET_VRING_CALL:
	case VHU_REQ_SET_VRING_ERR:
		return check_nofd_word(body);
	case VHU_REQ_SET_VRING_ENABLE:
	case VHU_REQ_SET_VRING_ENDIAN:
		return check_bool_num(body);
	case VHU_REQ_IOTLB_MSG:
		return check_iotlb(body);
	case VHU_REQ_GET_CONFIG:
	case VHU_REQ_SET_CONFIG:
		return check_config(body, size);
	case VHU_REQ_GET_INFLIGHT_FD:
	case VHU_REQ_SET_INFLIGHT_FD:
		return check_inflight(body);
	case VHU_REQ_ADD_MEM_REG:
	case VHU_REQ_REM_MEM_REG:
		return check_region((const uint8_t *)body + OFF(vhu_single_region, region));
	case VHU_REQ_SET_DEVICE_STATE_FD:
		return check_device_state(body);
	default:
		return 0;
	}
}

static int
check_frontend_reply(uint32_t req, const void *body, uint32_t size)
{
	switch (req) {
	case VHU_REQ_GET_CONFIG:
		return size == 0 ? 0 : check_config(body, size);
	case VHU_REQ_SET_MEM_TABLE:
		/* Postcopy: the back-end answers with the table it mapped. */
		return size == sizeof(struct vhu_u64) ? 0 : check_mem_table(body, size);
	case VHU_REQ_ADD_MEM_REG:
		/* Postcopy: the back-end answers with the region it mapped. */
		if (size == sizeof(struct vhu_u64)) {
			return 0;
		}
		if (size != sizeof(struct vhu_single_region)) {
			return -VHU_EBODY;
		}
		return check_region((const uint8_t *)body + OFF(vhu_single_region, region));
	default:
		return 0;
	}
}

static int
check_backend_request(uint32_t req, const void *body)
{
	switch (req) {
	case VHU_BREQ_IOTLB_MSG:
		return check_iotlb(body);
	case VHU_BREQ_VRING_HOST_NOTIFIER_MSG:
		return check_nofd_word(body);
	case VHU_BREQ_SHMEM_MAP:
	case VHU_BREQ_SHMEM_UNMAP:
		return check_shmem_map(body);
	default:
		return 0;
	}
}

static int
check_body(const struct vhu_rules *rules, const struct vhu_hdr *hdr, const void *body)
{
	bool reply = is_reply(rules, hdr);

	if (rules->channel == VHU_CHAN_FRONTEND) {
		if (reply) {
			return check_frontend_reply(hdr->request, body, hdr->size);
		}
		return check_frontend_request(hdr->request, body, hdr->size);
	}
	/* Back-end channel replies are u64 acks whose size the header check fixed. */
	return reply ? 0 : check_backend_request(hdr->request, body);
}

/* ------------------------------------------------------------------ */
/* fd rule                                                             */

static void
fd_bounds(const struct vhu_req_info *row, bool reply, const struct vhu_hdr *hdr,
	  const void *body, unsigned int *min, unsigned int *max)
{
	uint8_t rule = reply ? row->reply_fds : row->fds;

	switch (rule) {
	case VHU_FDS_ONE:
		*min = 1;
		*max = 1;
		break;
	case VHU_FDS_OPT_ONE:
		*min = 0;
		*max = 1;
		break;
	case VHU_FDS_NREGIONS:
		if (body != NULL && hdr->size >= VHU_MEM_TABLE_SIZE(0)) {
			*min = rd32(body, OFF(vhu_mem_table, nregions));
		} else if (hdr->size >= VHU_MEM_TABLE_SIZE(0)) {
			/* Before the body is in, the size field implies the count. */
			*min = (hdr->size - VHU_MEM_TABLE_SIZE(0)) / 32u;
		} else {
			*min = 0;
		}
		/* The count is the peer's: never promise more fds than a message can carry. */
		if (*min > VHU_MAX_FDS) {
			*min = VHU_MAX_FDS;
		}
		*max = *min;
		break;
	case VHU_FDS_NOFD_BIT:
		if (body != NULL && hdr->size >= sizeof(uint64_t)) {
			*min = (rd64(body, 0) & VHU_VRING_NOFD) != 0 ? 0 : 1;
			*max = *min;
		} else {
			*min = 0;
			*max = 1;
		}
		break;
	case VHU_FDS_NONE:
	default:
		*min = 0;
		*max = 0;
		break;
	}
}

int
vhu_msg_fd_bounds(const struct vhu_rules *rules, const struct vhu_hdr *hdr,
		  const void *body, unsigned int *min, unsigned int *max)
{
	const struct vhu_req_info *row;
	int err = check_args(rules, hdr);

	if (err != 0) {
		return err;
	}
	if (min == NULL || max == NULL) {
		return -EINVAL;
	}
	row = vhu_req_info((enum vhu_channel)rules->channel, hdr->request);
	if (row == NULL) {
		return -VHU_EREQUEST;
	}
	fd_bounds(row, is_reply(rules, hdr), hdr, body, min, max);
	return 0;
}

int
vhu_msg_check(const struct vhu_rules *rules, const struct vhu_hdr *hdr,
	      const void *body, unsigned int nfds)
{
	const struct vhu_req_info *row;
	unsigned int min, max;
	int err = check_args(rules, hdr);

	if (err != 0) {
		return err;
	}
	row = hdr_row(rules, hdr, &err);
	if (row == NULL) {
		return err;
	}
	if (hdr->size != 0 && body == NULL) {
		return -EINVAL;
	}
	err = check_body(rules, hdr, body);
	if (err != 0) {
		return err;
	}
	fd_bounds(row, is_reply(rules, hdr), hdr, body, &min, &max);
	if (nfds < min || nfds > max) {
		return -VHU_EFDS;
	}
	return 0;
}
