/* SPDX-License-Identifier: MIT */
/* The JSON report: one object on stdout, the fault included. */
#include <inttypes.h>
#include <stdio.h>

#include "common/json.h"
#include "probe.h"

static void
json_bits(const char *key, const char *names_key, uint64_t mask, bool protocol, enum device dev)
{
	char buf[16];
	unsigned int bit;
	bool first = true;

	printf(",\"%s\":\"0x%016" PRIx64 "\",\"%s\":[", key, mask, names_key);
	for (bit = 0; bit < 64; bit++) {
		if (mask & BIT(bit)) {
			printf(first ? "" : ",");
			tool_json_str(stdout, probe_bit_name(protocol, dev, bit, buf, sizeof(buf)));
			first = false;
		}
	}
	printf("]");
}

static void
json_blk(const struct report *rep)
{
	const char *sep = "";
	uint64_t v, bytes;
	size_t i;

	printf(",\"blk\":{");
	for (i = 0; i < probe_nblk_fields; i++) {
		const struct blk_field *f = &probe_blk_fields[i];

		if (!probe_cfg_has(rep, f->off, f->width)) {
			continue;
		}
		v = probe_cfg_read(rep, f->off, f->width);
		switch (f->kind) {
		case BLK_CAPACITY:
			printf("%s\"capacity_sectors\":%" PRIu64, sep, v);
			if (!__builtin_mul_overflow(v, (uint64_t)SECTOR_SIZE, &bytes)) {
				printf(",\"capacity_bytes\":%" PRIu64, bytes);
			}
			break;
		case BLK_GEOMETRY:
			printf("%s\"geometry\":{\"cylinders\":%" PRIu64 ",\"heads\":%" PRIu64
			       ",\"sectors\":%" PRIu64 "}", sep, v & 0xffff, (v >> 16) & 0xff,
			       (v >> 24) & 0xff);
			break;
		default:
			printf("%s\"%s\":%" PRIu64, sep, f->name, v);
			break;
		}
		sep = ",";
	}
	printf("}");
}

static void
json_hdr(const struct vhu_hdr *h)
{
	printf("{\"request\":");
	tool_json_str(stdout, vhu_req_name(VHU_CHAN_FRONTEND, h->request));
	printf(",\"code\":%" PRIu32 ",\"flags\":\"0x%" PRIx32 "\",\"size\":%" PRIu32 "}",
	       h->request, h->flags, h->size);
}

void
probe_json_report(const struct options *o, const struct report *rep, const struct fault *f,
	    enum status st)
{
	unsigned int i;

	printf("{\"socket\":");
	tool_json_str(stdout, o->socket);
	printf(",\"vhu_version\":");
	tool_json_str(stdout, vhu_version());
	if (rep->have_features) {
		json_bits("features", "feature_names", rep->features, false, o->device);
	}
	if (rep->have_protocol) {
		json_bits("protocol_features", "protocol_feature_names", rep->protocol, true,
			  o->device);
	}
	if (rep->have_acked) {
		printf(",\"protocol_features_acked\":\"0x%016" PRIx64 "\"", rep->acked);
	}
	if (rep->have_queues) {
		printf(",\"queues\":%" PRIu64, rep->queues);
	}
	if (rep->have_slots) {
		printf(",\"max_mem_slots\":%" PRIu64, rep->slots);
	}
	if (rep->have_config || rep->nrefused > 0) {
		printf(",\"config\":{\"refused_sizes\":[");
		for (i = 0; i < rep->nrefused; i++) {
			printf("%s%" PRIu32, i ? "," : "", rep->refused[i]);
		}
		printf("]");
		if (rep->have_config) {
			printf(",\"offset\":0,\"size\":%" PRIu32 ",\"hex\":\"", rep->config_size);
			for (i = 0; i < rep->config_size; i++) {
				printf("%02x", rep->config[i]);
			}
			printf("\"");
		}
		printf("}");
		if (rep->have_config && o->device == DEV_BLK) {
			json_blk(rep);
		}
	}
	if (rep->have_status) {
		printf(",\"status\":%" PRIu64, rep->status);
	}
	printf(",\"round_trips_us\":[");
	for (i = 0; i < rep->nsamples; i++) {
		const struct sample *s = &rep->samples[i];

		printf("%s{\"request\":", i ? "," : "");
		tool_json_str(stdout, vhu_req_name(VHU_CHAN_FRONTEND, s->request));
		printf(",\"replied\":%s,\"us\":%" PRIu64 "}", s->replied ? "true" : "false",
		       s->usec);
	}
	printf("],\"exit_status\":%d", (int)st);
	if (st != ST_OK) {
		printf(",\"error\":{\"request\":");
		if (f->request != VHU_REQ_NONE) {
			tool_json_str(stdout, vhu_req_name(VHU_CHAN_FRONTEND, f->request));
		} else {
			printf("null");
		}
		printf(",\"code\":");
		tool_json_str(stdout, vhu_errname(f->err));
		printf(",\"message\":");
		tool_json_str(stdout, probe_fault_text(f));
		if (f->have_msg) {
			printf(",\"offending_message\":");
			json_hdr(&f->msg);
		}
		printf("}");
	}
	printf("}\n");
}
