/* SPDX-License-Identifier: MIT */
/*
 * vhu-probe's parts: options.c (command line), exchange.c (one request and
 * its reply over the endpoint, with the round-trip samples and the fault
 * record), negotiate.c (the requests a VMM's device initialisation makes),
 * names.c (virtio names: feature bits, status bits, the virtio-blk config
 * layout), report_text.c and report_json.c (the two report formats),
 * fault.c (exit status and the error on stderr), main.c.
 */
#ifndef VHU_PROBE_H
#define VHU_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <vhu/vhu.h>

#include "common/exit.h"

#define BIT(n)			(1ull << (n))

#define DEFAULT_TIMEOUT_MS	2000
#define MAX_TIMEOUT_MS		3600000
#define DEFAULT_CONFIG_SIZE	256u
/* virtio-blk config space up to write_zeroes_may_unmap and its padding (QEMU's size). */
#define BLK_CONFIG_SIZE		60u
#define SECTOR_SIZE		512u
/* GET_FEATURES .. GET_STATUS with one GET_CONFIG retry: 8; some slack. */
#define MAX_SAMPLES		12

/* Exit status: the tools' shared codes (common/exit.h); documented in usage() and vhu-probe.1. */
enum status {
	ST_OK = TOOL_EXIT_OK,
	ST_FAIL = TOOL_EXIT_FAILURE,
	ST_USAGE = TOOL_EXIT_USAGE,
	ST_CONNECT = TOOL_EXIT_CONNECT,
	ST_CLOSED = TOOL_EXIT_CLOSED,
	ST_PROTOCOL = TOOL_EXIT_PROTOCOL,
	ST_TIMEOUT = TOOL_EXIT_TIMEOUT,
};

enum device {
	DEV_NONE = 0,
	DEV_BLK,
};

struct options {
	const char *socket;
	int timeout_ms;
	uint32_t config_size;
	enum device device;
	bool json;
};

/* One request's round trip; replied is false when nothing was due back. */
struct sample {
	uint32_t request;
	bool replied;
	uint64_t usec;
};

/* Everything learnt from the back-end; each have_* says whether it was asked and answered. */
struct report {
	bool have_features;
	uint64_t features;
	bool have_protocol;
	uint64_t protocol;
	bool have_acked;
	uint64_t acked;
	bool have_queues;
	uint64_t queues;
	bool have_slots;
	uint64_t slots;
	uint32_t refused[2];	/* GET_CONFIG sizes answered with an empty config */
	unsigned int nrefused;
	bool have_config;
	uint32_t config_size;
	uint8_t config[VHU_CONFIG_MAX_PAYLOAD];
	bool have_status;
	uint64_t status;
	struct sample samples[MAX_SAMPLES];
	unsigned int nsamples;
};

/* Why the probe stopped early. */
struct fault {
	int err;		/* negative errno or vhu code */
	uint32_t request;	/* the request in flight; VHU_REQ_NONE while connecting */
	bool have_msg;
	struct vhu_hdr msg;	/* header of the offending message */
	char detail[160];
};

struct probe {
	const struct options *opt;
	struct vhu_endpoint *ep;
	struct report rep;
	struct fault fault;
};

/* Reply bodies are read into this; large enough for any size vhu_hdr_check lets through. */
union reply_buf {
	uint64_t u64;
	uint8_t bytes[VHU_DEFAULT_MAX_SIZE];
};

/* options.c */
void probe_usage(FILE *out);
/* \return -1 to run, or the exit status (after --help or a usage error). */
int probe_parse_options(int argc, char **argv, struct options *o);

/* exchange.c */
/* Record the fault; \return err. msg is the offending message's header, or NULL. */
int probe_fail(struct probe *p, int err, uint32_t request, const struct vhu_hdr *msg);
/*
 * Send one request and, when want_reply, receive and validate its answer
 * into r, within one deadline (the endpoint's timeout). \return the
 * reply's body length (0 when no reply was due), or a negative error with
 * p->fault set.
 */
int probe_transact(struct probe *p, uint32_t request, bool need_reply, const void *body,
		   uint32_t len, bool want_reply, union reply_buf *r);

/* negotiate.c: the whole sequence. \return 0 or the error that stopped it. */
int probe_negotiate(struct probe *p);

/* names.c */
const char *probe_bit_name(bool protocol, enum device dev, unsigned int bit, char *buf,
			   size_t len);

/* Device status bits (virtio 1.2, 2.1). */
struct status_name {
	uint8_t bit;
	const char *name;
};
extern const struct status_name probe_status_names[];
extern const size_t probe_nstatus_names;

/* virtio-blk config space fields (virtio 1.2, 5.2.4), in offset order. */
enum blk_kind {
	BLK_NUM = 0,
	BLK_CAPACITY,	/* u64 sectors, shown in bytes too */
	BLK_GEOMETRY,	/* u16 cylinders, u8 heads, u8 sectors */
};

struct blk_field {
	const char *name;
	uint8_t off;
	uint8_t width;
	uint8_t kind;
};
extern const struct blk_field probe_blk_fields[];
extern const size_t probe_nblk_fields;

/* Whether the config read holds the field at off, and its value (little-endian). */
bool probe_cfg_has(const struct report *rep, unsigned int off, unsigned int width);
uint64_t probe_cfg_read(const struct report *rep, unsigned int off, unsigned int width);

/* report_text.c, report_json.c */
void probe_text_report(const struct options *o, const struct report *rep);
void probe_json_report(const struct options *o, const struct report *rep,
		       const struct fault *f, enum status st);

/* fault.c */
enum status probe_status_of(int err);
const char *probe_fault_text(const struct fault *f);
void probe_print_fault(const struct options *o, const struct fault *f, enum status st);

#endif
