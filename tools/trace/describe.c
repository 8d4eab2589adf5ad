/* SPDX-License-Identifier: MIT */
/*
 * A message body, described field by field. Which struct a body is comes
 * from lib/ (vhu_body_layout(), next to the rule tables), so no request
 * code is listed here; this file knows only how each struct is shown: its
 * fields as they are named in the trace, and the few that need more than
 * a number (feature names, nested regions, the vring-file word, a uuid).
 *
 * The peers are not trusted: a body is described only if it holds the
 * layout's fixed part, every field is read through memcpy within it, and
 * no value from the wire indexes anything.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "trace.h"

/* One numeric field of a struct, and how it is shown. */
struct field {
	const char *key;
	uint8_t off;
	uint8_t width;
	bool hex;
};

#define FIELD(key, type, member, hex) \
	{ key, offsetof(struct type, member), sizeof(((struct type *)0)->member), hex }
#define END_FIELDS { NULL, 0, 0, false }

static const struct field region_fields[] = {
	FIELD("gpa", vhu_mem_region, guest_phys_addr, true),
	FIELD("size", vhu_mem_region, size, true),
	FIELD("uaddr", vhu_mem_region, user_addr, true),
	FIELD("offset", vhu_mem_region, mmap_offset, true),
	END_FIELDS,
};

static const struct field vring_state_fields[] = {
	FIELD("index", vhu_vring_state, index, false),
	FIELD("num", vhu_vring_state, num, false),
	END_FIELDS,
};

static const struct field vring_addr_fields[] = {
	FIELD("index", vhu_vring_addr, index, false),
	FIELD("addr_flags", vhu_vring_addr, flags, true),
	FIELD("desc", vhu_vring_addr, desc, true),
	FIELD("used", vhu_vring_addr, used, true),
	FIELD("avail", vhu_vring_addr, avail, true),
	FIELD("log", vhu_vring_addr, log, true),
	END_FIELDS,
};

static const struct field config_fields[] = {
	FIELD("config_offset", vhu_config, offset, false),
	FIELD("config_size", vhu_config, size, false),
	FIELD("config_flags", vhu_config, flags, true),
	END_FIELDS,
};

static const struct field log_fields[] = {
	FIELD("mmap_size", vhu_log, mmap_size, true),
	FIELD("mmap_offset", vhu_log, mmap_offset, true),
	END_FIELDS,
};

static const struct field inflight_fields[] = {
	FIELD("mmap_size", vhu_inflight, mmap_size, true),
	FIELD("mmap_offset", vhu_inflight, mmap_offset, true),
	FIELD("num_queues", vhu_inflight, num_queues, false),
	FIELD("queue_size", vhu_inflight, queue_size, false),
	END_FIELDS,
};

static const struct field iotlb_fields[] = {
	FIELD("iova", vhu_iotlb, iova, true),
	FIELD("iotlb_size", vhu_iotlb, size, true),
	FIELD("uaddr", vhu_iotlb, uaddr, true),
	FIELD("perm", vhu_iotlb, perm, false),
	FIELD("type", vhu_iotlb, type, false),
	END_FIELDS,
};

/* After the vring-file word at offset 0. */
static const struct field vring_area_fields[] = {
	FIELD("area_size", vhu_vring_area, size, true),
	FIELD("area_offset", vhu_vring_area, offset, true),
	END_FIELDS,
};

static const struct field device_state_fields[] = {
	FIELD("direction", vhu_device_state, direction, false),
	FIELD("phase", vhu_device_state, phase, false),
	END_FIELDS,
};

static const struct field shmem_map_fields[] = {
	FIELD("shmid", vhu_shmem_map, shmid, false),
	FIELD("fd_offset", vhu_shmem_map, fd_offset, true),
	FIELD("shm_offset", vhu_shmem_map, shm_offset, true),
	FIELD("len", vhu_shmem_map, len, true),
	FIELD("map_flags", vhu_shmem_map, flags, true),
	END_FIELDS,
};

static const struct field shmem_config_fields[] = {
	FIELD("nregions", vhu_shmem_config, nregions, false),
	END_FIELDS,
};

/* Layouts shown as a plain list of fields. */
static const struct field *const layout_fields[VHU_LAYOUT_COUNT] = {
	[VHU_LAYOUT_VRING_STATE] = vring_state_fields,
	[VHU_LAYOUT_VRING_ADDR] = vring_addr_fields,
	[VHU_LAYOUT_CONFIG] = config_fields,
	[VHU_LAYOUT_LOG] = log_fields,
	[VHU_LAYOUT_INFLIGHT] = inflight_fields,
	[VHU_LAYOUT_IOTLB] = iotlb_fields,
	[VHU_LAYOUT_DEVICE_STATE] = device_state_fields,
	[VHU_LAYOUT_SHMEM_MAP] = shmem_map_fields,
	[VHU_LAYOUT_SHMEM_CONFIG] = shmem_config_fields,
};

/* A little-endian field of width bytes (every host vhu targets is little-endian). */
static uint64_t
rd(const uint8_t *b, size_t off, size_t width)
{
	uint64_t v = 0;

	memcpy(&v, b + off, width);
	return v;
}

static void
d_fields(struct emit *e, const struct field *f, const uint8_t *b)
{
	for (; f->key != NULL; f++) {
		uint64_t v = rd(b, f->off, f->width);

		if (f->hex) {
			e_hex(e, f->key, v);
		} else {
			e_dec(e, f->key, v);
		}
	}
}

/* A feature mask with the name of each bit set (unnamed bits as "bit N"). */
static void
d_bits(struct emit *e, uint64_t mask, bool protocol)
{
	char buf[16];
	unsigned int bit;
	bool first = true;

	e_hex(e, protocol ? "protocol_features" : "features", mask);
	if (e->json) {
		e_open(e, protocol ? "protocol_feature_names" : "feature_names", '[');
	} else {
		putc('(', e->f);
	}
	for (bit = 0; bit < 64; bit++) {
		const char *name;

		if ((mask & (1ull << bit)) == 0) {
			continue;
		}
		name = protocol ? vhu_protocol_feature_name(bit) : vhu_feature_name(bit);
		if (name == NULL) {
			/* Text fields are space-separated: no space inside a name there. */
			snprintf(buf, sizeof(buf), e->json ? "bit %u" : "bit%u", bit);
			name = buf;
		}
		if (e->json) {
			e_str(e, NULL, name);
		} else {
			fprintf(e->f, "%s%s", first ? "" : ",", name);
		}
		first = false;
	}
	if (e->json) {
		e_close(e, ']');
	} else {
		putc(')', e->f);
	}
}

static void
d_region(struct emit *e, const char *key, const uint8_t *b)
{
	e_open(e, key, '{');
	d_fields(e, region_fields, b);
	e_close(e, '}');
}

static void
d_mem_table(struct emit *e, const uint8_t *b, uint32_t size)
{
	uint32_t n = (uint32_t)rd(b, offsetof(struct vhu_mem_table, nregions), 4);
	uint32_t i;

	e_dec(e, "nregions", n);
	e_open(e, "regions", '[');
	/* The count is the peer's word: show only the regions the body really holds. */
	for (i = 0; i < n && VHU_MEM_TABLE_SIZE(i + 1) <= size; i++) {
		d_region(e, NULL, b + VHU_MEM_TABLE_SIZE(i));
	}
	e_close(e, ']');
}

/* SET_VRING_KICK/CALL/ERR and the vring area: queue index and the no-fd bit, with the raw word. */
static void
d_vring_file(struct emit *e, const uint8_t *b)
{
	uint64_t v = rd(b, 0, 8);

	e_dec(e, "index", v & VHU_VRING_IDX_MASK);
	e_bool(e, "nofd", (v & VHU_VRING_NOFD) != 0);
	e_hex(e, "u64", v);
}

static void
d_uuid(struct emit *e, const uint8_t *b)
{
	char s[33];
	unsigned int i;

	for (i = 0; i < 16; i++) {
		snprintf(s + 2 * i, 3, "%02x", b[i]);
	}
	e_str(e, "uuid", s);
}

/* A body that is one number: an ack when the request is acked (REPLY_ACK rows). */
static void
d_number(struct emit *e, uint8_t chan, const struct vhu_hdr *h, const uint8_t *b)
{
	const struct vhu_req_info *row = vhu_req_info((enum vhu_channel)chan, h->request);
	bool ack = (h->flags & VHU_FLAG_REPLY) != 0 && row != NULL && row->reply == VHU_REPLY_ACK;

	if (h->size == sizeof(uint64_t)) {
		e_dec(e, ack ? "ack" : "u64", rd(b, 0, 8));
	}
}

void
describe_body(struct emit *e, uint8_t chan, const struct vhu_hdr *h, const uint8_t *b)
{
	bool reply = (h->flags & VHU_FLAG_REPLY) != 0;
	enum vhu_layout l;

	if (h->size == 0 || b == NULL) {
		return;
	}
	l = vhu_body_layout((enum vhu_channel)chan, h->request, reply, h->size);
	if (l == VHU_LAYOUT_NONE || l == VHU_LAYOUT_U64) {
		/* Unknown codes and bodies without a struct too: 8 bytes read as a number. */
		d_number(e, chan, h, b);
		return;
	}
	if (h->size < vhu_layout_size(l)) {
		return;
	}
	switch (l) {
	case VHU_LAYOUT_FEATURES:
	case VHU_LAYOUT_PROTOCOL_FEATURES:
		d_bits(e, rd(b, 0, 8), l == VHU_LAYOUT_PROTOCOL_FEATURES);
		break;
	case VHU_LAYOUT_MEM_TABLE:
		d_mem_table(e, b, h->size);
		break;
	case VHU_LAYOUT_SINGLE_REGION:
		d_region(e, "region", b + offsetof(struct vhu_single_region, region));
		break;
	case VHU_LAYOUT_VRING_FILE:
		d_vring_file(e, b);
		break;
	case VHU_LAYOUT_VRING_AREA:
		d_vring_file(e, b);
		d_fields(e, vring_area_fields, b);
		break;
	case VHU_LAYOUT_SHARED_OBJECT:
		d_uuid(e, b);
		break;
	default:
		if (layout_fields[l] != NULL) {
			d_fields(e, layout_fields[l], b);
		}
		break;
	}
}
