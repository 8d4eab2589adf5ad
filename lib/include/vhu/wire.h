/* SPDX-License-Identifier: MIT */
/**
 * \file
 * The vhost-user wire format: header, flags, request codes of both
 * channels, feature bits, body layouts, and the per-request rule tables
 * with the validation that runs before any handler sees a message.
 *
 * All multi-byte fields are in host byte order (vhost-user has no fixed
 * wire endianness; every platform vhu targets is little-endian).
 */
#ifndef VHU_WIRE_H
#define VHU_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

/* ------------------------------------------------------------------ */
/* Header                                                              */

/** The 12-byte message header. */
struct vhu_hdr {
	uint32_t request;	/**< request code, per channel */
	uint32_t flags;		/**< VHU_FLAG_* */
	uint32_t size;		/**< bytes that follow the header */
};

#define VHU_HDR_SIZE		12u
#define VHU_VERSION		0x1u		/**< the only version there is */
#define VHU_FLAG_VERSION_MASK	0x3u
#define VHU_FLAG_REPLY		0x4u
#define VHU_FLAG_NEED_REPLY	0x8u
#define VHU_FLAG_RESERVED_MASK	0xfffffff0u

/** Most fds one message may carry (crosvm and rust-vmm use 32). */
#define VHU_MAX_FDS		32u
/** Default maximum for the header's size field (rust-vmm's MAX_MSG_SIZE). */
#define VHU_DEFAULT_MAX_SIZE	4096u
/** Most regions in one SET_MEM_TABLE (one fd each). */
#define VHU_MAX_MEM_REGIONS	VHU_MAX_FDS
/** Config space window: offset + size must stay within it. */
#define VHU_CONFIG_SPACE_SIZE	0x1000u
/** Largest config payload QEMU, libvhost-user and DPDK accept. */
#define VHU_CONFIG_MAX_PAYLOAD	256u

/** Which socket a message travels on. */
enum vhu_channel {
	/** The main socket: the front-end sends requests, the back-end replies. */
	VHU_CHAN_FRONTEND = 0,
	/** The back-end channel (SET_BACKEND_REQ_FD): roles reversed. */
	VHU_CHAN_BACKEND = 1,
};

/* ------------------------------------------------------------------ */
/* Request codes                                                       */

/** Front-end → back-end requests (main socket). */
enum vhu_req {
	VHU_REQ_NONE = 0,
	VHU_REQ_GET_FEATURES = 1,
	VHU_REQ_SET_FEATURES = 2,
	VHU_REQ_SET_OWNER = 3,
	VHU_REQ_RESET_OWNER = 4,
	VHU_REQ_SET_MEM_TABLE = 5,
	VHU_REQ_SET_LOG_BASE = 6,
	VHU_REQ_SET_LOG_FD = 7,
	VHU_REQ_SET_VRING_NUM = 8,
	VHU_REQ_SET_VRING_ADDR = 9,
	VHU_REQ_SET_VRING_BASE = 10,
	VHU_REQ_GET_VRING_BASE = 11,
	VHU_REQ_SET_VRING_KICK = 12,
	VHU_REQ_SET_VRING_CALL = 13,
	VHU_REQ_SET_VRING_ERR = 14,
	VHU_REQ_GET_PROTOCOL_FEATURES = 15,
	VHU_REQ_SET_PROTOCOL_FEATURES = 16,
	VHU_REQ_GET_QUEUE_NUM = 17,
	VHU_REQ_SET_VRING_ENABLE = 18,
	VHU_REQ_SEND_RARP = 19,
	VHU_REQ_NET_SET_MTU = 20,
	VHU_REQ_SET_BACKEND_REQ_FD = 21,
	VHU_REQ_IOTLB_MSG = 22,
	VHU_REQ_SET_VRING_ENDIAN = 23,
	VHU_REQ_GET_CONFIG = 24,
	VHU_REQ_SET_CONFIG = 25,
	VHU_REQ_CREATE_CRYPTO_SESSION = 26,
	VHU_REQ_CLOSE_CRYPTO_SESSION = 27,
	VHU_REQ_POSTCOPY_ADVISE = 28,
	VHU_REQ_POSTCOPY_LISTEN = 29,
	VHU_REQ_POSTCOPY_END = 30,
	VHU_REQ_GET_INFLIGHT_FD = 31,
	VHU_REQ_SET_INFLIGHT_FD = 32,
	VHU_REQ_GPU_SET_SOCKET = 33,
	VHU_REQ_RESET_DEVICE = 34,
	VHU_REQ_VRING_KICK = 35,
	VHU_REQ_GET_MAX_MEM_SLOTS = 36,
	VHU_REQ_ADD_MEM_REG = 37,
	VHU_REQ_REM_MEM_REG = 38,
	VHU_REQ_SET_STATUS = 39,
	VHU_REQ_GET_STATUS = 40,
	VHU_REQ_GET_SHARED_OBJECT = 41,
	VHU_REQ_SET_DEVICE_STATE_FD = 42,
	VHU_REQ_CHECK_DEVICE_STATE = 43,
	VHU_REQ_GET_SHMEM_CONFIG = 44,
	VHU_REQ_MAX = 44,
};

/** Back-end → front-end requests (back-end channel). */
enum vhu_backend_req {
	VHU_BREQ_NONE = 0,
	VHU_BREQ_IOTLB_MSG = 1,
	VHU_BREQ_CONFIG_CHANGE_MSG = 2,
	VHU_BREQ_VRING_HOST_NOTIFIER_MSG = 3,
	VHU_BREQ_VRING_CALL = 4,
	VHU_BREQ_VRING_ERR = 5,
	VHU_BREQ_SHARED_OBJECT_ADD = 6,
	VHU_BREQ_SHARED_OBJECT_REMOVE = 7,
	VHU_BREQ_SHARED_OBJECT_LOOKUP = 8,
	VHU_BREQ_SHMEM_MAP = 9,
	VHU_BREQ_SHMEM_UNMAP = 10,
	VHU_BREQ_MAX = 10,
};

/* ------------------------------------------------------------------ */
/* Feature bits                                                        */

/** Protocol feature bit numbers (GET/SET_PROTOCOL_FEATURES). */
enum vhu_protocol_feature {
	VHU_PROTOCOL_F_MQ = 0,
	VHU_PROTOCOL_F_LOG_SHMFD = 1,
	VHU_PROTOCOL_F_RARP = 2,
	VHU_PROTOCOL_F_REPLY_ACK = 3,
	VHU_PROTOCOL_F_NET_MTU = 4,
	VHU_PROTOCOL_F_BACKEND_REQ = 5,
	VHU_PROTOCOL_F_CROSS_ENDIAN = 6,
	VHU_PROTOCOL_F_CRYPTO_SESSION = 7,
	VHU_PROTOCOL_F_PAGEFAULT = 8,
	VHU_PROTOCOL_F_CONFIG = 9,
	VHU_PROTOCOL_F_BACKEND_SEND_FD = 10,
	VHU_PROTOCOL_F_HOST_NOTIFIER = 11,
	VHU_PROTOCOL_F_INFLIGHT_SHMFD = 12,
	VHU_PROTOCOL_F_RESET_DEVICE = 13,
	VHU_PROTOCOL_F_INBAND_NOTIFICATIONS = 14,
	VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15,
	VHU_PROTOCOL_F_STATUS = 16,
	VHU_PROTOCOL_F_XEN_MMAP = 17,
	VHU_PROTOCOL_F_SHARED_OBJECT = 18,
	VHU_PROTOCOL_F_DEVICE_STATE = 19,
	VHU_PROTOCOL_F_MAX = 20,	/**< bits below this have names */
};

/** Virtio / vhost feature bits seen in GET_FEATURES / SET_FEATURES. */
#define VHU_F_NOTIFY_ON_EMPTY		24
#define VHU_F_LOG_ALL			26
#define VHU_F_ANY_LAYOUT		27
#define VHU_F_RING_INDIRECT_DESC	28
#define VHU_F_RING_EVENT_IDX		29
#define VHU_F_PROTOCOL_FEATURES		30	/**< VHOST_USER_F_PROTOCOL_FEATURES */
#define VHU_F_VERSION_1			32
#define VHU_F_ACCESS_PLATFORM		33
#define VHU_F_RING_PACKED		34
#define VHU_F_IN_ORDER			35
#define VHU_F_ORDER_PLATFORM		36
#define VHU_F_SR_IOV			37
#define VHU_F_NOTIFICATION_DATA		38
#define VHU_F_NOTIF_CONFIG_DATA		39
#define VHU_F_RING_RESET		40

/** SET_VRING_KICK/CALL/ERR and vring-area u64: queue index and no-fd flag. */
#define VHU_VRING_IDX_MASK	0xffull
#define VHU_VRING_NOFD		0x100ull
/** VHOST_VRING_F_LOG in vring addr flags. */
#define VHU_VRING_F_LOG		0x1u

/* ------------------------------------------------------------------ */
/* Body layouts (natural alignment, sizes for LP64)                    */

struct vhu_u64 {
	uint64_t value;
};

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};

struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;		/**< VHU_VRING_F_LOG */
	uint64_t desc;
	uint64_t used;		/**< note the order: desc, used, avail */
	uint64_t avail;
	uint64_t log;
};

struct vhu_mem_region {
	uint64_t guest_phys_addr;
	uint64_t size;
	uint64_t user_addr;
	uint64_t mmap_offset;
};

/** SET_MEM_TABLE body: header plus nregions regions (size = 8 + 32 * n). */
struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region regions[VHU_MAX_MEM_REGIONS];
};
#define VHU_MEM_TABLE_SIZE(n)	(8u + 32u * (uint32_t)(n))

/** ADD_MEM_REG / REM_MEM_REG body. */
struct vhu_single_region {
	uint64_t padding;
	struct vhu_mem_region region;
};

struct vhu_log {
	uint64_t mmap_size;
	uint64_t mmap_offset;
};

/** GET_CONFIG / SET_CONFIG body: 12-byte header, then size payload bytes. */
struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[];
};
#define VHU_CONFIG_HDR_SIZE	12u

struct vhu_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint32_t padding;
};

/** IOTLB message (kernel struct vhost_iotlb_msg). */
struct vhu_iotlb {
	uint64_t iova;
	uint64_t size;
	uint64_t uaddr;
	uint8_t perm;		/**< 0 none, 1 RO, 2 WO, 3 RW */
	uint8_t type;		/**< 1 miss, 2 update, 3 invalidate, 4 access fail */
	uint8_t padding[6];
};

/** BACKEND_VRING_HOST_NOTIFIER_MSG body. */
struct vhu_vring_area {
	uint64_t u64;		/**< bits 0-7 queue index, bit 8 VHU_VRING_NOFD */
	uint64_t size;
	uint64_t offset;
};

/** GET_SHARED_OBJECT / BACKEND_SHARED_OBJECT_* body. */
struct vhu_shared_object {
	uint8_t uuid[16];
};

/** SET_DEVICE_STATE_FD body. */
struct vhu_device_state {
	uint32_t direction;	/**< 0 save, 1 load */
	uint32_t phase;		/**< 0 stopped */
};

/** BACKEND_SHMEM_MAP / UNMAP body. */
struct vhu_shmem_map {
	uint8_t shmid;
	uint8_t padding[7];
	uint64_t fd_offset;
	uint64_t shm_offset;
	uint64_t len;
	uint64_t flags;		/**< bit 0: writable */
};

/** GET_SHMEM_CONFIG reply. */
struct vhu_shmem_config {
	uint32_t nregions;
	uint32_t padding;
	uint64_t memory_sizes[256];
};

/* ------------------------------------------------------------------ */
/* Rule tables                                                         */

/** How the size field of a message must relate to its body. */
enum vhu_body_rule {
	VHU_BODY_NONE = 0,	/**< size == 0 */
	VHU_BODY_FIXED,		/**< size == body_size */
	VHU_BODY_MEM_TABLE,	/**< size == 8 + 32 * nregions, 1 <= nregions <= 32 */
	VHU_BODY_CONFIG,	/**< size == 12 + config.size */
	VHU_BODY_VAR,		/**< any size up to the maximum (at least body_size) */
};

/** How many fds a message must carry. */
enum vhu_fd_rule {
	VHU_FDS_NONE = 0,	/**< exactly 0 */
	VHU_FDS_ONE,		/**< exactly 1 */
	VHU_FDS_OPT_ONE,	/**< 0 or 1 */
	VHU_FDS_NREGIONS,	/**< one per memory-table region */
	VHU_FDS_NOFD_BIT,	/**< 0 if u64 at body offset 0 has VHU_VRING_NOFD, else 1 */
};

/** When a request is answered. */
enum vhu_reply_rule {
	/** u64 ack, only if REPLY_ACK was negotiated and NEED_REPLY is set. */
	VHU_REPLY_ACK = 0,
	/** always answered, with the reply body described in the table. */
	VHU_REPLY_ALWAYS,
};

/** What kind of file an fd of a message must be (vhu_msg_check_fd_kinds()). */
enum vhu_fd_kind {
	VHU_FDK_ANY = 0,	/**< not checked (userfaultfd, dma-buf, ...) */
	VHU_FDK_EVENTFD,	/**< an eventfd: kick, call, err, log notifications */
	VHU_FDK_FILE,		/**< a regular file (memfd, tmpfs, hugetlbfs): memory to map */
	VHU_FDK_MAP,		/**< a regular file or a character device: memory to map */
	VHU_FDK_SOCKET,		/**< a connected AF_UNIX stream socket, not this connection */
	VHU_FDK_PIPE,		/**< a pipe or FIFO: device state transfer */
};

/** One row of a channel's request table. */
struct vhu_req_info {
	const char *name;	/**< "GET_FEATURES"; NULL for unknown codes */
	uint8_t body;		/**< enum vhu_body_rule for the request */
	uint8_t fds;		/**< enum vhu_fd_rule for the request */
	uint16_t body_size;	/**< for FIXED/VAR: bytes (VAR: minimum) */
	uint8_t reply;		/**< enum vhu_reply_rule */
	uint8_t reply_body;	/**< enum vhu_body_rule for the reply */
	uint8_t reply_fds;	/**< enum vhu_fd_rule for the reply */
	uint16_t reply_size;	/**< for reply FIXED/VAR */
	uint8_t fd_kind;	/**< enum vhu_fd_kind of the request's fds */
	uint8_t reply_fd_kind;	/**< enum vhu_fd_kind of the reply's fds */
};

/**
 * Look up a request code.
 * \return the table row, or NULL if the code is unknown on that channel
 *         (including 0, which is never valid).
 */
const struct vhu_req_info *vhu_req_info(enum vhu_channel chan, uint32_t request);

/** \return the request's name ("SET_MEM_TABLE"), or "UNKNOWN" for unknown codes. */
const char *vhu_req_name(enum vhu_channel chan, uint32_t request);

/** \return the protocol feature's name ("REPLY_ACK"), or NULL for unnamed bits. */
const char *vhu_protocol_feature_name(unsigned int bit);

/** \return the virtio/vhost feature's name ("VERSION_1"), or NULL for unnamed bits. */
const char *vhu_feature_name(unsigned int bit);

/* ------------------------------------------------------------------ */
/* Body layouts by request                                             */

/** Which struct of this header a message body is laid out as. */
enum vhu_layout {
	VHU_LAYOUT_NONE = 0,		/**< no body, or one with no layout here */
	VHU_LAYOUT_U64,			/**< struct vhu_u64: a number, or an ack */
	VHU_LAYOUT_FEATURES,		/**< u64 mask of virtio/vhost feature bits */
	VHU_LAYOUT_PROTOCOL_FEATURES,	/**< u64 mask of VHU_PROTOCOL_F_* bits */
	VHU_LAYOUT_VRING_STATE,		/**< struct vhu_vring_state */
	VHU_LAYOUT_VRING_ADDR,		/**< struct vhu_vring_addr */
	VHU_LAYOUT_VRING_FILE,		/**< u64: queue index and VHU_VRING_NOFD */
	VHU_LAYOUT_MEM_TABLE,		/**< struct vhu_mem_table (8 bytes + regions) */
	VHU_LAYOUT_SINGLE_REGION,	/**< struct vhu_single_region */
	VHU_LAYOUT_LOG,			/**< struct vhu_log */
	VHU_LAYOUT_CONFIG,		/**< struct vhu_config (12 bytes + payload) */
	VHU_LAYOUT_INFLIGHT,		/**< struct vhu_inflight */
	VHU_LAYOUT_IOTLB,		/**< struct vhu_iotlb */
	VHU_LAYOUT_VRING_AREA,		/**< struct vhu_vring_area */
	VHU_LAYOUT_SHARED_OBJECT,	/**< struct vhu_shared_object */
	VHU_LAYOUT_DEVICE_STATE,	/**< struct vhu_device_state */
	VHU_LAYOUT_SHMEM_MAP,		/**< struct vhu_shmem_map */
	VHU_LAYOUT_SHMEM_CONFIG,	/**< struct vhu_shmem_config (8 bytes + sizes) */
	VHU_LAYOUT_COUNT,		/**< number of layouts */
};

/**
 * The layout of a message body, for tools that describe messages: by
 * channel, request code and direction (reply: the REPLY flag is set). size
 * is the header's size field; it decides between the two shapes a reply
 * may take (SET_MEM_TABLE and ADD_MEM_REG answer with an 8-byte ack, or
 * under postcopy with the table or region). The layout says what the body
 * would be; it does not say that the body is valid or long enough.
 * \return an enum vhu_layout; VHU_LAYOUT_NONE for unknown codes and for
 *         bodies this header has no struct for.
 */
enum vhu_layout vhu_body_layout(enum vhu_channel chan, uint32_t request, bool reply,
				uint32_t size);

/**
 * \return the bytes of a layout's fixed part: the whole struct, or for
 *         MEM_TABLE, CONFIG and SHMEM_CONFIG the part before the entries or
 *         payload; 0 for VHU_LAYOUT_NONE and unknown values.
 */
size_t vhu_layout_size(enum vhu_layout layout);

/* ------------------------------------------------------------------ */
/* Validation                                                          */

/** What a receiver expects on a socket. */
enum vhu_expect {
	VHU_EXPECT_REQUEST = 0,	/**< REPLY flag must be clear */
	VHU_EXPECT_REPLY,	/**< REPLY flag must be set, NEED_REPLY clear */
	VHU_EXPECT_EITHER,	/**< the REPLY flag decides (tracers, tests) */
};

/** The receive rules of one socket. */
struct vhu_rules {
	uint8_t channel;	/**< enum vhu_channel */
	uint8_t expect;		/**< enum vhu_expect */
	uint32_t max_size;	/**< size field limit; 0 means VHU_DEFAULT_MAX_SIZE */
};

/**
 * Validate a header as soon as its 12 bytes are in: version == 1, no
 * reserved flag bits, REPLY/NEED_REPLY as rules->expect demands, a known
 * request code, size <= max_size, and size consistent with the body rule
 * where the header alone can tell (NONE, FIXED, MEM_TABLE minimum/shape).
 *
 * \return 0, or -VHU_EVERSION, -VHU_EFLAGS, -VHU_EREQUEST,
 *         -VHU_EOVERSIZED, -VHU_EBODYSIZE.
 */
int vhu_hdr_check(const struct vhu_rules *rules, const struct vhu_hdr *hdr);

/**
 * Validate a whole message: the header (as vhu_hdr_check), the body
 * (contiguous, hdr->size bytes) against its layout and the field validators
 * (memory regions: count, padding, size != 0, no address overflow, no
 * guest-physical overlap; vring addr flags and alignment; config bounds;
 * log and inflight sizes; iotlb perm/type; NOFD-word reserved bits; ...),
 * and the fd count against the request's fd rule.
 *
 * \return 0, or any vhu_hdr_check error, -VHU_EBODY, -VHU_EFDS.
 */
int vhu_msg_check(const struct vhu_rules *rules, const struct vhu_hdr *hdr,
		  const void *body, unsigned int nfds);

/**
 * The fd rule alone: how many fds the message must carry.
 * \param body  the message body (may be NULL if hdr->size is 0).
 * \param[out] min, max  inclusive bounds on the fd count; never above
 *             VHU_MAX_FDS, whatever count the peer's body claims.
 * \return 0, -VHU_EREQUEST for an unknown code, -EINVAL for NULL arguments.
 */
int vhu_msg_fd_bounds(const struct vhu_rules *rules, const struct vhu_hdr *hdr,
		      const void *body, unsigned int *min, unsigned int *max);

/**
 * Check that each fd of a message (already validated by vhu_msg_check) is
 * the kind of file its request needs (enum vhu_fd_kind): kick, call and
 * err fds are eventfds; memory regions, the log and the inflight area are
 * regular files; the back-end channel is a connected AF_UNIX stream socket
 * that is not an end of the connection the message came on (self, or -1:
 * not checked), since a socket that leads back to its own connection would
 * keep that connection alive for ever; device state goes through a pipe.
 * One fstat per fd (and, for sockets, a sock_diag query); control-plane
 * messages only.
 * \return 0, -VHU_EFDKIND, or -VHU_EREQUEST for an unknown code.
 */
int vhu_msg_check_fd_kinds(const struct vhu_rules *rules, const struct vhu_hdr *hdr,
			   const int *fds, unsigned int nfds, int self);

/** Fill a request header: version 1, NEED_REPLY if asked. */
static inline struct vhu_hdr
vhu_hdr_request(uint32_t request, uint32_t size, bool need_reply)
{
	struct vhu_hdr h = { request, VHU_VERSION | (need_reply ? VHU_FLAG_NEED_REPLY : 0), size };
	return h;
}

/** Fill a reply header for a request code: flags exactly 0x5. */
static inline struct vhu_hdr
vhu_hdr_reply(uint32_t request, uint32_t size)
{
	struct vhu_hdr h = { request, VHU_VERSION | VHU_FLAG_REPLY, size };
	return h;
}

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
