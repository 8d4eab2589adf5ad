/* SPDX-License-Identifier: MIT */
/*
 * vhu_body_layout(): the struct of each body agrees with the rule tables
 * (a FIXED body is exactly its layout's size, MEM_TABLE and CONFIG bodies
 * have those layouts), the size-dependent postcopy replies, unknown codes.
 */
#include <stdbool.h>
#include <stdint.h>

#include <vhu/wire.h>

#include "helpers.h"

TestSuite(wire_layout, .init = t_setup, .fini = t_teardown);

static void
check_row(enum vhu_channel chan, uint32_t req, bool reply)
{
	const struct vhu_req_info *row = vhu_req_info(chan, req);
	uint8_t rule = reply ? row->reply_body : row->body;
	uint16_t size = reply ? row->reply_size : row->body_size;
	/* The size a valid body has, or a typical one. */
	uint32_t typical = rule == VHU_BODY_FIXED ? size : rule == VHU_BODY_MEM_TABLE ? 40u : 64u;
	enum vhu_layout l = vhu_body_layout(chan, req, reply, typical);

	switch (rule) {
	case VHU_BODY_NONE:
		cr_assert_eq(l, VHU_LAYOUT_NONE, "%s%s has no body", row->name,
			     reply ? " reply" : "");
		break;
	case VHU_BODY_FIXED:
		if (l == VHU_LAYOUT_SHMEM_CONFIG) {
			/* A fixed part and its entries. */
			cr_assert_leq(vhu_layout_size(l), size, "%s", row->name);
		} else if (l != VHU_LAYOUT_NONE) {
			cr_assert_eq(vhu_layout_size(l), size, "%s%s: layout %d is %zu bytes, "
				     "the table says %u", row->name, reply ? " reply" : "", l,
				     vhu_layout_size(l), size);
		}
		break;
	case VHU_BODY_MEM_TABLE:
		cr_assert_eq(l, VHU_LAYOUT_MEM_TABLE, "%s", row->name);
		break;
	case VHU_BODY_CONFIG:
		cr_assert_eq(l, VHU_LAYOUT_CONFIG, "%s", row->name);
		break;
	default:
		if (l != VHU_LAYOUT_NONE) {
			cr_assert_geq(typical, vhu_layout_size(l), "%s", row->name);
		}
		break;
	}
}

Test(wire_layout, layouts_agree_with_the_rule_tables)
{
	uint32_t r;

	for (r = 1; r <= VHU_REQ_MAX; r++) {
		check_row(VHU_CHAN_FRONTEND, r, false);
		check_row(VHU_CHAN_FRONTEND, r, true);
	}
	for (r = 1; r <= VHU_BREQ_MAX; r++) {
		check_row(VHU_CHAN_BACKEND, r, false);
		check_row(VHU_CHAN_BACKEND, r, true);
	}
}

Test(wire_layout, every_fixed_u64_body_is_a_u64)
{
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_SET_STATUS, false, 8),
		     VHU_LAYOUT_U64);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_SET_OWNER, true, 8),
		     VHU_LAYOUT_U64);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_BACKEND, VHU_BREQ_SHMEM_MAP, true, 8),
		     VHU_LAYOUT_U64);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_GET_FEATURES, true, 8),
		     VHU_LAYOUT_FEATURES);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_SET_VRING_CALL, false, 8),
		     VHU_LAYOUT_VRING_FILE);
}

Test(wire_layout, postcopy_replies_depend_on_size)
{
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_SET_MEM_TABLE, true, 8),
		     VHU_LAYOUT_U64);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_SET_MEM_TABLE, true, 40),
		     VHU_LAYOUT_MEM_TABLE);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_ADD_MEM_REG, true, 8),
		     VHU_LAYOUT_U64);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_ADD_MEM_REG, true, 40),
		     VHU_LAYOUT_SINGLE_REGION);
}

Test(wire_layout, unknown_codes_and_sizes)
{
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, 0, false, 8), VHU_LAYOUT_NONE);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_FRONTEND, VHU_REQ_MAX + 1, false, 8),
		     VHU_LAYOUT_NONE);
	cr_assert_eq(vhu_body_layout(VHU_CHAN_BACKEND, VHU_BREQ_MAX + 1, true, 8),
		     VHU_LAYOUT_NONE);
	cr_assert_eq(vhu_body_layout((enum vhu_channel)7, 1, false, 8), VHU_LAYOUT_NONE);
	cr_assert_eq(vhu_layout_size(VHU_LAYOUT_NONE), 0);
	cr_assert_eq(vhu_layout_size(VHU_LAYOUT_COUNT), 0);
	cr_assert_eq(vhu_layout_size(VHU_LAYOUT_SHMEM_CONFIG), 8);
	cr_assert_eq(vhu_layout_size(VHU_LAYOUT_MEM_TABLE), 8);
}
