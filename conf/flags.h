/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The interface between the flag table (flags.c) and the config file reader
 * (config_file.c).  The file is a second syntax for the same settings, so
 * every KubeProxyConfiguration field is applied through the row of the flag
 * that stands for it: one parser and one set of checks per setting.
 */
#ifndef KUPROXY_CONF_FLAGS_H
#define KUPROXY_CONF_FLAGS_H

#include <stddef.h>

#include "conf/conf.h"

/*
 * Apply value to c through the row of the flag named flag_name (without its
 * dashes).  Returns 0, or -1 with a message in err that quotes the value and
 * says what was expected but does not name the flag, so that the caller can
 * prefix "--flag: " or "FILE:LINE: field: ".  An unknown flag_name is a
 * programmer error (assert).
 */
int	flags_apply(struct conf *c, const char *flag_name, const char *value,
	    char *err, size_t errlen);

#endif
