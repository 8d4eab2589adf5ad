/* SPDX-License-Identifier: MIT */
/**
 * \file
 * vhu error codes.
 *
 * Every vhu function that can fail returns a negative value: either a
 * negated errno (for failures of the operating system, e.g. -ECONNREFUSED)
 * or one of the negated vhu codes below, which name faults of the
 * vhost-user protocol. vhu codes live above 4096, outside the errno range,
 * so the two never collide. errno itself is never part of the API.
 *
 * The first six are the connection-layer errors every vhost-user stack
 * knows (Disconnect, PartialMessage, InvalidMessage, IncorrectFds,
 * OversizedMsg, SocketRetry); the others refine InvalidMessage and
 * IncorrectFds so that a log line names the exact fault. The device layer
 * adds GuestMemory faults (memory table, address translation) and
 * VirtqueueBroken faults (a guest's ring that cannot be trusted); the
 * driver side (<vhu/vq_driver.h>, <vhu/blkdrv.h>) adds DeviceBroken faults
 * (a back-end's used ring or status byte that cannot be trusted).
 */
#ifndef VHU_ERROR_H
#define VHU_ERROR_H

#include <errno.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif
#if defined(__GNUC__)
#pragma GCC visibility push(default) /* the API: exported even under -fvisibility=hidden */
#endif

/** SocketRetry: the operation would block (or was interrupted); try again. */
#define VHU_ERETRY EAGAIN

enum vhu_error {
	VHU_ERROR_BASE = 4096,
	/** Disconnect: the peer closed the connection before a message began. */
	VHU_EDISCONNECT = 4097,
	/** PartialMessage: the peer closed, or a transfer fell short, inside a message. */
	VHU_EPARTIAL = 4098,
	/** InvalidMessage: a malformed message (generic; see the refinements below). */
	VHU_EINVALID = 4099,
	/** IncorrectFds: wrong number of fds for the request, or fds where none belong. */
	VHU_EFDS = 4100,
	/** OversizedMsg: a size field above the endpoint's maximum, or a length overflow. */
	VHU_EOVERSIZED = 4101,
	/** InvalidMessage: header version is not 1. */
	VHU_EVERSION = 4102,
	/** InvalidMessage: reserved flag bits set, or REPLY/NEED_REPLY where they do not belong. */
	VHU_EFLAGS = 4103,
	/** InvalidMessage: request code unknown on this channel. */
	VHU_EREQUEST = 4104,
	/** InvalidMessage: size field does not match the request's body layout. */
	VHU_EBODYSIZE = 4105,
	/** InvalidMessage: body contents fail validation (overflow, alignment, range). */
	VHU_EBODY = 4106,
	/** IncorrectFds: more fds arrived than the control buffer holds (MSG_CTRUNC). */
	VHU_ECTRUNC = 4107,
	/** Backpressure: the connection's send queue is full; nothing was queued. */
	VHU_EQFULL = 4108,
	/** A reply does not answer the request that was sent (code or flags). */
	VHU_EREPLY = 4109,
	/** IncorrectFds: an fd is not the kind of file its request needs. */
	VHU_EFDKIND = 4110,
	/**
	 * GuestMemory: a guest-supplied (address, length) lies outside every
	 * memory region, straddles two regions, or wraps.
	 */
	VHU_EGUESTADDR = 4111,
	/**
	 * GuestMemory: a memory region is refused: it overlaps a mapped one,
	 * its file is smaller than the region, or (REM_MEM_REG) it matches no
	 * mapped region.
	 */
	VHU_EMEMREGION = 4112,
	/** GuestMemory: every memory slot (VHU_MEM_MAX_SLOTS) is in use. */
	VHU_EMEMSLOTS = 4113,
	/** VirtqueueBroken: queue size is not a power of two in 1..32768. */
	VHU_EVQSIZE = 4114,
	/**
	 * VirtqueueBroken: a ring (descriptor table, avail or used ring) is not
	 * inside one memory region, or is misaligned once mapped.
	 */
	VHU_EVQRING = 4115,
	/**
	 * VirtqueueBroken: the avail index moved by more than the queue size,
	 * or more requests are in flight than the queue holds.
	 */
	VHU_EVQIDX = 4116,
	/** VirtqueueBroken: a descriptor index (head or next) is outside its table. */
	VHU_EVQDESC = 4117,
	/** VirtqueueBroken: a descriptor chain loops, or is longer than its table. */
	VHU_EVQLOOP = 4118,
	/**
	 * VirtqueueBroken: a bad indirect descriptor: not negotiated, nested,
	 * combined with NEXT, empty, or a length that is not a whole number of
	 * descriptors (or above 32768 of them).
	 */
	VHU_EVQINDIRECT = 4119,
	/** VirtqueueBroken: a device-readable descriptor after a device-writable one. */
	VHU_EVQORDER = 4120,
	/** VirtqueueBroken: a chain has more buffers than the caller's iovec array holds. */
	VHU_EVQSEGS = 4121,
	/**
	 * DeviceBroken (driver side): a used element names a request that was
	 * never issued or is not in flight.
	 */
	VHU_EUSEDID = 4122,
	/** DeviceBroken: a used length above the request's device-writable bytes. */
	VHU_EUSEDLEN = 4123,
	/** DeviceBroken: the used index moved by more than the queue size. */
	VHU_EUSEDIDX = 4124,
	/** DeviceBroken: a virtio-blk status byte other than OK, IOERR or UNSUPP. */
	VHU_EBLKSTATUS = 4125,
	/**
	 * VirtqueueBroken: an inflight region (<vhu/inflight.h>) the front-end
	 * handed over is refused: smaller than its queues need, laid out for
	 * another queue size, or its records are inconsistent (a flag other
	 * than 0/1, a head outside the queue, repeated or exhausted counters,
	 * a used index that disagrees with the ring's).
	 */
	VHU_EINFLIGHT = 4126,
	/**
	 * GuestMemory: a memory region's file shrank under its mapping (the
	 * front-end truncated it); the SIGBUS guard (vhu_mem_sigbus_guard)
	 * replaced the mapping with zero pages. The device is to be closed.
	 */
	VHU_EMEMLOST = 4127,
	VHU_ERROR_END,
};

/**
 * Describe an error code.
 *
 * \param err  a vhu return value (negative) or its absolute value.
 * \return a static, human-readable string; never NULL. vhu codes get their
 *         protocol name ("PartialMessage: ..."); other values get strerror().
 */
const char *vhu_strerror(int err);

/**
 * Short symbolic name of an error code ("VHU_EPARTIAL", "EPIPE", ...).
 * \return a static string; "E?" for values it does not know.
 */
const char *vhu_errname(int err);

/** \return true if err (negative or positive) is InvalidMessage or one of its refinements. */
bool vhu_err_is_invalid_message(int err);

/** \return true if err is IncorrectFds or one of its refinements. */
bool vhu_err_is_incorrect_fds(int err);

/**
 * \return true if err is a guest fault: GuestMemory (VHU_EGUESTADDR) met
 *         while walking a ring, a region lost under its mapping
 *         (VHU_EMEMLOST), or any VirtqueueBroken code (VHU_EVQ*).
 *         A queue that returned one is broken until it is reset.
 */
bool vhu_err_is_guest_fault(int err);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
