/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of the configuration module's value parsers (parse.c) that the
 * flag table needs too; the parsers other modules use are in conf.h.
 */
#ifndef KUPROXY_CONF_PARSE_H
#define KUPROXY_CONF_PARSE_H

#include <stddef.h>
#include <stdint.h>

int	conf_parse_uint(const char *s, size_t len, unsigned long max,
	    unsigned long *out);
void	conf_format_duration(uint32_t ms, char *buf, size_t len);

#endif
