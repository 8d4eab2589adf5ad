/* SPDX-License-Identifier: MIT */
/*
 * A fake guest for the device-layer tests and fuzz target: guest RAM as
 * memfd regions at guest-physical addresses (with gaps, and adjacent
 * ones), each with a front-end virtual address as QEMU would send it, and
 * a driver side that writes descriptor chains and the avail ring exactly
 * as a guest would, through its own mapping of the memfds.
 *
 * No Criterion here (the fuzz target links it): functions return -errno
 * or NULL, the callers assert.
 */
#ifndef VHU_TEST_FAKE_GUEST_H
#define VHU_TEST_FAKE_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include <vhu/guest_mem.h>
#include <vhu/virtq.h>
#include <vhu/wire.h>

#define FG_MAX_REGIONS	8u

struct fg_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;		/* the front-end's address of gpa */
	uint64_t mmap_offset;	/* where gpa sits in the memfd */
	int fd;
	uint8_t *map;		/* the driver's mapping of the whole memfd */
	uint64_t map_len;
};

struct fake_guest {
	unsigned int n;
	struct fg_region r[FG_MAX_REGIONS];
};

/* One region to create: gpa, size, and the memfd offset it starts at. */
struct fg_layout {
	uint64_t gpa;
	uint64_t size;
	uint64_t mmap_offset;
};

/* Front-end virtual address of region i's first byte (distinct, far from any gpa). */
#define FG_UVA_BASE(i)	(0x7e0000000000ull + (uint64_t)(i) * 0x100000000ull)

/* Create the regions (zero-filled memfds). \return 0 or -errno. */
int fg_init(struct fake_guest *g, const struct fg_layout *layout, unsigned int n);

/* Unmap and close everything. Idempotent. */
void fg_fini(struct fake_guest *g);

/* The vhost-user description of region i. */
struct vhu_mem_region fg_region_desc(const struct fake_guest *g, unsigned int i);

/* A SET_MEM_TABLE body for all regions, and a dup of each fd in fds (the caller's to pass on). */
int fg_mem_table(const struct fake_guest *g, struct vhu_mem_table *t, int *fds);

/* Driver-side pointer to [gpa, gpa + len) if inside one region, else NULL. */
void *fg_ptr(const struct fake_guest *g, uint64_t gpa, uint64_t len);

/* The front-end virtual address of gpa (0 if outside every region). */
uint64_t fg_uva(const struct fake_guest *g, uint64_t gpa);

/* Driver side of one split virtqueue: areas at guest-physical addresses. */
struct fg_vq {
	const struct fake_guest *g;
	unsigned int num;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	struct vhu_virtq_desc *desc;
	struct vhu_virtq_avail *avail;
	struct vhu_virtq_used *used;
	uint16_t avail_idx;	/* the driver's next avail index */
	uint16_t last_used;	/* the driver's next used index to read */
};

/* Lay out and zero the three areas. \return 0, or -EINVAL if one does not fit a region. */
int fg_vq_init(struct fg_vq *q, const struct fake_guest *g, unsigned int num, uint64_t desc_gpa,
	       uint64_t avail_gpa, uint64_t used_gpa);

/* SET_VRING_ADDR body: the areas' front-end virtual addresses. */
struct vhu_vring_addr fg_vq_addr(const struct fg_vq *q);

/* Write descriptor i of the queue's table. */
void fg_desc(struct fg_vq *q, unsigned int i, uint64_t addr, uint32_t len, uint16_t flags,
	     uint16_t next);

/* Write descriptor i of an indirect table at table_gpa (driver side). \return false if outside. */
bool fg_indirect_desc(const struct fake_guest *g, uint64_t table_gpa, unsigned int i,
		      uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);

/* Make head available: ring entry, then the idx with release order. */
void fg_avail(struct fg_vq *q, uint16_t head);

/* Publish an arbitrary avail idx (hostile jumps). */
void fg_avail_set_idx(struct fg_vq *q, uint16_t idx);

/* Next used element, if the device published one (acquire on used->idx). */
bool fg_used(struct fg_vq *q, uint32_t *id, uint32_t *len);

/* File-backed lines of /proc/self/maps (the process's memfd and file mappings). */
int fg_map_count(void);

#endif
