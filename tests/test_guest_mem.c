/* SPDX-License-Identifier: MIT */
/*
 * Guest memory: region tables from SET_MEM_TABLE and ADD/REM_MEM_REG,
 * translation bounded by one region, deferred unmapping, and nothing left
 * behind (fds by the suite fixture, mappings by counting /proc/self/maps).
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "fake_guest.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vhu/error.h>
#include <vhu/guest_mem.h>

TestSuite(guest_mem, .init = t_setup, .fini = t_teardown);

#define KiB	1024ull
#define MiB	(1024ull * 1024ull)

/*
 * Four regions: a gap between 0 and 1, region 3 adjacent to region 1 (a
 * range across their border straddles two regions), region 2 above 4 GiB;
 * regions 1 and 3 start at memfd offsets that are not page-aligned.
 */
static const struct fg_layout layout4[] = {
	{ .gpa = 0, .size = 1 * MiB, .mmap_offset = 0 },
	{ .gpa = 2 * MiB, .size = 1 * MiB, .mmap_offset = 0x1800 },
	{ .gpa = 0x100000000ull, .size = 256 * KiB, .mmap_offset = 64 * KiB },
	{ .gpa = 3 * MiB, .size = 64 * KiB, .mmap_offset = 0x10 },
};

static struct vhu_mem *
mem_with_table(struct fake_guest *g)
{
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS];
	struct vhu_mem *m;

	cr_assert_eq(vhu_mem_create(&m), 0);
	cr_assert_eq(fg_mem_table(g, &t, fds), 0);
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, g->n), 0);
	cr_assert_eq(vhu_mem_nregions(m), g->n);
	return m;
}

Test(guest_mem, translation_stays_inside_one_region)
{
	int maps = fg_map_count();
	struct fake_guest g;
	struct vhu_mem *m;
	uint8_t *p;

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	m = mem_with_table(&g);
	/* What the driver writes, the device reads at the same gpa, and the other way. */
	for (unsigned int i = 0; i < g.n; i++) {
		uint64_t first = g.r[i].gpa, last = g.r[i].gpa + g.r[i].size - 1;

		*(uint8_t *)fg_ptr(&g, first, 1) = (uint8_t)(0xa0 + i);
		*(uint8_t *)fg_ptr(&g, last, 1) = (uint8_t)(0xb0 + i);
		p = vhu_mem_gpa(m, first, g.r[i].size);
		cr_assert_not_null(p, "region %u whole", i);
		cr_assert_eq(p[0], 0xa0 + i);
		cr_assert_eq(p[g.r[i].size - 1], 0xb0 + i);
		p = vhu_mem_gpa(m, last, 1);
		cr_assert_not_null(p);
		cr_assert_eq(*p, 0xb0 + i);
		*p = 0x5a;
		cr_assert_eq(*(uint8_t *)fg_ptr(&g, last, 1), 0x5a);
		/* The front-end's virtual addresses give the same bytes. */
		cr_assert_eq(vhu_mem_uva(m, g.r[i].uva, g.r[i].size), vhu_mem_gpa(m, first, 1));
		cr_assert_eq(vhu_mem_uva(m, g.r[i].uva + g.r[i].size - 1, 1), p);
		cr_assert_null(vhu_mem_uva(m, g.r[i].uva, g.r[i].size + 1));
		cr_assert_null(vhu_mem_uva(m, g.r[i].uva - 1, 1));
		/* One byte past the end, or one byte too long. */
		cr_assert_null(vhu_mem_gpa(m, first, g.r[i].size + 1));
		cr_assert_null(vhu_mem_gpa(m, last, 2));
		/* len 0 needs the address inside. */
		cr_assert_not_null(vhu_mem_gpa(m, first, 0));
	}
	/* Gaps. */
	cr_assert_null(vhu_mem_gpa(m, 1 * MiB, 1));
	cr_assert_null(vhu_mem_gpa(m, 1 * MiB + 4096, 16));
	cr_assert_null(vhu_mem_gpa(m, 3 * MiB + 64 * KiB, 1));
	cr_assert_null(vhu_mem_gpa(m, 0xffffffffull, 1));
	cr_assert_null(vhu_mem_gpa(m, 0x100000000ull + 256 * KiB, 1));
	/* Straddling the adjacent regions 1 and 3: refused though every byte is guest RAM. */
	cr_assert_not_null(vhu_mem_gpa(m, 3 * MiB - 8, 8));
	cr_assert_not_null(vhu_mem_gpa(m, 3 * MiB, 8));
	cr_assert_null(vhu_mem_gpa(m, 3 * MiB - 8, 16));
	/* Straddling a gap, wrapping, absurd lengths. */
	cr_assert_null(vhu_mem_gpa(m, 1 * MiB - 1, 2));
	cr_assert_null(vhu_mem_gpa(m, UINT64_MAX, 1));
	cr_assert_null(vhu_mem_gpa(m, UINT64_MAX - 3, 16));
	cr_assert_null(vhu_mem_gpa(m, 16, UINT64_MAX));
	cr_assert_null(vhu_mem_gpa(m, 0x100000000ull + 16, UINT64_MAX - 8));
	cr_assert_null(vhu_mem_uva(m, UINT64_MAX - 3, 16));
	/* The last-hit cache does not answer for a different region. */
	cr_assert_not_null(vhu_mem_gpa(m, 2 * MiB, 1));
	cr_assert_null(vhu_mem_gpa(m, 2 * MiB - 1, 1));

	vhu_mem_destroy(m);
	fg_fini(&g);
	cr_assert_eq(fg_map_count(), maps, "mappings left behind");
}

Test(guest_mem, unaligned_mmap_offset_is_honoured)
{
	struct fake_guest g;
	struct vhu_mem *m;
	const char *msg = "offset 0x1800 into the memfd";

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	/* The bytes at memfd offset 0x1800 are guest address 2 MiB. */
	cr_assert_eq(pwrite(g.r[1].fd, msg, strlen(msg), 0x1800), (ssize_t)strlen(msg));
	cr_assert_eq(pwrite(g.r[3].fd, "x", 1, 0x10 + 100), 1);
	m = mem_with_table(&g);
	cr_assert_eq(memcmp(vhu_mem_gpa(m, 2 * MiB, strlen(msg)), msg, strlen(msg)), 0);
	cr_assert_eq(*(char *)vhu_mem_gpa(m, 3 * MiB + 100, 1), 'x');
	vhu_mem_destroy(m);
	fg_fini(&g);
}

Test(guest_mem, reset_and_destroy_leave_nothing)
{
	int maps = fg_map_count();
	struct fake_guest g;
	struct vhu_mem *m;
	int fds;

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	fds = t_fd_count();
	m = mem_with_table(&g);
	cr_assert_eq(t_fd_count(), fds + 4, "the table keeps one fd per region");
	cr_assert_eq(vhu_mem_reset(m), 0);
	cr_assert_eq(vhu_mem_nregions(m), 0);
	cr_assert_eq(t_fd_count(), fds);
	cr_assert_null(vhu_mem_gpa(m, 0, 1));
	cr_assert_eq(vhu_mem_reset(m), 0, "reset of an empty table");
	vhu_mem_destroy(m);
	m = mem_with_table(&g);
	vhu_mem_destroy(m);
	cr_assert_eq(t_fd_count(), fds);
	vhu_mem_destroy(NULL);
	fg_fini(&g);
	cr_assert_eq(fg_map_count(), maps, "mappings left behind");
}

Test(guest_mem, new_table_replaces_the_old)
{
	int maps = fg_map_count();
	struct fake_guest g;
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS];
	struct vhu_mem *m;
	uint64_t gen;

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	m = mem_with_table(&g);
	gen = vhu_mem_generation(m);
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.nregions = 2;
	close(fds[2]);
	close(fds[3]);
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 2), 0);
	cr_assert_eq(vhu_mem_nregions(m), 2);
	cr_assert_neq(vhu_mem_generation(m), gen);
	cr_assert_null(vhu_mem_gpa(m, 3 * MiB, 1));
	cr_assert_not_null(vhu_mem_gpa(m, 2 * MiB, 1));
	vhu_mem_destroy(m);
	fg_fini(&g);
	cr_assert_eq(fg_map_count(), maps);
}

Test(guest_mem, failed_table_keeps_the_old_and_closes_the_new_fds)
{
	int maps = fg_map_count();
	struct fake_guest g;
	struct vhu_mem_table t;
	int fds[VHU_MAX_MEM_REGIONS];
	struct vhu_mem *m;
	int before;

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	m = mem_with_table(&g);
	before = t_fd_count();

	/* Overlapping regions (the wire check would refuse them too; this is the library's own). */
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.regions[3].guest_phys_addr = 2 * MiB + 4096;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -VHU_EMEMREGION);
	cr_assert_eq(t_fd_count(), before);

	/* A region larger than its file. */
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.regions[2].size = 1 * MiB;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -VHU_EMEMREGION);
	cr_assert_eq(t_fd_count(), before);

	/* Size 0; an address range that wraps; an offset that wraps. */
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.regions[0].size = 0;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -VHU_EMEMREGION);
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.regions[2].guest_phys_addr = UINT64_MAX - 4095;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -VHU_EMEMREGION);
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.regions[1].user_addr = UINT64_MAX - 4095;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -VHU_EMEMREGION);
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	t.regions[1].mmap_offset = UINT64_MAX - 4095;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -VHU_EMEMREGION);
	cr_assert_eq(t_fd_count(), before);

	/* fd count not matching, an fd that is not open. */
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 3), -EINVAL);
	close(fds[3]);
	cr_assert_eq(fg_mem_table(&g, &t, fds), 0);
	close(fds[1]);
	fds[1] = -1;
	cr_assert_eq(vhu_mem_set_table(m, &t, fds, 4), -EBADF);
	cr_assert_eq(t_fd_count(), before);

	/* The old table is intact. */
	cr_assert_eq(vhu_mem_nregions(m), 4);
	for (unsigned int i = 0; i < 4; i++) {
		cr_assert_not_null(vhu_mem_gpa(m, g.r[i].gpa, g.r[i].size));
	}
	vhu_mem_destroy(m);
	fg_fini(&g);
	cr_assert_eq(fg_map_count(), maps);
}

/* A one-page memfd whose first bytes say which slot it is. */
static int
slot_fd(unsigned int i)
{
	int fd = memfd_create("slot", MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4096), 0);
	cr_assert_eq(pwrite(fd, &i, sizeof(i), 0), (ssize_t)sizeof(i));
	return fd;
}

/* Slot i lives at gpa (i * 3 + 1) pages: gaps between all of them. */
static struct vhu_mem_region
slot_region(unsigned int i)
{
	struct vhu_mem_region r = {
		.guest_phys_addr = (uint64_t)(i * 3u + 1u) * 4096u,
		.size = 4096,
		.user_addr = 0x600000000000ull + (uint64_t)i * 8192u,
		.mmap_offset = 0,
	};
	return r;
}

static void
check_slot(struct vhu_mem *m, unsigned int i, bool present)
{
	struct vhu_mem_region r = slot_region(i);
	unsigned int *p = vhu_mem_gpa(m, r.guest_phys_addr, 4096);

	if (!present) {
		cr_assert_null(p, "slot %u removed but still found", i);
		cr_assert_null(vhu_mem_gpa(m, r.guest_phys_addr + 100, 1));
		return;
	}
	cr_assert_not_null(p, "slot %u", i);
	cr_assert_eq(*p, i, "slot %u: wrong region (%u)", i, *p);
	cr_assert_eq(vhu_mem_gpa(m, r.guest_phys_addr + 4095, 1), (uint8_t *)p + 4095);
	cr_assert_null(vhu_mem_gpa(m, r.guest_phys_addr + 4095, 2));
	cr_assert_null(vhu_mem_gpa(m, r.guest_phys_addr - 1, 1));
	cr_assert_eq(vhu_mem_uva(m, r.user_addr + 8, 8), (uint8_t *)p + 8);
}

Test(guest_mem, add_and_remove_509_regions)
{
	int maps = fg_map_count();
	int fds = t_fd_count();
	struct vhu_mem *m;
	unsigned int i, order[VHU_MEM_MAX_SLOTS];

	cr_assert_eq(VHU_MEM_MAX_SLOTS, 509);
	cr_assert_eq(vhu_mem_create(&m), 0);
	/* Insert in a scrambled order (509 is prime, 200 a unit mod 509). */
	for (i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
		order[i] = (i * 200u) % VHU_MEM_MAX_SLOTS;
	}
	for (i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
		struct vhu_mem_region r = slot_region(order[i]);

		cr_assert_eq(vhu_mem_add_region(m, &r, slot_fd(order[i])), 0, "add %u", order[i]);
	}
	cr_assert_eq(vhu_mem_nregions(m), VHU_MEM_MAX_SLOTS);
	cr_assert_eq(t_fd_count(), fds + (int)VHU_MEM_MAX_SLOTS);
	/* Slot 510: refused, its fd closed. */
	{
		struct vhu_mem_region r = slot_region(VHU_MEM_MAX_SLOTS);

		cr_assert_eq(vhu_mem_add_region(m, &r, slot_fd(VHU_MEM_MAX_SLOTS)),
			     -VHU_EMEMSLOTS);
		cr_assert_eq(t_fd_count(), fds + (int)VHU_MEM_MAX_SLOTS);
	}
	for (i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
		check_slot(m, i, true);
	}
	/* The gaps between slots. */
	cr_assert_null(vhu_mem_gpa(m, 0, 1));
	cr_assert_null(vhu_mem_gpa(m, 2 * 4096, 1));
	cr_assert_null(vhu_mem_gpa(m, (uint64_t)(VHU_MEM_MAX_SLOTS * 3u + 1u) * 4096u, 1));
	/* Remove every odd slot, in descending order. */
	for (i = VHU_MEM_MAX_SLOTS; i-- > 0;) {
		if (i % 2 == 1) {
			struct vhu_mem_region r = slot_region(i);

			cr_assert_eq(vhu_mem_remove_region(m, &r), 0, "remove %u", i);
		}
	}
	cr_assert_eq(vhu_mem_nregions(m), (VHU_MEM_MAX_SLOTS + 1) / 2);
	cr_assert_eq(vhu_mem_deferred(m), 0, "nothing held: unmapped at once");
	cr_assert_eq(t_fd_count(), fds + (int)(VHU_MEM_MAX_SLOTS + 1) / 2);
	for (i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
		check_slot(m, i, i % 2 == 0);
	}
	/* Removing again, or a region that never was: refused. */
	{
		struct vhu_mem_region r = slot_region(1);

		cr_assert_eq(vhu_mem_remove_region(m, &r), -VHU_EMEMREGION);
		r = slot_region(2);
		r.size = 8192;
		cr_assert_eq(vhu_mem_remove_region(m, &r), -VHU_EMEMREGION, "size differs");
		r = slot_region(2);
		r.user_addr += 4096;
		cr_assert_eq(vhu_mem_remove_region(m, &r), -VHU_EMEMREGION, "user_addr differs");
		r = slot_region(2);
		r.guest_phys_addr += 4096;
		cr_assert_eq(vhu_mem_remove_region(m, &r), -VHU_EMEMREGION, "in a gap");
	}
	/* Re-add the odd ones: the table stays sorted. */
	for (i = 1; i < VHU_MEM_MAX_SLOTS; i += 2) {
		struct vhu_mem_region r = slot_region(i);

		cr_assert_eq(vhu_mem_add_region(m, &r, slot_fd(i)), 0);
	}
	for (i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
		check_slot(m, i, true);
	}
	for (i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
		struct vhu_mem_region r = slot_region(i);

		cr_assert_eq(vhu_mem_remove_region(m, &r), 0);
	}
	cr_assert_eq(vhu_mem_nregions(m), 0);
	cr_assert_eq(t_fd_count(), fds);
	vhu_mem_destroy(m);
	cr_assert_eq(fg_map_count(), maps, "mappings left behind");
}

Test(guest_mem, add_refuses_overlap_and_short_files)
{
	struct vhu_mem *m;
	int fds = t_fd_count();
	struct vhu_mem_region r = slot_region(10), o;

	cr_assert_eq(vhu_mem_create(&m), 0);
	cr_assert_eq(vhu_mem_add_region(m, &r, slot_fd(10)), 0);
	o = r;
	cr_assert_eq(vhu_mem_add_region(m, &o, slot_fd(11)), -VHU_EMEMREGION, "identical");
	o.guest_phys_addr = r.guest_phys_addr - 4095;
	cr_assert_eq(vhu_mem_add_region(m, &o, slot_fd(11)), -VHU_EMEMREGION, "tail overlaps");
	o.guest_phys_addr = r.guest_phys_addr + 4095;
	cr_assert_eq(vhu_mem_add_region(m, &o, slot_fd(11)), -VHU_EMEMREGION, "head overlaps");
	o = slot_region(9);
	o.size = 3 * 4096 + 1;
	cr_assert_eq(vhu_mem_add_region(m, &o, slot_fd(9)), -VHU_EMEMREGION, "file too small");
	o = slot_region(9);
	o.mmap_offset = 1;
	cr_assert_eq(vhu_mem_add_region(m, &o, slot_fd(9)), -VHU_EMEMREGION,
		     "offset + size beyond the file");
	o = slot_region(9);
	cr_assert_eq(vhu_mem_add_region(m, &o, -1), -EBADF);
	/* Adjacent is fine. */
	o.guest_phys_addr = r.guest_phys_addr + 4096;
	cr_assert_eq(vhu_mem_add_region(m, &o, slot_fd(9)), 0);
	cr_assert_eq(vhu_mem_nregions(m), 2);
	cr_assert_eq(t_fd_count(), fds + 2);
	vhu_mem_destroy(m);
	cr_assert_eq(t_fd_count(), fds);
}

Test(guest_mem, removal_is_deferred_while_an_epoch_is_held)
{
	int maps = fg_map_count();
	struct fake_guest g;
	struct vhu_mem_region r0, r1;
	struct vhu_mem_epoch *e1, *e2;
	struct vhu_mem *m;
	volatile uint8_t *p0, *p1;
	int fds;

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	fds = t_fd_count();
	m = mem_with_table(&g);
	r0 = fg_region_desc(&g, 0);
	r1 = fg_region_desc(&g, 1);
	p0 = vhu_mem_gpa(m, 4096, 1);
	p1 = vhu_mem_gpa(m, 2 * MiB, 1);

	/* A request holds e1 and points into regions 0 and 1. */
	e1 = vhu_mem_hold(m);
	cr_assert_eq(vhu_mem_remove_region(m, &r0), 0);
	cr_assert_null(vhu_mem_gpa(m, 4096, 1), "gone from the table at once");
	cr_assert_eq(vhu_mem_deferred(m), 1);
	cr_assert_eq(t_fd_count(), fds + 4, "fd kept while held");
	*p0 = 1;	/* still mapped */

	/* A later request holds e2; region 1 goes too. */
	e2 = vhu_mem_hold(m);
	cr_assert_neq(e1, e2);
	cr_assert_eq(vhu_mem_remove_region(m, &r1), 0);
	cr_assert_eq(vhu_mem_deferred(m), 2);
	/* e2 done first: the older e1 may still point into region 1. */
	vhu_mem_release(m, e2);
	cr_assert_eq(vhu_mem_deferred(m), 2);
	*p1 = 1;
	vhu_mem_release(m, e1);
	cr_assert_eq(vhu_mem_deferred(m), 0);
	cr_assert_eq(t_fd_count(), fds + 2);

	/* An epoch held before a reset pins every region the reset removes. */
	e1 = vhu_mem_hold(m);
	cr_assert_eq(vhu_mem_reset(m), 0);
	cr_assert_eq(vhu_mem_deferred(m), 2);
	cr_assert_eq(t_fd_count(), fds + 2);
	vhu_mem_release(m, e1);
	cr_assert_eq(vhu_mem_deferred(m), 0);
	cr_assert_eq(t_fd_count(), fds);
	vhu_mem_release(m, NULL);

	/* destroy unmaps what is still deferred. */
	vhu_mem_destroy(m);
	m = mem_with_table(&g);
	e1 = vhu_mem_hold(m);
	cr_assert_eq(vhu_mem_reset(m), 0);
	cr_assert_eq(vhu_mem_deferred(m), 4);
	vhu_mem_destroy(m);
	cr_assert_eq(t_fd_count(), fds);
	fg_fini(&g);
	cr_assert_eq(fg_map_count(), maps, "mappings left behind");
}

Test(guest_mem, adding_does_not_change_the_generation)
{
	struct vhu_mem *m;
	struct vhu_mem_region r = slot_region(1);
	uint64_t gen;

	cr_assert_eq(vhu_mem_create(&m), 0);
	gen = vhu_mem_generation(m);
	cr_assert_eq(vhu_mem_add_region(m, &r, slot_fd(1)), 0);
	cr_assert_eq(vhu_mem_generation(m), gen);
	cr_assert_eq(vhu_mem_remove_region(m, &r), 0);
	cr_assert_neq(vhu_mem_generation(m), gen);
	vhu_mem_destroy(m);
}

/*
 * The SIGBUS guard: a front-end shrinks a region's file under the mapping.
 * Each Criterion test runs in its own process, so each installs the guard.
 */
Test(guest_mem, shrunk_region_is_lost_by_name_not_by_sigbus)
{
	int maps = fg_map_count();
	struct fake_guest g;
	struct vhu_mem *m;
	volatile uint8_t *p0, *p1;
	int fds;

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	cr_assert_eq(vhu_mem_sigbus_guard(), 0, "idempotent");
	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	fds = t_fd_count();
	m = mem_with_table(&g);
	p0 = vhu_mem_gpa(m, 4096, 8);
	p1 = vhu_mem_gpa(m, 2 * MiB, 8);
	cr_assert_not_null(p0);
	p0[0] = 7;
	p1[0] = 9;
	cr_assert_eq(vhu_mem_error(m), 0);

	/* The front-end truncates region 0's memfd (it never sealed it). */
	cr_assert_eq(ftruncate(g.r[0].fd, 0), 0);
	cr_assert_eq(p0[0], 0, "the access completes, on zeroes");
	p0[1] = 1;	/* and writes land in the replacement */
	cr_assert_eq(p0[1], 1);
	cr_assert_eq(vhu_mem_error(m), -VHU_EMEMLOST);
	cr_assert_null(vhu_mem_gpa(m, 4096, 1), "a lost region no longer translates");
	cr_assert_null(vhu_mem_uva(m, g.r[0].uva + 4096, 1));
	cr_assert_eq(p1[0], 9, "the other regions are untouched");
	cr_assert_not_null(vhu_mem_gpa(m, 2 * MiB, 1));
	cr_assert_str_eq(vhu_errname(vhu_mem_error(m)), "VHU_EMEMLOST");
	cr_assert(vhu_err_is_guest_fault(-VHU_EMEMLOST));

	/* The replacement goes as the mapping would have, with its fd. */
	vhu_mem_destroy(m);
	cr_assert_eq(t_fd_count(), fds);
	fg_fini(&g);
	cr_assert_eq(fg_map_count(), maps, "mappings left behind");
}

Test(guest_mem, region_lost_while_its_unmap_is_deferred)
{
	struct fake_guest g;
	struct vhu_mem_region r0;
	struct vhu_mem_epoch *e;
	struct vhu_mem *m;
	volatile uint8_t *p0;
	int fds;

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	fds = t_fd_count();
	m = mem_with_table(&g);
	r0 = fg_region_desc(&g, 0);
	p0 = vhu_mem_gpa(m, 4096, 1);
	e = vhu_mem_hold(m);
	cr_assert_eq(vhu_mem_remove_region(m, &r0), 0);
	cr_assert_eq(ftruncate(g.r[0].fd, 0), 0);
	cr_assert_eq(p0[0], 0, "a request in flight still points there: no SIGBUS");
	cr_assert_eq(vhu_mem_error(m), -VHU_EMEMLOST);
	vhu_mem_release(m, e);
	cr_assert_eq(vhu_mem_deferred(m), 0);
	vhu_mem_destroy(m);
	cr_assert_eq(t_fd_count(), fds);
	fg_fini(&g);
}

static volatile sig_atomic_t prev_ran;
static void *volatile prev_addr;

/* A handler of the application's, there before the guard: it repairs the page itself. */
static void
prev_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	prev_addr = si->si_addr;
	prev_ran++;
	mmap((void *)((uintptr_t)si->si_addr & ~(uintptr_t)4095), 4096, PROT_READ | PROT_WRITE,
	     MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

/* A one-page file mapping of our own (not guest memory), then its file truncated. */
static volatile uint8_t *
own_shrunk_page(int *fd)
{
	void *p;

	*fd = memfd_create("not-guest", MFD_CLOEXEC);
	cr_assert_geq(*fd, 0);
	cr_assert_eq(ftruncate(*fd, 4096), 0);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(ftruncate(*fd, 0), 0);
	return p;
}

Test(guest_mem, sigbus_outside_guest_memory_reaches_the_previous_handler)
{
	struct sigaction sa;
	struct fake_guest g;
	struct vhu_mem *m;
	volatile uint8_t *own, *p0;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = prev_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGBUS, &sa, NULL), 0);
	cr_assert_eq(vhu_mem_sigbus_guard(), 0);

	cr_assert_eq(fg_init(&g, layout4, 4), 0);
	m = mem_with_table(&g);
	own = own_shrunk_page(&fd);
	cr_assert_eq(own[8], 0);
	cr_assert_eq(prev_ran, 1, "not guest memory: the previous handler had it");
	cr_assert_eq(prev_addr, (void *)(own + 8));

	/* Guest memory is the guard's, and the previous handler never hears of it. */
	p0 = vhu_mem_gpa(m, 4096, 1);
	cr_assert_eq(ftruncate(g.r[0].fd, 0), 0);
	cr_assert_eq(p0[0], 0);
	cr_assert_eq(prev_ran, 1);
	cr_assert_eq(vhu_mem_error(m), -VHU_EMEMLOST);

	munmap((void *)own, 4096);
	close(fd);
	vhu_mem_destroy(m);
	fg_fini(&g);
}

/* No handler before the guard: a SIGBUS outside guest memory still kills. */
Test(guest_mem, sigbus_outside_guest_memory_still_kills, .signal = SIGBUS)
{
	struct sigaction sa;
	volatile uint8_t *own;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGBUS, &sa, NULL), 0);
	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	own = own_shrunk_page(&fd);
	(void)own[0];
	cr_assert_fail("the access to a shrunk file of our own returned");
}

/*
 * Threads (a reactor per thread) mapping, losing and unmapping regions at
 * once, while this thread keeps 300 regions registered (the registry's
 * slots come in chunks of 128: several chunks in use). Criterion asserts
 * stay on this thread: the others count what went wrong.
 */
#define CHURN_THREADS	4
#define CHURN_ROUNDS	200

static void *
churn(void *arg)
{
	uintptr_t wrong = 0;

	(void)arg;
	for (unsigned int k = 0; k < CHURN_ROUNDS; k++) {
		struct vhu_mem_region r = slot_region(k % 4);
		struct vhu_mem *m;
		volatile uint8_t *p;
		int fd = memfd_create("churn", MFD_CLOEXEC), keep;

		if (fd < 0 || ftruncate(fd, 4096) != 0 || (keep = dup(fd)) < 0 ||
		    vhu_mem_create(&m) != 0) {
			return (void *)(uintptr_t)-1;
		}
		if (vhu_mem_add_region(m, &r, fd) != 0 ||
		    (p = vhu_mem_gpa(m, r.guest_phys_addr, 4096)) == NULL) {
			wrong++;
		} else {
			p[100] = 1;
			wrong += ftruncate(keep, 0) != 0;
			wrong += p[100] != 0;	/* zero pages now */
			wrong += vhu_mem_error(m) != -VHU_EMEMLOST;
		}
		vhu_mem_destroy(m);
		close(keep);
	}
	return (void *)wrong;
}

Test(guest_mem, threads_lose_regions_at_once)
{
	pthread_t t[CHURN_THREADS];
	struct vhu_mem_region r;
	struct vhu_mem *m;
	volatile uint8_t *p;
	int fds = t_fd_count(), last = -1;

	cr_assert_eq(vhu_mem_sigbus_guard(), 0);
	cr_assert_eq(vhu_mem_create(&m), 0);
	for (unsigned int i = 0; i < 300; i++) {
		int fd = slot_fd(i);

		if (i == 299) {
			last = dup(fd);
		}
		r = slot_region(i);
		cr_assert_eq(vhu_mem_add_region(m, &r, fd), 0);
	}
	for (unsigned int i = 0; i < CHURN_THREADS; i++) {
		cr_assert_eq(pthread_create(&t[i], NULL, churn, NULL), 0);
	}
	for (unsigned int i = 0; i < CHURN_THREADS; i++) {
		void *wrong;

		cr_assert_eq(pthread_join(t[i], &wrong), 0);
		cr_assert_eq((uintptr_t)wrong, 0, "thread %u: %zu wrong", i, (size_t)(uintptr_t)wrong);
	}
	/* The last region added, in the newest chunk, is still guarded. */
	r = slot_region(299);
	p = vhu_mem_gpa(m, r.guest_phys_addr, 4096);
	cr_assert_eq(*(volatile unsigned int *)p, 299u);
	cr_assert_eq(ftruncate(last, 0), 0);
	cr_assert_eq(p[8], 0);
	cr_assert_eq(vhu_mem_error(m), -VHU_EMEMLOST);
	cr_assert_not_null(vhu_mem_gpa(m, slot_region(298).guest_phys_addr, 4096));
	vhu_mem_destroy(m);
	close(last);
	cr_assert_eq(t_fd_count(), fds);
}
