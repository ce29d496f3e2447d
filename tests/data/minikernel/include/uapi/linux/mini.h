/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* The stand-in tree's one uapi header: `make headers` exports it to
 * $(O)/usr/include/linux/mini.h, and the mini kselftest builds against
 * that copy (as test_cachestat needs the tree's <linux/mman.h>). */
#ifndef _UAPI_LINUX_MINI_H
#define _UAPI_LINUX_MINI_H

#define MINI_MAGIC 0x4d494e49

#endif
