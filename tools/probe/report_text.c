/* SPDX-License-Identifier: MIT */
/* The text report: one line per fact, bit lists, a hexdump of the config, round trips. */
#include <inttypes.h>
#include <stdio.h>

#include "probe.h"

static void
text_bits(const char *title, uint64_t mask, bool protocol, enum device dev)
{
	char buf[16];
	unsigned int bit;

	printf("%-18s0x%016" PRIx64 "\n", title, mask);
	for (bit = 0; bit < 64; bit++) {
		if (mask & BIT(bit)) {
			printf("  %2u  %s\n", bit, probe_bit_name(protocol, dev, bit, buf, sizeof(buf)));
		}
	}
}

static void
text_hexdump(const uint8_t *b, uint32_t len)
{
	uint32_t i, j;

	for (i = 0; i < len; i += 16) {
		printf("  %04" PRIx32 " ", i);
		for (j = i; j < i + 16; j++) {
			if (j < len) {
				printf(" %02x", b[j]);
			} else {
				printf("   ");
			}
		}
		printf("  |");
		for (j = i; j < i + 16 && j < len; j++) {
			putchar(b[j] >= 0x20 && b[j] < 0x7f ? b[j] : '.');
		}
		printf("|\n");
	}
}

static void
text_blk(const struct report *rep)
{
	uint64_t v, bytes;
	size_t i;

	printf("virtio-blk config\n");
	for (i = 0; i < probe_nblk_fields; i++) {
		const struct blk_field *f = &probe_blk_fields[i];

		if (!probe_cfg_has(rep, f->off, f->width)) {
			continue;
		}
		v = probe_cfg_read(rep, f->off, f->width);
		printf("  %-26s", f->name);
		switch (f->kind) {
		case BLK_CAPACITY:
			printf("%" PRIu64 " sectors", v);
			if (!__builtin_mul_overflow(v, (uint64_t)SECTOR_SIZE, &bytes)) {
				printf(" (%" PRIu64 " bytes)", bytes);
			}
			printf("\n");
			break;
		case BLK_GEOMETRY:
			printf("%" PRIu64 " cylinders, %" PRIu64 " heads, %" PRIu64 " sectors\n",
			       v & 0xffff, (v >> 16) & 0xff, (v >> 24) & 0xff);
			break;
		default:
			printf("%" PRIu64 "\n", v);
			break;
		}
	}
}

void
probe_text_report(const struct options *o, const struct report *rep)
{
	unsigned int i;
	size_t k;

	printf("%-18s%s\n", "socket", o->socket);
	if (rep->have_features) {
		text_bits("features", rep->features, false, o->device);
	}
	if (rep->have_protocol) {
		text_bits("protocol features", rep->protocol, true, o->device);
	}
	if (rep->have_acked) {
		printf("%-18s0x%016" PRIx64 "\n", "acked", rep->acked);
	}
	if (rep->have_queues) {
		printf("%-18s%" PRIu64 "\n", "queues", rep->queues);
	}
	if (rep->have_slots) {
		printf("%-18s%" PRIu64 "\n", "memory slots", rep->slots);
	}
	for (i = 0; i < rep->nrefused; i++) {
		printf("%-18srefused for %" PRIu32 " bytes at offset 0\n", "config",
		       rep->refused[i]);
	}
	if (rep->have_config) {
		printf("%-18s%" PRIu32 " bytes at offset 0\n", "config", rep->config_size);
		text_hexdump(rep->config, rep->config_size);
		if (o->device == DEV_BLK) {
			text_blk(rep);
		}
	}
	if (rep->have_status) {
		printf("%-18s0x%02" PRIx64, "status", rep->status);
		for (k = 0; k < probe_nstatus_names; k++) {
			if (rep->status & probe_status_names[k].bit) {
				printf(" %s", probe_status_names[k].name);
			}
		}
		printf("\n");
	}
	if (rep->nsamples > 0) {
		printf("round trips (us)\n");
	}
	for (i = 0; i < rep->nsamples; i++) {
		const struct sample *s = &rep->samples[i];
		const char *name = vhu_req_name(VHU_CHAN_FRONTEND, s->request);

		if (s->replied) {
			printf("  %-24s%" PRIu64 "\n", name, s->usec);
		} else {
			printf("  %-24s- (no reply due; sent in %" PRIu64 ")\n", name, s->usec);
		}
	}
}
