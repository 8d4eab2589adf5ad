/* SPDX-License-Identifier: MIT */
/*
 * Error strings. vhu codes carry the protocol name every vhost-user stack
 * uses for the fault, so a log line from vhu reads like one from crosvm or
 * rust-vmm; operating-system errors keep their libc description.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include <vhu/error.h>

struct code_text {
	const char *name;
	const char *text;
};

static const struct code_text vhu_codes[VHU_ERROR_END - VHU_ERROR_BASE] = {
	[VHU_EDISCONNECT - VHU_ERROR_BASE] = {
		"VHU_EDISCONNECT",
		"Disconnect: peer closed the connection",
	},
	[VHU_EPARTIAL - VHU_ERROR_BASE] = {
		"VHU_EPARTIAL",
		"PartialMessage: the connection ended or a transfer fell short inside a message",
	},
	[VHU_EINVALID - VHU_ERROR_BASE] = {
		"VHU_EINVALID",
		"InvalidMessage: the message is malformed",
	},
	[VHU_EFDS - VHU_ERROR_BASE] = {
		"VHU_EFDS",
		"IncorrectFds: wrong number of file descriptors for the request",
	},
	[VHU_EOVERSIZED - VHU_ERROR_BASE] = {
		"VHU_EOVERSIZED",
		"OversizedMsg: a size field exceeds the maximum or a length overflows",
	},
	[VHU_EVERSION - VHU_ERROR_BASE] = {
		"VHU_EVERSION",
		"InvalidMessage: header version is not 1",
	},
	[VHU_EFLAGS - VHU_ERROR_BASE] = {
		"VHU_EFLAGS",
		"InvalidMessage: reserved flag bits set, or REPLY/NEED_REPLY misplaced",
	},
	[VHU_EREQUEST - VHU_ERROR_BASE] = {
		"VHU_EREQUEST",
		"InvalidMessage: request code unknown on this channel",
	},
	[VHU_EBODYSIZE - VHU_ERROR_BASE] = {
		"VHU_EBODYSIZE",
		"InvalidMessage: size field does not match the request's body layout",
	},
	[VHU_EBODY - VHU_ERROR_BASE] = {
		"VHU_EBODY",
		"InvalidMessage: body contents fail validation",
	},
	[VHU_ECTRUNC - VHU_ERROR_BASE] = {
		"VHU_ECTRUNC",
		"IncorrectFds: more file descriptors arrived than the control buffer holds",
	},
	[VHU_EQFULL - VHU_ERROR_BASE] = {
		"VHU_EQFULL",
		"Backpressure: the connection's send queue is full",
	},
	[VHU_EREPLY - VHU_ERROR_BASE] = {
		"VHU_EREPLY",
		"InvalidMessage: the reply does not answer the request that was sent",
	},
	[VHU_EFDKIND - VHU_ERROR_BASE] = {
		"VHU_EFDKIND",
		"IncorrectFds: a file descriptor is not the kind of file its request needs",
	},
	[VHU_EGUESTADDR - VHU_ERROR_BASE] = {
		"VHU_EGUESTADDR",
		"GuestMemory: guest address outside every memory region (or straddling two)",
	},
	[VHU_EMEMREGION - VHU_ERROR_BASE] = {
		"VHU_EMEMREGION",
		"GuestMemory: memory region overlaps another, exceeds its file, or is unknown",
	},
	[VHU_EMEMSLOTS - VHU_ERROR_BASE] = {
		"VHU_EMEMSLOTS",
		"GuestMemory: every memory slot is in use",
	},
	[VHU_EVQSIZE - VHU_ERROR_BASE] = {
		"VHU_EVQSIZE",
		"VirtqueueBroken: queue size is not a power of two in 1..32768",
	},
	[VHU_EVQRING - VHU_ERROR_BASE] = {
		"VHU_EVQRING",
		"VirtqueueBroken: a ring is not inside one memory region, or is misaligned",
	},
	[VHU_EVQIDX - VHU_ERROR_BASE] = {
		"VHU_EVQIDX",
		"VirtqueueBroken: avail index moved by more than the queue size",
	},
	[VHU_EVQDESC - VHU_ERROR_BASE] = {
		"VHU_EVQDESC",
		"VirtqueueBroken: descriptor index outside its table",
	},
	[VHU_EVQLOOP - VHU_ERROR_BASE] = {
		"VHU_EVQLOOP",
		"VirtqueueBroken: descriptor chain loops or is longer than its table",
	},
	[VHU_EVQINDIRECT - VHU_ERROR_BASE] = {
		"VHU_EVQINDIRECT",
		"VirtqueueBroken: bad indirect descriptor (nested, empty, misaligned or not negotiated)",
	},
	[VHU_EVQORDER - VHU_ERROR_BASE] = {
		"VHU_EVQORDER",
		"VirtqueueBroken: device-readable descriptor after a device-writable one",
	},
	[VHU_EVQSEGS - VHU_ERROR_BASE] = {
		"VHU_EVQSEGS",
		"VirtqueueBroken: descriptor chain has more buffers than the iovec array holds",
	},
	[VHU_EUSEDID - VHU_ERROR_BASE] = {
		"VHU_EUSEDID",
		"DeviceBroken: used element names a request that was never issued",
	},
	[VHU_EUSEDLEN - VHU_ERROR_BASE] = {
		"VHU_EUSEDLEN",
		"DeviceBroken: used length larger than the request's writable buffers",
	},
	[VHU_EUSEDIDX - VHU_ERROR_BASE] = {
		"VHU_EUSEDIDX",
		"DeviceBroken: used index moved by more than the queue size",
	},
	[VHU_EBLKSTATUS - VHU_ERROR_BASE] = {
		"VHU_EBLKSTATUS",
		"DeviceBroken: virtio-blk status byte out of range",
	},
	[VHU_EINFLIGHT - VHU_ERROR_BASE] = {
		"VHU_EINFLIGHT",
		"VirtqueueBroken: inflight region refused (size, layout or inconsistent records)",
	},
	[VHU_EMEMLOST - VHU_ERROR_BASE] = {
		"VHU_EMEMLOST",
		"GuestMemory: a guest memory region shrank under its mapping "
		"(the front-end truncated it)",
	},
};

/* The errnos a socket layer actually meets; the rest print as "E?". */
static const char *const errno_names[] = {
	[EPERM] = "EPERM",
	[ENOENT] = "ENOENT",
	[EINTR] = "EINTR",
	[EIO] = "EIO",
	[ENXIO] = "ENXIO",
	[E2BIG] = "E2BIG",
	[EBADF] = "EBADF",
	[EAGAIN] = "EAGAIN",
	[ENOMEM] = "ENOMEM",
	[EACCES] = "EACCES",
	[EFAULT] = "EFAULT",
	[EBUSY] = "EBUSY",
	[EEXIST] = "EEXIST",
	[ENODEV] = "ENODEV",
	[ENOTDIR] = "ENOTDIR",
	[EINVAL] = "EINVAL",
	[ENFILE] = "ENFILE",
	[EMFILE] = "EMFILE",
	[ENOSPC] = "ENOSPC",
	[EPIPE] = "EPIPE",
	[ERANGE] = "ERANGE",
	[ENAMETOOLONG] = "ENAMETOOLONG",
	[ENOSYS] = "ENOSYS",
	[EPROTO] = "EPROTO",
	[EBADMSG] = "EBADMSG",
	[EOVERFLOW] = "EOVERFLOW",
	[ENOTSOCK] = "ENOTSOCK",
	[EDESTADDRREQ] = "EDESTADDRREQ",
	[EMSGSIZE] = "EMSGSIZE",
	[EPROTOTYPE] = "EPROTOTYPE",
	[EPROTONOSUPPORT] = "EPROTONOSUPPORT",
	[EOPNOTSUPP] = "EOPNOTSUPP",
	[EAFNOSUPPORT] = "EAFNOSUPPORT",
	[EADDRINUSE] = "EADDRINUSE",
	[EADDRNOTAVAIL] = "EADDRNOTAVAIL",
	[ENETDOWN] = "ENETDOWN",
	[ECONNABORTED] = "ECONNABORTED",
	[ECONNRESET] = "ECONNRESET",
	[ENOBUFS] = "ENOBUFS",
	[EISCONN] = "EISCONN",
	[ENOTCONN] = "ENOTCONN",
	[ESHUTDOWN] = "ESHUTDOWN",
	[ETIMEDOUT] = "ETIMEDOUT",
	[ECONNREFUSED] = "ECONNREFUSED",
	[EALREADY] = "EALREADY",
	[EINPROGRESS] = "EINPROGRESS",
	[ECANCELED] = "ECANCELED",
};

/* INT_MIN has no positive counterpart; it maps to a value nothing knows. */
static int
magnitude(int err)
{
	if (err == INT_MIN) {
		return 0x7fffffff;
	}
	return err < 0 ? -err : err;
}

static const struct code_text *
lookup(int code)
{
	const struct code_text *c;

	if (code <= VHU_ERROR_BASE || code >= VHU_ERROR_END) {
		return NULL;
	}
	c = &vhu_codes[code - VHU_ERROR_BASE];
	return c->name != NULL ? c : NULL;
}

const char *
vhu_strerror(int err)
{
	int code = magnitude(err);
	const struct code_text *c = lookup(code);
	const char *s;

	if (c != NULL) {
		return c->text;
	}
	if (code == VHU_ERETRY) {
		return "SocketRetry: the operation would block; try again";
	}
	/* strerror() may format into a shared buffer; the descriptions are static. */
	s = strerrordesc_np(code);
	return s != NULL ? s : "Unknown error";
}

const char *
vhu_errname(int err)
{
	int code = magnitude(err);
	const struct code_text *c = lookup(code);

	if (c != NULL) {
		return c->name;
	}
	if (code > 0 && (size_t)code < sizeof(errno_names) / sizeof(errno_names[0]) &&
	    errno_names[code] != NULL) {
		return errno_names[code];
	}
	return "E?";
}

bool
vhu_err_is_invalid_message(int err)
{
	switch (magnitude(err)) {
	case VHU_EINVALID:
	case VHU_EVERSION:
	case VHU_EFLAGS:
	case VHU_EREQUEST:
	case VHU_EBODYSIZE:
	case VHU_EBODY:
	case VHU_EREPLY:
		return true;
	default:
		return false;
	}
}

bool
vhu_err_is_guest_fault(int err)
{
	switch (magnitude(err)) {
	case VHU_EGUESTADDR:
	case VHU_EVQSIZE:
	case VHU_EVQRING:
	case VHU_EVQIDX:
	case VHU_EVQDESC:
	case VHU_EVQLOOP:
	case VHU_EVQINDIRECT:
	case VHU_EVQORDER:
	case VHU_EVQSEGS:
	case VHU_EINFLIGHT:
	case VHU_EMEMLOST:
		return true;
	default:
		return false;
	}
}

bool
vhu_err_is_incorrect_fds(int err)
{
	switch (magnitude(err)) {
	case VHU_EFDS:
	case VHU_ECTRUNC:
	case VHU_EFDKIND:
		return true;
	default:
		return false;
	}
}
