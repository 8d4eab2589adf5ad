/* SPDX-License-Identifier: MIT */
/*
 * The requests a VMM's device initialisation makes, without memory or
 * rings: GET_FEATURES, the protocol feature handshake, then GET_QUEUE_NUM,
 * GET_MAX_MEM_SLOTS, GET_CONFIG and GET_STATUS as far as offered.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "probe.h"

/* What this probe can use. Acking a bit it does not handle would be a lie to the back-end. */
#define PROBE_PROTOCOL_FEATURES	(BIT(VHU_PROTOCOL_F_MQ) | BIT(VHU_PROTOCOL_F_REPLY_ACK) | \
				 BIT(VHU_PROTOCOL_F_CONFIG) | \
				 BIT(VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | \
				 BIT(VHU_PROTOCOL_F_STATUS))

static int
get_u64(struct probe *p, uint32_t request, uint64_t *out)
{
	union reply_buf r;
	int rc = probe_transact(p, request, false, NULL, 0, true, &r);

	if (rc < 0) {
		return rc;
	}
	*out = r.u64;
	return 0;
}

static int
set_protocol_features(struct probe *p, uint64_t acked)
{
	bool ack = (acked & BIT(VHU_PROTOCOL_F_REPLY_ACK)) != 0;
	union reply_buf r;
	int rc;

	/* With REPLY_ACK in the set it takes effect for this very message (QEMU does the same). */
	rc = probe_transact(p, VHU_REQ_SET_PROTOCOL_FEATURES, ack, &acked, sizeof(acked), ack, &r);
	if (rc < 0) {
		return rc;
	}
	if (ack && r.u64 != 0) {
		snprintf(p->fault.detail, sizeof(p->fault.detail),
			 "the back-end refused the protocol features 0x%" PRIx64
			 " (ack %" PRIu64 ")",
			 acked, r.u64);
		return probe_fail(p, -EPROTO, VHU_REQ_SET_PROTOCOL_FEATURES, NULL);
	}
	p->rep.have_acked = true;
	p->rep.acked = acked;
	return 0;
}

/* One GET_CONFIG of size bytes at offset 0. \return 1 if refused, 0 if read, or an error. */
static int
get_config(struct probe *p, uint32_t size)
{
	/* Offset 0 is the start of the device's config space, as QEMU sends it. */
	struct vhu_config cfg = { .offset = 0, .size = size, .flags = 0 };
	uint8_t req[VHU_CONFIG_HDR_SIZE + VHU_CONFIG_MAX_PAYLOAD] = { 0 };
	union reply_buf r;
	struct vhu_config got;
	int rc;

	memcpy(req, &cfg, VHU_CONFIG_HDR_SIZE);
	rc = probe_transact(p, VHU_REQ_GET_CONFIG, false, req, VHU_CONFIG_HDR_SIZE + size, true, &r);
	if (rc < 0) {
		return rc;
	}
	/* transact() let only two shapes through: a refusal, or a config that fits its size. */
	if (rc >= (int)VHU_CONFIG_HDR_SIZE) {
		memcpy(&got, r.bytes, VHU_CONFIG_HDR_SIZE);
	} else {
		got.size = 0;
	}
	if (got.size == 0) {
		if (p->rep.nrefused < sizeof(p->rep.refused) / sizeof(p->rep.refused[0])) {
			p->rep.refused[p->rep.nrefused++] = size;
		}
		return 1;
	}
	if (got.offset != 0 || got.size != size) {
		struct vhu_hdr rh = vhu_hdr_reply(VHU_REQ_GET_CONFIG, (uint32_t)rc);

		snprintf(p->fault.detail, sizeof(p->fault.detail),
			 "GET_CONFIG answered offset %" PRIu32 " size %" PRIu32
			 " for offset 0 size %" PRIu32, got.offset, got.size, size);
		return probe_fail(p, -VHU_EBODY, VHU_REQ_GET_CONFIG, &rh);
	}
	p->rep.have_config = true;
	p->rep.config_size = size;
	memcpy(p->rep.config, r.bytes + VHU_CONFIG_HDR_SIZE, size);
	return 0;
}

static uint32_t
device_config_size(enum device dev)
{
	return dev == DEV_BLK ? BLK_CONFIG_SIZE : 0;
}

int
probe_negotiate(struct probe *p)
{
	struct report *rep = &p->rep;
	uint32_t plausible;
	uint64_t acked;
	int rc;

	rc = get_u64(p, VHU_REQ_GET_FEATURES, &rep->features);
	if (rc < 0) {
		return rc;
	}
	rep->have_features = true;
	if ((rep->features & BIT(VHU_F_PROTOCOL_FEATURES)) == 0) {
		return 0;
	}
	rc = get_u64(p, VHU_REQ_GET_PROTOCOL_FEATURES, &rep->protocol);
	if (rc < 0) {
		return rc;
	}
	rep->have_protocol = true;
	acked = rep->protocol & PROBE_PROTOCOL_FEATURES;
	rc = set_protocol_features(p, acked);
	if (rc < 0) {
		return rc;
	}
	if (acked & BIT(VHU_PROTOCOL_F_MQ)) {
		rc = get_u64(p, VHU_REQ_GET_QUEUE_NUM, &rep->queues);
		if (rc < 0) {
			return rc;
		}
		rep->have_queues = true;
	}
	if (acked & BIT(VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
		rc = get_u64(p, VHU_REQ_GET_MAX_MEM_SLOTS, &rep->slots);
		if (rc < 0) {
			return rc;
		}
		rep->have_slots = true;
	}
	if (acked & BIT(VHU_PROTOCOL_F_CONFIG)) {
		rc = get_config(p, p->opt->config_size);
		plausible = device_config_size(p->opt->device);
		/* Back-ends refuse sizes beyond their config space; ask for what the device has. */
		if (rc == 1 && plausible != 0 && plausible < p->opt->config_size) {
			rc = get_config(p, plausible);
		}
		if (rc < 0) {
			return rc;
		}
	}
	if (acked & BIT(VHU_PROTOCOL_F_STATUS)) {
		rc = get_u64(p, VHU_REQ_GET_STATUS, &rep->status);
		if (rc < 0) {
			return rc;
		}
		rep->have_status = true;
	}
	return 0;
}
