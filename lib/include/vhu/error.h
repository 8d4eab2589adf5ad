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
 * IncorrectFds so that a log line names the exact fault.
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

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
