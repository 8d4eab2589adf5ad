/* SPDX-License-Identifier: MIT */
/**
 * \file
 * Guest memory: the region table a back-end builds from SET_MEM_TABLE and
 * ADD_MEM_REG / REM_MEM_REG, the mappings of the region fds, and the
 * translation of guest-supplied addresses to local pointers. No event
 * loop, no io_uring: usable from the blocking layer as well as from the
 * engine.
 *
 * Security model: every address and length comes from the front-end or
 * from the guest behind it. A translation succeeds only if the whole range
 * [addr, addr + len) lies inside ONE region; a range that wraps, leaves
 * every region, or straddles two regions (even adjacent ones) is refused
 * with -VHU_EGUESTADDR, so a caller that got a pointer may touch exactly
 * len bytes there and nothing else. Region files are checked against the
 * region's extent when mapped (a file too small would fault on access).
 *
 * Lookups: regions are kept sorted by guest-physical address; a GPA lookup
 * tries the region of the previous hit, then binary-searches (about nine
 * steps at 509 regions). Front-end virtual (user) addresses, used for the
 * vring addresses only, are looked up by a linear scan: they are
 * translated when a ring starts or the table changes, not per request.
 *
 * The unmap rule (epochs): a region leaves the table at once on
 * REM_MEM_REG, on a new SET_MEM_TABLE, on reset, so no new translation can
 * find it; but its mapping and fd stay until no request that may point
 * into it is in flight. Whoever keeps pointers into guest memory across
 * calls (a popped virtqueue request, a started ring) holds the current
 * epoch (vhu_mem_hold) and releases it when done (vhu_mem_release). A
 * table change that removes regions closes the current epoch with those
 * regions attached and opens a new one; a closed epoch's regions are
 * unmapped and their fds closed once it and every older epoch have no
 * holders. When nothing is held, removal unmaps at once. vhu_mem_destroy
 * unmaps everything, held or not: destroy the queues first.
 *
 * Shrunk files (the SIGBUS guard): a region's file is checked against the
 * region when it is mapped, but the front-end keeps the file and may
 * shrink it later (ftruncate; a memfd it did not seal), and the next
 * access to the lost pages raises SIGBUS, which kills the process and
 * every other front-end's device with it. Guest memory cannot be required
 * to be sealed (QEMU's memory-backend-file on /dev/shm or hugetlbfs
 * cannot be), so a back-end that serves more than one front-end installs
 * vhu_mem_sigbus_guard() once: a SIGBUS inside a mapped region then
 * replaces that region's whole mapping with zero pages, the access
 * completes on zeroes, every translation into the region fails from then
 * on, and vhu_mem_error() says -VHU_EMEMLOST: the owner of the table
 * (vhu_vq, the device layer) closes that device and nothing else. Every
 * mapping is in the guard's registry from mmap to munmap, installed or not.
 *
 * Threads: a vhu_mem and everything that holds its epochs belong to one
 * thread (the one that handles the connection's messages and its queues).
 */
#ifndef VHU_GUEST_MEM_H
#define VHU_GUEST_MEM_H

#include <stdint.h>

#include <vhu/wire.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/**
 * Memory slots offered with CONFIGURE_MEM_SLOTS (the GET_MAX_MEM_SLOTS
 * reply): 509, as libvhost-user and rust-vmm's vhost-user-backend offer.
 */
#define VHU_MEM_MAX_SLOTS	509u

/** A guest's memory: regions, their mappings, and the epochs that pin them. */
struct vhu_mem;

/** A pin on the mappings that exist now (see the unmap rule above). */
struct vhu_mem_epoch;

/**
 * Create an empty region table.
 * \return 0, or -ENOMEM.
 */
int vhu_mem_create(struct vhu_mem **out);

/**
 * Unmap every region and close every fd, including regions whose unmap
 * was deferred, whether or not epochs are still held; then free. Every
 * epoch pointer becomes invalid. NULL is a no-op.
 */
void vhu_mem_destroy(struct vhu_mem *m);

/**
 * SET_MEM_TABLE: replace the whole table. The new regions are all mapped
 * before anything is removed; if one fails, the new ones are unmapped and
 * the old table stays as it was.
 *
 * \param table  nregions regions (1..VHU_MAX_MEM_REGIONS, as validated by
 *               vhu_msg_check; checked again here).
 * \param fds    one fd per region, in order. Ownership passes to m in
 *               every case: on failure all of them are closed.
 * \return 0; -EINVAL (count, or nfds != nregions); -VHU_EMEMREGION (size 0,
 *         an address or offset that wraps, two new regions overlapping in
 *         guest-physical space, a file smaller than mmap_offset + size);
 *         -errno of fstat or mmap; -ENOMEM.
 */
int vhu_mem_set_table(struct vhu_mem *m, const struct vhu_mem_table *table, const int *fds,
		      unsigned int nfds);

/**
 * ADD_MEM_REG: map one more region.
 * \param fd  the region's fd; owned by m from now on, closed on failure.
 * \return 0; -VHU_EMEMSLOTS if VHU_MEM_MAX_SLOTS regions are mapped;
 *         -VHU_EMEMREGION (as vhu_mem_set_table, or overlapping a mapped
 *         region in guest-physical space); -errno of fstat or mmap; -ENOMEM.
 */
int vhu_mem_add_region(struct vhu_mem *m, const struct vhu_mem_region *region, int fd);

/**
 * REM_MEM_REG: remove the region with the same guest_phys_addr, size and
 * user_addr. It leaves the table at once; its mapping and fd go as the
 * unmap rule says. (A stray fd sent with REM_MEM_REG is the caller's to
 * close.)
 * \return 0, -VHU_EMEMREGION if no region matches, -ENOMEM (an epoch could
 *         not be allocated; nothing changed).
 */
int vhu_mem_remove_region(struct vhu_mem *m, const struct vhu_mem_region *region);

/**
 * Remove every region (RESET_OWNER, RESET_DEVICE, a closed connection),
 * under the unmap rule.
 * \return 0, or -ENOMEM (nothing changed).
 */
int vhu_mem_reset(struct vhu_mem *m);

/** \return the number of regions in the table. */
unsigned int vhu_mem_nregions(const struct vhu_mem *m);

/**
 * \return a counter that changes whenever regions leave the table:
 *         pointers obtained under an older value must be translated again
 *         before new use (vhu_vq does this for its rings).
 */
uint64_t vhu_mem_generation(const struct vhu_mem *m);

/**
 * \return the number of regions removed from the table whose unmap is
 *         still deferred because an epoch that may point into them is held.
 */
unsigned int vhu_mem_deferred(const struct vhu_mem *m);

/**
 * Translate a guest-physical range.
 * \return a pointer to len bytes, all inside one region; NULL if the range
 *         wraps, or is not inside one region (-VHU_EGUESTADDR for a caller
 *         that reports it). len 0 still needs gpa inside a region.
 */
void *vhu_mem_gpa(struct vhu_mem *m, uint64_t gpa, uint64_t len);

/**
 * Translate a range of front-end virtual addresses (a region's user_addr
 * side; vring addresses are given this way).
 * \return as vhu_mem_gpa.
 */
void *vhu_mem_uva(struct vhu_mem *m, uint64_t uva, uint64_t len);

/**
 * \return 0, or -VHU_EMEMLOST once the SIGBUS guard found a region of m
 *         (in the table or waiting for its unmap) shrunk under its mapping
 *         and replaced it with zero pages. Sticky: the table cannot be
 *         trusted again; the device that owns it is to be closed. One load.
 */
int vhu_mem_error(const struct vhu_mem *m);

/**
 * Install the SIGBUS guard for the whole process (see "Shrunk files"
 * above). Opt-in, idempotent: the first call installs an SA_SIGINFO |
 * SA_ONSTACK handler, later calls return 0. A SIGBUS outside every mapped
 * guest-memory region (or sent with kill) goes to the disposition that was
 * in place when the guard was installed: its handler is called, or the
 * default action (the process dies) happens. A handler installed after the
 * guard must chain to it the same way. Call it before serving, from any
 * thread.
 * \return 0, or -errno of sigaction.
 */
int vhu_mem_sigbus_guard(void);

/**
 * Pin the mappings that exist now: no region of the table as it is now is
 * unmapped until the epoch is released. O(1), no allocation.
 * \return the current epoch (never NULL).
 */
struct vhu_mem_epoch *vhu_mem_hold(struct vhu_mem *m);

/**
 * Release a pin taken with vhu_mem_hold; regions whose unmap was waiting
 * for it are unmapped now. e may be NULL (no-op).
 */
void vhu_mem_release(struct vhu_mem *m, struct vhu_mem_epoch *e);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
