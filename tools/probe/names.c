/* SPDX-License-Identifier: MIT */
/* virtio names the reports use: feature and status bits, the virtio-blk config layout. */
#include <stdio.h>
#include <string.h>

#include "probe.h"

/* virtio-blk device feature bits (virtio 1.2, 5.2.3). */
static const char *const blk_feature_names[24] = {
	[0] = "BARRIER",
	[1] = "SIZE_MAX",
	[2] = "SEG_MAX",
	[4] = "GEOMETRY",
	[5] = "RO",
	[6] = "BLK_SIZE",
	[7] = "SCSI",
	[9] = "FLUSH",
	[10] = "TOPOLOGY",
	[11] = "CONFIG_WCE",
	[12] = "MQ",
	[13] = "DISCARD",
	[14] = "WRITE_ZEROES",
	[15] = "LIFETIME",
	[16] = "SECURE_ERASE",
	[17] = "ZONED",
};

static const char *
feature_name(enum device dev, unsigned int bit)
{
	if (dev == DEV_BLK && bit < sizeof(blk_feature_names) / sizeof(blk_feature_names[0])) {
		return blk_feature_names[bit];
	}
	return vhu_feature_name(bit);
}

const char *
probe_bit_name(bool protocol, enum device dev, unsigned int bit, char *buf, size_t len)
{
	const char *name = protocol ? vhu_protocol_feature_name(bit) : feature_name(dev, bit);

	if (name != NULL) {
		return name;
	}
	snprintf(buf, len, "bit %u", bit);
	return buf;
}

const struct status_name probe_status_names[] = {
	{ 1, "ACKNOWLEDGE" },
	{ 2, "DRIVER" },
	{ 4, "DRIVER_OK" },
	{ 8, "FEATURES_OK" },
	{ 64, "DEVICE_NEEDS_RESET" },
	{ 128, "FAILED" },
};
const size_t probe_nstatus_names = sizeof(probe_status_names) / sizeof(probe_status_names[0]);

const struct blk_field probe_blk_fields[] = {
	{ "capacity", 0, 8, BLK_CAPACITY },
	{ "size_max", 8, 4, BLK_NUM },
	{ "seg_max", 12, 4, BLK_NUM },
	{ "geometry", 16, 4, BLK_GEOMETRY },
	{ "blk_size", 20, 4, BLK_NUM },
	{ "physical_block_exp", 24, 1, BLK_NUM },
	{ "alignment_offset", 25, 1, BLK_NUM },
	{ "min_io_size", 26, 2, BLK_NUM },
	{ "opt_io_size", 28, 4, BLK_NUM },
	{ "writeback", 32, 1, BLK_NUM },
	{ "num_queues", 34, 2, BLK_NUM },
	{ "max_discard_sectors", 36, 4, BLK_NUM },
	{ "max_discard_seg", 40, 4, BLK_NUM },
	{ "discard_sector_alignment", 44, 4, BLK_NUM },
	{ "max_write_zeroes_sectors", 48, 4, BLK_NUM },
	{ "max_write_zeroes_seg", 52, 4, BLK_NUM },
	{ "write_zeroes_may_unmap", 56, 1, BLK_NUM },
};
const size_t probe_nblk_fields = sizeof(probe_blk_fields) / sizeof(probe_blk_fields[0]);

/* Config fields are little-endian (virtio 1.x), as is every host vhu targets. */
uint64_t
probe_cfg_read(const struct report *rep, unsigned int off, unsigned int width)
{
	uint64_t v = 0;

	memcpy(&v, rep->config + off, width);
	return v;
}

bool
probe_cfg_has(const struct report *rep, unsigned int off, unsigned int width)
{
	return rep->have_config && off + width <= rep->config_size;
}
