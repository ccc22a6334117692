/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Red-black trees and lists from libbsd.  libbsd's RB_GENERATE_STATIC
 * expands to `__unused static`, and glibc leaves __unused undefined (it
 * names a struct member in Linux headers), so define the static variant
 * here with the attribute spelled out.
 */
#ifndef KUPROXY_TREE_H
#define KUPROXY_TREE_H

#include <bsd/sys/queue.h>
#include <bsd/sys/tree.h>

#define KU_RB_GENERATE_STATIC(name, type, field, cmp)			\
	RB_GENERATE_INTERNAL(name, type, field, cmp,			\
	    __attribute__((__unused__)) static)

#endif
