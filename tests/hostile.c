/* SPDX-License-Identifier: MIT */
/*
 * The one table of hostile inputs (uring_helpers.h, th_hostile_build),
 * used by conn|stream/validation_closes_only_offender and by
 * torture/hostile_inputs_*. It is cut into one piece per class of fault;
 * each piece builds its input number i and returns false past its last.
 */
#define _GNU_SOURCE
#include "uring_helpers.h"

#include <string.h>

/* The same reason in both receive modes. */
static void
both(struct th_hostile *c, int reason)
{
	c->reason[VHU_RECV_EXACT] = reason;
	c->reason[VHU_RECV_STREAM] = reason;
}

static struct vhu_mem_region
region(uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t off)
{
	return (struct vhu_mem_region){ gpa, size, uaddr, off };
}

/* A SET_CONFIG/GET_CONFIG with these config fields and size field; \return its length. */
static size_t
put_config(uint8_t *buf, uint32_t req, uint32_t offset, uint32_t csize, uint32_t flags,
	   uint32_t size_field)
{
	uint8_t body[VHU_CONFIG_HDR_SIZE + 256];
	struct vhu_config c = { .offset = offset, .size = csize, .flags = flags };
	uint32_t len = size_field <= sizeof(body) ? size_field : (uint32_t)sizeof(body);

	memset(body, 0x5a, sizeof(body));
	memcpy(body, &c, VHU_CONFIG_HDR_SIZE < len ? VHU_CONFIG_HDR_SIZE : len);
	return th_put_raw(buf, 0, req, VHU_VERSION, size_field, body, len);
}

static size_t
put_mem_table(uint8_t *buf, const struct vhu_mem_table *mt, uint32_t size)
{
	return th_put(buf, 0, VHU_REQ_SET_MEM_TABLE, mt, size);
}

static size_t
put_single_region(uint8_t *buf, uint32_t req, struct vhu_mem_region r)
{
	struct vhu_single_region s = { .padding = 0, .region = r };

	return th_put(buf, 0, req, &s, sizeof(s));
}

/* Size fields above the limit. */
static bool
oversized(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	uint8_t body[VHU_DEFAULT_MAX_SIZE + 1];
	uint8_t pad[64];

	memset(pad, 0xab, sizeof(pad));
	switch (i) {
	case 0:
		c->name = "size field one above the limit";
		memset(body, 0xab, sizeof(body));
		c->len = th_put(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, body, sizeof(body));
		break;
	case 1:
		c->name = "size field 0xffffffff, header alone";
		c->len = th_put_raw(buf, 0, VHU_REQ_CREATE_CRYPTO_SESSION, VHU_VERSION,
				    0xffffffffu, NULL, 0);
		break;
	case 2:
		c->name = "size 65 above a configured max_size of 64 (SET_CONFIG)";
		c->max_size = 64;
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0, 53, 0, 65);
		break;
	case 3:
		c->name = "size 0x80000000 on GET_FEATURES, header alone";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, VHU_VERSION, 0x80000000u, NULL, 0);
		break;
	case 4:
		c->name = "size 0xffffffff on the back-end channel";
		c->chan = VHU_CHAN_BACKEND;
		c->len = th_put_raw(buf, 0, VHU_BREQ_CONFIG_CHANGE_MSG, VHU_VERSION, 0xffffffffu,
				    pad, sizeof(pad));
		break;
	default:
		return false;
	}
	both(c, -VHU_EOVERSIZED);
	return true;
}

/* Size fields that do not fit the request's body. */
static bool
body_size(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	struct vhu_vring_addr va = th_vring_addr(0, 0x1000);
	static struct vhu_mem_table mt;
	uint8_t body[16];
	uint32_t mts;

	memset(body, 0xab, sizeof(body));
	both(c, -VHU_EBODYSIZE);
	switch (i) {
	case 0:
		c->name = "SET_FEATURES with a 4-byte body";
		c->len = th_put(buf, 0, VHU_REQ_SET_FEATURES, body, 4);
		break;
	case 1:
		c->name = "GET_FEATURES with a body";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, body, 8);
		break;
	case 2:
		c->name = "SET_VRING_ADDR with size 39 (the body is 40)";
		c->len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, 39);
		break;
	case 3:
		c->name = "SET_MEM_TABLE with size 8 (no region)";
		memset(&mt, 0, sizeof(mt));
		c->len = put_mem_table(buf, &mt, 8);
		break;
	case 4:
		c->name = "SET_MEM_TABLE sized for 2 regions, nregions 3, with 2 fds";
		mts = th_mem_table(&mt, 3);
		c->len = put_mem_table(buf, &mt, mts - 32);
		c->nfds = 2;
		both(c, -VHU_EBODY);
		break;
	case 5:
		c->name = "SET_CONFIG with size 11 (less than its 12-byte header)";
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0, 0, 0, 11);
		break;
	case 6:
		c->name = "SET_CONFIG with size 16 whose config.size says 256";
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0, 256, 0, 16);
		both(c, -VHU_EBODY);
		break;
	default:
		return false;
	}
	return true;
}

/* Versions and flags. */
static bool
header_flags(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	uint8_t pad[8];

	memset(pad, 0xab, sizeof(pad));
	both(c, -VHU_EFLAGS);
	switch (i) {
	case 0:
		c->name = "version 0";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 0, 0, NULL, 0);
		both(c, -VHU_EVERSION);
		break;
	case 1:
		c->name = "version 2";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 2, 0, NULL, 0);
		both(c, -VHU_EVERSION);
		break;
	case 2:
		c->name = "version 3";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, 3, 0, NULL, 0);
		both(c, -VHU_EVERSION);
		break;
	case 3:
		c->name = "reserved flag bit";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, VHU_VERSION | 0x10, 0, NULL, 0);
		break;
	case 4:
		c->name = "flag bit 31";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, VHU_VERSION | 0x80000000u, 0,
				    NULL, 0);
		break;
	case 5:
		c->name = "every reserved flag bit";
		c->len = th_put_raw(buf, 0, VHU_REQ_SET_FEATURES,
				    VHU_VERSION | VHU_FLAG_RESERVED_MASK, 8, pad, 8);
		break;
	case 6:
		c->name = "REPLY flag on a request";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY, 0,
				    NULL, 0);
		break;
	case 7:
		c->name = "REPLY and NEED_REPLY on a request";
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES,
				    VHU_VERSION | VHU_FLAG_REPLY | VHU_FLAG_NEED_REPLY, 0, NULL, 0);
		break;
	case 8:
		c->name = "a request on a socket that expects replies";
		c->expect = VHU_EXPECT_REPLY;
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		break;
	case 9:
		c->name = "NEED_REPLY on a reply";
		c->expect = VHU_EXPECT_REPLY;
		c->len = th_put_raw(buf, 0, VHU_REQ_GET_FEATURES,
				    VHU_VERSION | VHU_FLAG_REPLY | VHU_FLAG_NEED_REPLY, 8, pad, 8);
		break;
	default:
		return false;
	}
	return true;
}

/* Unknown request codes on both channels. */
static bool
request_code(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	uint8_t pad[8];

	memset(pad, 0xab, sizeof(pad));
	both(c, -VHU_EREQUEST);
	switch (i) {
	case 0:
		c->name = "request code 0";
		c->len = th_put(buf, 0, VHU_REQ_NONE, NULL, 0);
		break;
	case 1:
		c->name = "front-end code one past the last";
		c->len = th_put(buf, 0, VHU_REQ_MAX + 1, NULL, 0);
		break;
	case 2:
		c->name = "request code 0x80000001";
		c->len = th_put(buf, 0, 0x80000001u, NULL, 0);
		break;
	case 3:
		c->name = "front-end code 0xffffffff";
		c->len = th_put(buf, 0, 0xffffffffu, NULL, 0);
		break;
	case 4:
		c->name = "back-end channel code 0";
		c->chan = VHU_CHAN_BACKEND;
		c->len = th_put(buf, 0, VHU_BREQ_NONE, NULL, 0);
		break;
	case 5:
		c->name = "back-end channel code one past the last";
		c->chan = VHU_CHAN_BACKEND;
		c->len = th_put(buf, 0, VHU_BREQ_MAX + 1, NULL, 0);
		break;
	case 6:
		c->name = "back-end channel code 24 (a front-end request)";
		c->chan = VHU_CHAN_BACKEND;
		c->len = put_config(buf, VHU_REQ_GET_CONFIG, 0, 4, 0, 16);
		break;
	case 7:
		c->name = "back-end channel reply with code 0x8000";
		c->chan = VHU_CHAN_BACKEND;
		c->expect = VHU_EXPECT_REPLY;
		c->len = th_put_raw(buf, 0, 0x8000, VHU_VERSION | VHU_FLAG_REPLY, 8, pad, 8);
		break;
	default:
		return false;
	}
	return true;
}

/* More fds than a message may carry: one over, past the control buffer, SCM_MAX_FD. */
static bool
too_many_fds(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	static struct vhu_mem_table mt;

	both(c, -VHU_ECTRUNC);
	switch (i) {
	case 0:
		c->name = "33 fds on GET_FEATURES (one more than a message may carry)";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		c->nfds = VHU_MAX_FDS + 1;
		/* uring.h: stream control space holds a 33rd fd, exact mode's does not. */
		c->reason[VHU_RECV_STREAM] = -VHU_EFDS;
		break;
	case 1:
		c->name = "34 fds on SET_VRING_KICK";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_KICK, 0);
		c->nfds = VHU_MAX_FDS + 2;
		break;
	case 2:
		c->name = "64 fds on a SET_MEM_TABLE of 32 regions";
		c->len = put_mem_table(buf, &mt, th_mem_table(&mt, VHU_MAX_MEM_REGIONS));
		c->nfds = 64;
		break;
	case 3:
		c->name = "253 fds (SCM_MAX_FD) on SET_VRING_CALL";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 1);
		c->nfds = TH_SCM_MAX_FD;
		break;
	default:
		return false;
	}
	return true;
}

/* fds where none belong, fewer or more than the request takes. */
static bool
wrong_fds(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	struct vhu_vring_state vs = { 0, 256 };
	static struct vhu_mem_table mt;

	both(c, -VHU_EFDS);
	switch (i) {
	case 0:
		c->name = "SET_VRING_CALL without NOFD and without fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0);
		break;
	case 1:
		c->name = "SET_VRING_CALL with NOFD and an fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, VHU_VRING_NOFD);
		c->nfds = 1;
		break;
	case 2:
		c->name = "GET_FEATURES with an fd";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0);
		c->nfds = 1;
		break;
	case 3:
		c->name = "SET_FEATURES with an fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_FEATURES, 1);
		c->nfds = 1;
		break;
	case 4:
		c->name = "SET_VRING_NUM with 32 fds";
		c->len = th_put(buf, 0, VHU_REQ_SET_VRING_NUM, &vs, sizeof(vs));
		c->nfds = VHU_MAX_FDS;
		break;
	case 5:
		c->name = "back-end CONFIG_CHANGE_MSG with an fd";
		c->chan = VHU_CHAN_BACKEND;
		c->len = th_put(buf, 0, VHU_BREQ_CONFIG_CHANGE_MSG, NULL, 0);
		c->nfds = 1;
		break;
	case 6:
		c->name = "memory table of 2 regions with 1 fd";
		c->len = put_mem_table(buf, &mt, th_mem_table(&mt, 2));
		c->nfds = 1;
		break;
	case 7:
		c->name = "memory table of 2 regions with 3 fds";
		c->len = put_mem_table(buf, &mt, th_mem_table(&mt, 2));
		c->nfds = 3;
		break;
	case 8:
		c->name = "SET_MEM_TABLE of 32 regions with 31 fds";
		c->len = put_mem_table(buf, &mt, th_mem_table(&mt, VHU_MAX_MEM_REGIONS));
		c->nfds = VHU_MAX_MEM_REGIONS - 1;
		break;
	case 9:
		c->name = "SET_MEM_TABLE of 3 regions with no fd";
		c->len = put_mem_table(buf, &mt, th_mem_table(&mt, 3));
		break;
	case 10:
		c->name = "ADD_MEM_REG without its fd";
		c->len = put_single_region(buf, VHU_REQ_ADD_MEM_REG, region(0, 4096, 0x10000, 0));
		break;
	default:
		return false;
	}
	return true;
}

/* Bodies whose fields are wrong (with the fds they call for). */
static bool
bad_body(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	struct vhu_vring_addr va = th_vring_addr(0, 0x10008);	/* desc not 16-aligned */
	static struct vhu_mem_table mt;
	uint32_t mts;

	both(c, -VHU_EBODY);
	switch (i) {
	case 0:
		c->name = "misaligned vring descriptor table";
		c->len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va));
		break;
	case 1:
		c->name = "memory table padding set, with its fd";
		mts = th_mem_table(&mt, 1);
		mt.padding = 1;
		c->len = put_mem_table(buf, &mt, mts);
		c->nfds = 1;
		break;
	case 2:
		c->name = "SET_VRING_CALL with reserved bits, with its fd";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0x200);
		c->nfds = 1;
		break;
	default:
		return false;
	}
	return true;
}

/* Memory regions that overflow or overlap (each with its fds). */
static bool
bad_regions(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	static struct vhu_mem_table mt;
	uint32_t mts;

	both(c, -VHU_EBODY);
	switch (i) {
	case 0:
		c->name = "region guest address + size wraps";
		mts = th_mem_table(&mt, 1);
		mt.regions[0].guest_phys_addr = UINT64_MAX - 4095;
		mt.regions[0].size = 8192;
		c->nfds = 1;
		break;
	case 1:
		c->name = "region user address + size wraps";
		mts = th_mem_table(&mt, 2);
		mt.regions[1].user_addr = UINT64_MAX;
		c->nfds = 2;
		break;
	case 2:
		c->name = "region mmap offset + size wraps";
		mts = th_mem_table(&mt, 1);
		mt.regions[0].mmap_offset = UINT64_MAX - 100;
		c->nfds = 1;
		break;
	case 3:
		c->name = "region of size 0";
		mts = th_mem_table(&mt, 3);
		mt.regions[2].size = 0;
		c->nfds = 3;
		break;
	case 4:
		c->name = "two regions overlapping by one page";
		mts = th_mem_table(&mt, 2);
		mt.regions[1].guest_phys_addr = mt.regions[0].size - 4096;
		c->nfds = 2;
		break;
	case 5:
		c->name = "the same region twice";
		mts = th_mem_table(&mt, 2);
		mt.regions[1] = mt.regions[0];
		c->nfds = 2;
		break;
	case 6:
		c->name = "a region inside the last of 32";
		mts = th_mem_table(&mt, VHU_MAX_MEM_REGIONS);
		mt.regions[0].guest_phys_addr = mt.regions[31].guest_phys_addr + 4096;
		mt.regions[0].size = 4096;
		c->nfds = VHU_MAX_MEM_REGIONS;
		break;
	case 7:
		c->name = "ADD_MEM_REG whose region wraps";
		c->len = put_single_region(buf, VHU_REQ_ADD_MEM_REG,
					   region(1ull << 63, 1ull << 63, 0x10000, 0));
		c->nfds = 1;
		return true;
	default:
		return false;
	}
	c->len = put_mem_table(buf, &mt, mts);
	return true;
}

/* Config space out of bounds. */
static bool
bad_config(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	both(c, -VHU_EBODY);
	switch (i) {
	case 0:
		c->name = "SET_CONFIG at offset 0x1000 (the end of config space)";
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0x1000, 4, 0, 16);
		break;
	case 1:
		c->name = "SET_CONFIG offset 0xfffffffc + size 8 wraps 32 bits";
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0xfffffffcu, 8, 0, 20);
		break;
	case 2:
		c->name = "SET_CONFIG offset 0xffc + size 8 crosses the end";
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0xffc, 8, 0, 20);
		break;
	case 3:
		c->name = "GET_CONFIG of size 0";
		c->len = put_config(buf, VHU_REQ_GET_CONFIG, 0, 0, 0, 12);
		break;
	case 4:
		c->name = "SET_CONFIG with unknown flag 0x4";
		c->len = put_config(buf, VHU_REQ_SET_CONFIG, 0, 4, 4, 16);
		break;
	default:
		return false;
	}
	return true;
}

/* The peer closes: inside a message, before any byte, or after a whole one. */
static bool
cut_short(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	struct vhu_vring_addr va = th_vring_addr(0, 0x10000);
	static struct vhu_mem_table mt;

	c->shut = true;
	both(c, -VHU_EPARTIAL);
	switch (i) {
	case 0:
		c->name = "body cut short, then close";
		c->len = th_put(buf, 0, VHU_REQ_SET_VRING_ADDR, &va, sizeof(va)) - 30;
		break;
	case 1:
		c->name = "header cut short, then close";
		c->len = th_put(buf, 0, VHU_REQ_GET_FEATURES, NULL, 0) - 7;
		break;
	case 2:
		c->name = "fd message cut short, then close";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0) - 5;
		c->nfds = 1;
		break;
	case 3:
		c->name = "SET_MEM_TABLE with its 2 fds cut inside the body, then close";
		c->len = put_mem_table(buf, &mt, th_mem_table(&mt, 2)) - 33;
		c->nfds = 2;
		break;
	case 4:
		c->name = "11 header bytes with an fd, then close";
		c->len = th_put_u64(buf, 0, VHU_REQ_SET_VRING_CALL, 0) - 9;
		c->nfds = 1;
		break;
	case 5:
		c->name = "close before any byte";
		both(c, -VHU_EDISCONNECT);
		break;
	case 6:
		c->name = "close after a whole message";
		c->len = th_put_seq(buf, 0, 0);
		c->msgs = 1;
		both(c, -VHU_EDISCONNECT);
		break;
	default:
		return false;
	}
	return true;
}

/* A valid message, then a bad one in the same write. */
static bool
after_valid(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	c->msgs = 1;
	c->len = th_put_seq(buf, 0, 0);
	switch (i) {
	case 0:
		c->name = "a valid message, then version 2 in the same write";
		c->len = th_put_raw(buf, c->len, VHU_REQ_GET_FEATURES, 2, 0, NULL, 0);
		both(c, -VHU_EVERSION);
		break;
	case 1:
		c->name = "a valid message, then an oversized header in the same write";
		c->len = th_put_raw(buf, c->len, VHU_REQ_SET_CONFIG, VHU_VERSION, 1u << 20, NULL, 0);
		both(c, -VHU_EOVERSIZED);
		break;
	default:
		return false;
	}
	return true;
}

typedef bool (*piece_fn)(unsigned int i, uint8_t *buf, struct th_hostile *c);

static const piece_fn pieces[] = {
	oversized, body_size, header_flags, request_code, too_many_fds, wrong_fds, bad_body,
	bad_regions, bad_config, cut_short, after_valid,
};

static bool
build_piece(piece_fn piece, unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	memset(c, 0, sizeof(*c));
	c->chan = VHU_CHAN_FRONTEND;
	c->expect = VHU_EXPECT_REQUEST;
	return piece(i, buf, c);
}

bool
th_hostile_build(unsigned int i, uint8_t *buf, struct th_hostile *c)
{
	for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
		unsigned int n = 0;

		while (build_piece(pieces[p], n, buf, c)) {
			n++;
		}
		if (i < n) {
			return build_piece(pieces[p], i, buf, c);
		}
		i -= n;
	}
	return false;
}

void
th_hostile_opts(const struct th_hostile *c, struct vhu_conn_opts *o)
{
	o->rules.channel = c->chan;
	o->rules.expect = c->expect;
	o->rules.max_size = c->max_size;
}
