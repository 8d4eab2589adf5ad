/* SPDX-License-Identifier: MIT */
/**
 * \file
 * Everything of libvhu's blocking layer: wire format, errors, iovec cursor,
 * fd passing, endpoint and listener, the version (vhu_version()), and the
 * transport-free device layer (guest memory, split virtqueues, inflight tracking). The io_uring
 * engine is <vhu/uring.h>.
 */
#ifndef VHU_VHU_H
#define VHU_VHU_H

#include <vhu/blkdrv.h>
#include <vhu/endpoint.h>
#include <vhu/error.h>
#include <vhu/fds.h>
#include <vhu/guest_mem.h>
#include <vhu/inflight.h>
#include <vhu/iov.h>
#include <vhu/listener.h>
#include <vhu/version.h>
#include <vhu/virtq.h>
#include <vhu/vq.h>
#include <vhu/vq_driver.h>
#include <vhu/wire.h>

#endif
