/* SPDX-License-Identifier: MIT */
#include "device.h"

#include <string.h>

#include <vhu/wire.h>

/* virtio-blk feature bits (virtio spec 5.2.3). */
#define BLK_F_SEG_MAX		2
#define BLK_F_BLK_SIZE		6
#define BLK_F_FLUSH		9
#define BLK_F_MQ		12

/* virtio-blk config space offsets (virtio spec 5.2.4). */
#define CFG_CAPACITY		0
#define CFG_SEG_MAX		12
#define CFG_BLK_SIZE		20
#define CFG_NUM_QUEUES		34

/* Descriptors per request minus header and status, as QEMU reports it for a 128 ring. */
#define SEG_MAX			126u

#define BIT(n)			(1ull << (n))

uint64_t
be_device_features(void)
{
	return BIT(BLK_F_SEG_MAX) | BIT(BLK_F_BLK_SIZE) | BIT(BLK_F_FLUSH) | BIT(BLK_F_MQ) |
	       BIT(VHU_F_RING_INDIRECT_DESC) | BIT(VHU_F_RING_EVENT_IDX) |
	       BIT(VHU_F_PROTOCOL_FEATURES) | BIT(VHU_F_VERSION_1);
}

uint64_t
be_device_protocol_features(void)
{
	/*
	 * Never offer a bit without its handler: a front-end that negotiates
	 * it will send the gated requests and expect them to work.
	 */
	return BIT(VHU_PROTOCOL_F_MQ) | BIT(VHU_PROTOCOL_F_REPLY_ACK) |
	       BIT(VHU_PROTOCOL_F_BACKEND_REQ) | BIT(VHU_PROTOCOL_F_CONFIG) |
	       BIT(VHU_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | BIT(VHU_PROTOCOL_F_STATUS);
}

void
be_device_config(const struct be_device *dev, uint8_t out[BE_CONFIG_SPACE_SIZE])
{
	uint32_t seg_max = SEG_MAX;
	uint32_t blk_size = BE_SECTOR_SIZE;
	uint16_t num_queues = (uint16_t)dev->queues;

	/* Virtio 1.0 config fields are little-endian, as is every host vhu targets. */
	memset(out, 0, BE_CONFIG_SPACE_SIZE);
	memcpy(out + CFG_CAPACITY, &dev->capacity_sectors, sizeof(dev->capacity_sectors));
	memcpy(out + CFG_SEG_MAX, &seg_max, sizeof(seg_max));
	memcpy(out + CFG_BLK_SIZE, &blk_size, sizeof(blk_size));
	memcpy(out + CFG_NUM_QUEUES, &num_queues, sizeof(num_queues));
}
