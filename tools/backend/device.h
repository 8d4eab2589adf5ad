/* SPDX-License-Identifier: MIT */
/*
 * The device vhu-backend pretends to be: a virtio-blk disk of a given
 * capacity with no data path. What it offers in feature negotiation and
 * what its config space reads.
 */
#ifndef VHU_BACKEND_DEVICE_H
#define VHU_BACKEND_DEVICE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of virtio-blk config space served (up to write_zeroes_may_unmap). */
#define BE_CONFIG_SPACE_SIZE	60u
/* Memory slots reported by GET_MAX_MEM_SLOTS; also the memory table limit. */
#define BE_MAX_MEM_SLOTS	32u
/* Queue indices are 8 bits wide in SET_VRING_KICK/CALL/ERR. */
#define BE_MAX_QUEUES		256u
#define BE_SECTOR_SIZE		512u

struct be_device {
	uint64_t capacity_sectors;
	unsigned int queues;
};

/* Virtio feature bits offered by GET_FEATURES. */
uint64_t be_device_features(void);

/* Protocol feature bits offered: exactly what the session implements. */
uint64_t be_device_protocol_features(void);

/* Fill out[0, BE_CONFIG_SPACE_SIZE) with the virtio-blk config space. */
void be_device_config(const struct be_device *dev, uint8_t out[BE_CONFIG_SPACE_SIZE]);

#endif
