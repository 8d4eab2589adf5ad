/* SPDX-License-Identifier: MIT */
/*
 * A device's inflight region (protocol feature INFLIGHT_SHMFD, layout and
 * recovery in <vhu/inflight.h>): GET_INFLIGHT_FD creates one in a sealed
 * memfd and hands it out without keeping it; SET_INFLIGHT_FD maps the one
 * the front-end keeps and attaches each queue's area to its vhu_vq, which
 * runs the recovery when the queue starts. One region at a time per
 * device; it is unmapped on a second SET_INFLIGHT_FD, on reset and when
 * the device is freed. The fd is closed once mapped: the mapping is all we
 * keep.
 *
 * With reactors the region is mapped once, on the control ring, and each
 * ring attaches the areas of the queues homed on it (OP_INFLIGHT, on that
 * ring: the vq is its). A ring that refuses (a queue of its running) after
 * another attached closes the device: the queues would disagree.
 *
 * The front-end may write the region at any time (it holds the fd): that
 * only changes what a later start submits again, which the recovery
 * checks. Its size is checked against the file at SET_INFLIGHT_FD (a
 * shorter file would raise SIGBUS on access), as for memory regions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vhu/inflight.h>

#include "device_internal.h"

/* The region's geometry from a GET/SET body: 0, or -VHU_EBODY. */
static int
geometry(const struct vhu_dev *d, const struct vhu_inflight *b, uint64_t *size)
{
	*size = vhu_inflight_region_size(b->num_queues, b->queue_size);
	if (*size == 0 || b->num_queues > d->nq) {
		return -VHU_EBODY;
	}
	return 0;
}

int
vhu__dev_inflight_create(struct vhu_dev *d, struct vhu_inflight *b, int *out)
{
	uint64_t size;
	void *p;
	int fd, rc = geometry(d, b, &size);

	*out = -1;
	if (rc < 0) {
		return rc;
	}
	fd = memfd_create("vhu-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		return -errno;
	}
	/* Sealed: nobody can shrink it under a mapping (SIGBUS) or grow it. */
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}
	vhu_inflight_region_init(p, b->num_queues, b->queue_size);
	munmap(p, (size_t)size);
	b->mmap_size = size;
	b->mmap_offset = 0;
	b->padding = 0;
	*out = fd;
	return 0;
}

/* Unmap the region (every queue's area detached already: reset, or queues destroyed). */
void
vhu__dev_inflight_release(struct vhu_dev *d)
{
	if (d->ifl_map != NULL) {
		munmap(d->ifl_map, d->ifl_len);
	}
	if (d->ifl_new != NULL) {
		munmap(d->ifl_new, d->ifl_new_len);
	}
	d->ifl_map = d->ifl_new = NULL;
	d->ifl_len = d->ifl_new_len = 0;
}

/* Detach the areas of the port's queues, on the port's ring. */
void
vhu__port_inflight_detach(struct dev_port *p)
{
	struct vhu_dev *d = p->dev;
	unsigned int i;

	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p && d->q[i].vq != NULL) {
			(void)vhu_vq_set_inflight(d->q[i].vq, NULL, 0);
		}
	}
}

/*
 * OP_INFLIGHT on the port's ring: its queues, all stopped and idle, take
 * their areas of the region at base (queues from num_queues on: none).
 * \return 0; -EBUSY (nothing changed); or an attach error (every area of
 * the port detached).
 */
int
vhu__port_inflight_attach(struct dev_port *p, uint8_t *base, uint16_t num_queues,
			  uint16_t queue_size)
{
	struct vhu_dev *d = p->dev;
	unsigned int i;
	int rc;

	/* The areas are attached to stopped, idle queues only. */
	for (i = 0; i < d->nq; i++) {
		if (d->q[i].port == p &&
		    (vhu_vq_started(d->q[i].vq) || vhu_vq_inflight(d->q[i].vq) > 0)) {
			return -EBUSY;
		}
	}
	vhu__port_inflight_detach(p);
	for (i = 0; i < num_queues; i++) {
		if (d->q[i].port != p) {
			continue;
		}
		rc = vhu_vq_set_inflight(d->q[i].vq, vhu_inflight_queue_at(base, queue_size, i),
					 queue_size);
		if (rc < 0) {
			vhu__port_inflight_detach(p);
			return rc;
		}
	}
	return 0;
}

/*
 * SET_INFLIGHT_FD, first step: check and map the region (kept as the new
 * one; vhu__dev_inflight_commit() makes it current once the queues took
 * their areas). Takes fd. \return 0 with *base the areas' start, or -errno.
 */
int
vhu__dev_inflight_map(struct vhu_dev *d, const struct vhu_inflight *b, int fd, uint8_t **base)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t size, off, delta;
	struct stat st;
	void *p;
	int seals, rc = geometry(d, b, &size);

	if (rc < 0) {
		goto out;
	}
	if (b->mmap_size < size || b->mmap_offset > (uint64_t)INT64_MAX - size) {
		rc = -VHU_EINFLIGHT;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (st.st_size < 0 || (uint64_t)st.st_size < b->mmap_offset + size) {
		rc = -VHU_EINFLIGHT;
		goto out;
	}
	/*
	 * A file the front-end could shrink after this check would turn our
	 * next store into the region into a SIGBUS: only a file sealed against
	 * shrinking is mapped. GET_INFLIGHT_FD's memfd is (so what QEMU hands
	 * back is), as are libvhost-user's and DPDK's.
	 */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		rc = -VHU_EINFLIGHT;
		goto out;
	}
	off = b->mmap_offset & ~(uint64_t)(page - 1);
	delta = b->mmap_offset - off;
	/* The areas' 64-byte alignment must hold in our mapping too (atomics). */
	if (delta % VHU_INFLIGHT_ALIGN != 0) {
		rc = -VHU_EINFLIGHT;
		goto out;
	}
	p = mmap(NULL, (size_t)(size + delta), PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	if (p == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	d->ifl_new = p;
	d->ifl_new_len = (size_t)(size + delta);
	*base = (uint8_t *)p + delta;
	rc = 0;
out:
	close(fd);
	return rc;
}

/*
 * SET_INFLIGHT_FD, last step, rc the queues' answer: 0 makes the new region
 * current (the old one goes); -EBUSY from the first ring leaves everything
 * as it was; any other failure leaves no region in use (both stay mapped
 * until the device goes, as a ring may point into either).
 */
void
vhu__dev_inflight_commit(struct vhu_dev *d, int rc, bool partial)
{
	if (rc == 0) {
		if (d->ifl_map != NULL) {
			munmap(d->ifl_map, d->ifl_len);
		}
		d->ifl_map = d->ifl_new;
		d->ifl_len = d->ifl_new_len;
	} else if (!partial) {
		munmap(d->ifl_new, d->ifl_new_len);
	} else {
		return;		/* kept until the device is freed (it is closing) */
	}
	d->ifl_new = NULL;
	d->ifl_new_len = 0;
}
