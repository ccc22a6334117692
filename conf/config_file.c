/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The --config file: a KubeProxyConfiguration
 * (kubeproxy.config.k8s.io/v1alpha1) in YAML or JSON, read through
 * base/yamljson.h.  This module owns the table of known fields and what
 * each means here: most stand for a flag and are applied through that
 * flag's row in flags.c; fields of other proxy modes are accepted with a
 * warning; unknown fields are errors, as kube-proxy's strict decoding makes
 * them.  A `kuproxy:` block carries kuproxy's own settings.
 *
 * As kube-proxy's defaulting (v1alpha1/defaults.go) does, a zero value ("",
 * "0s", null) in a kube-proxy field keeps the default: kubeadm writes every
 * field, most of them zero.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "base/log.h"
#include "base/yamljson.h"
#include "conf/conf.h"
#include "conf/flags.h"

#define CONFIG_MAX_BYTES	(1024 * 1024)
#define CONFIG_API_VERSION	"kubeproxy.config.k8s.io/v1alpha1"
#define CONFIG_KIND		"KubeProxyConfiguration"

enum config_type {
	CONFIG_BLOCK = 0,	/* a mapping whose fields are listed too */
	CONFIG_STRING,
	CONFIG_DURATION,	/* a string in Go's duration syntax */
	CONFIG_STRINGS,		/* a list of strings */
	CONFIG_INT,
	CONFIG_BOOL,
	CONFIG_IGNORED,		/* anything, down to its leaves; warned */
	CONFIG_MODE,		/* must be kube-proxy's userspace mode */
	CONFIG_CHECK,		/* must equal the row's `expect` */
};

/* Zero keeps the default, as kube-proxy's defaulting does. */
#define CONFIG_F_ZERO_IS_DEFAULT	0x01

struct config_field {
	const char		*path;	/* dotted, kube-proxy's spelling */
	enum config_type	 type;
	const char		*flag;	/* the flag it stands for */
	int			 flags;	/* CONFIG_F_* */
	const char		*expect; /* CONFIG_CHECK: the one value */
};

#define KP(path, type, flag)	\
	{ path, type, flag, CONFIG_F_ZERO_IS_DEFAULT, NULL }
#define OWN(path, type, flag)	{ path, type, flag, 0, NULL }
#define BLOCK(path)		{ path, CONFIG_BLOCK, NULL, 0, NULL }
#define IGNORED(path)		{ path, CONFIG_IGNORED, NULL, 0, NULL }

static const struct config_field config_fields[] = {
	{ "apiVersion", CONFIG_CHECK, NULL, 0, CONFIG_API_VERSION },
	{ "kind", CONFIG_CHECK, NULL, 0, CONFIG_KIND },
	{ "mode", CONFIG_MODE, NULL, 0, NULL },

	KP("bindAddress", CONFIG_STRING, "bind-address"),
	KP("portRange", CONFIG_STRING, "proxy-port-range"),
	KP("hostnameOverride", CONFIG_STRING, "hostname-override"),
	KP("nodePortAddresses", CONFIG_STRINGS, "nodeport-addresses"),
	KP("udpIdleTimeout", CONFIG_DURATION, "udp-timeout"),
	KP("configSyncPeriod", CONFIG_DURATION, "config-sync-period"),
	KP("healthzBindAddress", CONFIG_STRING, "healthz-bind-address"),
	KP("metricsBindAddress", CONFIG_STRING, "metrics-bind-address"),
	BLOCK("clientConnection"),
	KP("clientConnection.kubeconfig", CONFIG_STRING, "kubeconfig"),
	BLOCK("iptables"),
	KP("iptables.syncPeriod", CONFIG_DURATION, "iptables-sync-period"),
	KP("iptables.minSyncPeriod", CONFIG_DURATION,
	    "iptables-min-sync-period"),
	BLOCK("logging"),
	KP("logging.format", CONFIG_STRING, "logging-format"),
	KP("logging.verbosity", CONFIG_INT, "v"),

	/* Settings of other proxy modes, or that kuproxy has no use for. */
	IGNORED("bindAddressHardFail"),
	IGNORED("clientConnection.acceptContentTypes"),
	IGNORED("clientConnection.contentType"),
	IGNORED("clientConnection.qps"),
	IGNORED("clientConnection.burst"),
	IGNORED("clusterCIDR"),
	IGNORED("conntrack"),
	IGNORED("detectLocal"),
	IGNORED("detectLocalMode"),
	IGNORED("enableProfiling"),
	IGNORED("featureGates"),
	IGNORED("iptables.localhostNodePorts"),
	IGNORED("iptables.masqueradeAll"),
	IGNORED("iptables.masqueradeBit"),
	IGNORED("ipvs"),
	IGNORED("logging.flushFrequency"),
	IGNORED("logging.options"),
	IGNORED("logging.vmodule"),
	IGNORED("nftables"),
	IGNORED("oomScoreAdj"),
	IGNORED("showHiddenMetricsForVersion"),
	IGNORED("winkernel"),

	/* kuproxy's own settings; kube-proxy would refuse this block. */
	BLOCK("kuproxy"),
	OWN("kuproxy.servicesFile", CONFIG_STRING, "services-file"),
	OWN("kuproxy.context", CONFIG_STRING, "context"),
	OWN("kuproxy.iptablesBackend", CONFIG_STRING, "iptables-backend"),
	OWN("kuproxy.externalIPAllow", CONFIG_STRINGS, "external-ip-allow"),
	OWN("kuproxy.udpMaxAssociations", CONFIG_INT, "udp-max-associations"),
	OWN("kuproxy.udpMaxAssociationsTotal", CONFIG_INT,
	    "udp-max-associations-total"),
	OWN("kuproxy.udpRejectPrivilegedSources", CONFIG_BOOL,
	    "udp-reject-privileged-sources"),
	OWN("kuproxy.tcpIdleTimeout", CONFIG_DURATION, "tcp-idle-timeout"),
	OWN("kuproxy.tcpHalfCloseTimeout", CONFIG_DURATION,
	    "tcp-half-close-timeout"),
	OWN("kuproxy.tcpKeepalive", CONFIG_DURATION, "tcp-keepalive"),
	OWN("kuproxy.maxConnections", CONFIG_INT, "max-connections"),
	OWN("kuproxy.relayMode", CONFIG_STRING, "relay-mode"),
	OWN("kuproxy.shutdownGracePeriod", CONFIG_DURATION,
	    "shutdown-grace-period"),
	OWN("kuproxy.statusSocket", CONFIG_STRING, "status-socket"),
};

/* What one load works on: the file name for messages, and the result. */
struct config_load {
	struct conf	*conf;
	const char	*path;
	char		*err;
	size_t		 errlen;
	char		 why[512];	/* the last flag's message */
};

static const struct config_field *
config_field_find(const char *path)
{
	size_t i;

	for (i = 0; i < sizeof(config_fields) / sizeof(config_fields[0]); i++)
		if (strcmp(config_fields[i].path, path) == 0)
			return &config_fields[i];
	return NULL;
}

/* The line to blame for val: its own, else its parent's; 0 if unknown. */
static int
config_line(json_object *val, json_object *parent)
{
	int line = val != NULL ? yamljson_line(val) : 0;

	return line > 0 ? line : yamljson_line(parent);
}

/* "FILE:LINE: " or, for JSON input that carries no lines, "FILE: ". */
static void
config_where(const struct config_load *ld, int line, char *buf, size_t len)
{
	if (line > 0)
		snprintf(buf, len, "%s:%d: ", ld->path, line);
	else
		snprintf(buf, len, "%s: ", ld->path);
}

static int
config_error(struct config_load *ld, int line, const char *field,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Write "FILE:LINE: field: message" to the load's err; returns -1. */
static int
config_error(struct config_load *ld, int line, const char *field,
    const char *fmt, ...)
{
	char	where[512], msg[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_where(ld, line, where, sizeof(where));
	if (field != NULL)
		snprintf(ld->err, ld->errlen, "%s%s: %s", where, field, msg);
	else
		snprintf(ld->err, ld->errlen, "%s%s", where, msg);
	return -1;
}

/* The value as JSON text for messages, cut short if long. */
static const char *
config_repr(json_object *val, char *buf, size_t len)
{
	const char *s = json_object_to_json_string_ext(val,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	if (strlen(s) >= len && len > 4)
		snprintf(buf, len, "%.*s...", (int)len - 4, s);
	else
		snprintf(buf, len, "%s", s);
	return buf;
}

/*
 * Whether a value leaves a setting as it was: what kubeadm writes for a
 * field it has nothing for (null, false, 0, "", "0", "0s", [], {}).
 */
static bool
config_is_zero(json_object *val)
{
	const char *s;

	switch (json_object_get_type(val)) {
	case json_type_null:
		return true;
	case json_type_boolean:
		return !json_object_get_boolean(val);
	case json_type_int:
		return json_object_get_int64(val) == 0;
	case json_type_double:
		return json_object_get_double(val) == 0;
	case json_type_string:
		s = json_object_get_string(val);
		return *s == '\0' || strcmp(s, "0") == 0 ||
		    strcmp(s, "0s") == 0;
	case json_type_array:
		return json_object_array_length(val) == 0;
	case json_type_object:
		return json_object_object_length(val) == 0;
	}
	return false;
}

/*
 * Warn once for each field under an ignored one that is set to something
 * other than zero (a mapping is walked down to its leaves, so that the
 * warning names the field that was set).
 */
static void
config_warn_ignored(struct config_load *ld, json_object *val,
    json_object *parent, const char *field)
{
	char where[512];

	if (json_object_is_type(val, json_type_object)) {
		json_object_object_foreach(val, key, child) {
			char sub[256];

			snprintf(sub, sizeof(sub), "%s.%s", field, key);
			config_warn_ignored(ld, child, val, sub);
		}
		return;
	}
	if (config_is_zero(val))
		return;
	config_where(ld, config_line(val, parent), where, sizeof(where));
	log_warnx("%s%s: accepted but has no effect in kuproxy", where, field);
}

/* The flag a field stands for; its message gets "FILE:LINE: field: ". */
static int
config_apply(struct config_load *ld, const struct config_field *fd,
    const char *value, int line)
{
	if (flags_apply(ld->conf, fd->flag, value, ld->why,
	    sizeof(ld->why)) == -1)
		return config_error(ld, line, fd->path, "%s", ld->why);
	return 0;
}

/*
 * The flag's message quotes the one item that is wrong: point *line at that
 * item rather than at the list.
 */
static void
config_blame_item(struct config_load *ld, json_object *list, int *line)
{
	char	quoted[160];
	size_t	i;

	for (i = 0; i < json_object_array_length(list); i++) {
		json_object *item = json_object_array_get_idx(list, i);

		snprintf(quoted, sizeof(quoted), "\"%s\"",
		    json_object_get_string(item));
		if (strstr(ld->why, quoted) != NULL) {
			*line = config_line(item, list);
			return;
		}
	}
}

/* A list of strings, applied as the comma-separated value of its flag. */
static int
config_apply_strings(struct config_load *ld, const struct config_field *fd,
    json_object *val, int line)
{
	char	 joined[4096], repr[64];
	size_t	 i, n = 0;

	if (!json_object_is_type(val, json_type_array))
		return config_error(ld, line, fd->path, "expected a list of "
		    "CIDRs, got %s", config_repr(val, repr, sizeof(repr)));
	joined[0] = '\0';
	for (i = 0; i < json_object_array_length(val); i++) {
		json_object *item = json_object_array_get_idx(val, i);

		if (!json_object_is_type(item, json_type_string))
			return config_error(ld, config_line(item, val),
			    fd->path, "expected a list of CIDRs, got %s in "
			    "it", config_repr(item, repr, sizeof(repr)));
		n += (size_t)snprintf(joined + n, n < sizeof(joined) ?
		    sizeof(joined) - n : 0, "%s%s", i > 0 ? "," : "",
		    json_object_get_string(item));
		if (n >= sizeof(joined))
			return config_error(ld, line, fd->path, "the list is "
			    "too long");
	}
	if (config_apply(ld, fd, joined, line) == 0)
		return 0;
	config_blame_item(ld, val, &line);
	return config_error(ld, line, fd->path, "%s", ld->why);
}

/*
 * Whether a kube-proxy field's value is the zero that its defaulting
 * replaces: "" for strings and lists, a zero duration ("0s", "0ms").
 */
static bool
config_keeps_default(const struct config_field *fd, json_object *val)
{
	uint32_t	ms;
	char		why[256];

	if (!(fd->flags & CONFIG_F_ZERO_IS_DEFAULT))
		return false;
	switch (json_object_get_type(val)) {
	case json_type_string:
		if (*json_object_get_string(val) == '\0')
			return true;
		return fd->type == CONFIG_DURATION &&
		    conf_parse_duration_ms(json_object_get_string(val), &ms,
		    why, sizeof(why)) == 0 && ms == 0;
	case json_type_array:
		return json_object_array_length(val) == 0;
	default:
		return false;
	}
}

/* Check one field's value and apply it; fd is the field's row. */
static int
config_field_value(struct config_load *ld, const struct config_field *fd,
    json_object *val, int line)
{
	char		 repr[64], num[32];
	const char	*s;

	if (val == NULL && fd->type != CONFIG_CHECK)
		return 0;
	if (config_keeps_default(fd, val))
		return 0;

	switch (fd->type) {
	case CONFIG_STRINGS:
		return config_apply_strings(ld, fd, val, line);
	case CONFIG_BOOL:
		if (!json_object_is_type(val, json_type_boolean))
			return config_error(ld, line, fd->path, "expected true "
			    "or false, got %s",
			    config_repr(val, repr, sizeof(repr)));
		return config_apply(ld, fd, json_object_get_boolean(val) ?
		    "true" : "false", line);
	case CONFIG_INT:
		if (!json_object_is_type(val, json_type_int))
			return config_error(ld, line, fd->path, "expected a "
			    "whole number, got %s",
			    config_repr(val, repr, sizeof(repr)));
		snprintf(num, sizeof(num), "%lld",
		    (long long)json_object_get_int64(val));
		return config_apply(ld, fd, num, line);
	case CONFIG_DURATION:
		if (!json_object_is_type(val, json_type_string))
			return config_error(ld, line, fd->path, "expected a "
			    "duration such as 30s, got %s",
			    config_repr(val, repr, sizeof(repr)));
		return config_apply(ld, fd, json_object_get_string(val), line);
	case CONFIG_STRING:
		if (!json_object_is_type(val, json_type_string))
			return config_error(ld, line, fd->path, "expected a "
			    "string, got %s (quote it)",
			    config_repr(val, repr, sizeof(repr)));
		return config_apply(ld, fd, json_object_get_string(val), line);
	case CONFIG_MODE:
		s = json_object_is_type(val, json_type_string) ?
		    json_object_get_string(val) : NULL;
		if (s != NULL && (*s == '\0' || strcmp(s, "userspace") == 0))
			return 0;
		return config_error(ld, line, fd->path, "%s is not supported: "
		    "kuproxy only provides kube-proxy's userspace mode (leave "
		    "mode empty or set it to \"userspace\")",
		    config_repr(val, repr, sizeof(repr)));
	case CONFIG_CHECK:
		s = json_object_is_type(val, json_type_string) ?
		    json_object_get_string(val) : NULL;
		if (s != NULL && strcmp(s, fd->expect) == 0)
			return 0;
		return config_error(ld, line, fd->path, "expected %s, got %s",
		    fd->expect, config_repr(val, repr, sizeof(repr)));
	case CONFIG_BLOCK:
	case CONFIG_IGNORED:
		break;
	}
	return 0;
}

/*
 * Walk a mapping: every key must be a known field.  prefix is the dotted
 * path of obj ("" at the top).
 */
static int
config_walk(struct config_load *ld, json_object *obj, const char *prefix)
{
	json_object_object_foreach(obj, key, val) {
		const struct config_field	*fd;
		char				 path[256], repr[64];
		int				 line = config_line(val, obj);

		snprintf(path, sizeof(path), "%s%s%s", prefix,
		    *prefix != '\0' ? "." : "", key);
		if ((fd = config_field_find(path)) == NULL)
			return config_error(ld, line, NULL, "unknown field "
			    "\"%s\"", path);
		switch (fd->type) {
		case CONFIG_BLOCK:
			if (val == NULL)
				break;
			if (!json_object_is_type(val, json_type_object))
				return config_error(ld, line, path, "expected "
				    "a mapping of fields, got %s",
				    config_repr(val, repr, sizeof(repr)));
			if (config_walk(ld, val, path) == -1)
				return -1;
			break;
		case CONFIG_IGNORED:
			config_warn_ignored(ld, val, obj, path);
			break;
		default:
			if (config_field_value(ld, fd, val, line) == -1)
				return -1;
			break;
		}
	}
	return 0;
}

static bool
config_is_kube_proxy_doc(json_object *doc)
{
	json_object *kind;

	return json_object_object_get_ex(doc, "kind", &kind) &&
	    json_object_is_type(kind, json_type_string) &&
	    strcmp(json_object_get_string(kind), CONFIG_KIND) == 0;
}

/*
 * The KubeProxyConfiguration among the documents: the only document, or
 * the one of that kind in a multi-document file such as kubeadm's
 * --config, which also holds InitConfiguration and ClusterConfiguration.
 */
static json_object *
config_pick_document(struct config_load *ld, json_object *docs)
{
	json_object	*found = NULL;
	size_t		 i, n = json_object_array_length(docs);

	if (n == 0) {
		config_error(ld, 0, NULL, "no KubeProxyConfiguration in the "
		    "file (it is empty)");
		return NULL;
	}
	if (n == 1)
		found = json_object_array_get_idx(docs, 0);
	for (i = 0; n > 1 && i < n; i++) {
		json_object *doc = json_object_array_get_idx(docs, i);

		if (!config_is_kube_proxy_doc(doc))
			continue;
		if (found != NULL) {
			config_error(ld, yamljson_line(doc), NULL, "a second "
			    "KubeProxyConfiguration document");
			return NULL;
		}
		found = doc;
	}
	if (found == NULL)
		config_error(ld, 0, NULL, "none of its %zu documents is a "
		    "KubeProxyConfiguration", n);
	else if (!json_object_is_type(found, json_type_object)) {
		config_error(ld, yamljson_line(found), NULL, "expected a "
		    "KubeProxyConfiguration mapping");
		found = NULL;
	}
	return found;
}

/* kind and apiVersion must be present, not only right when given. */
static int
config_check_type_meta(struct config_load *ld, json_object *doc)
{
	static const char *const required[] = { "apiVersion", "kind" };
	size_t i;

	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		const struct config_field *fd = config_field_find(required[i]);

		if (!json_object_object_get_ex(doc, required[i], NULL))
			return config_error(ld, yamljson_line(doc), required[i],
			    "missing; expected %s", fd->expect);
	}
	return 0;
}

/*
 * Load the KubeProxyConfiguration in the file at path (YAML or JSON) into
 * c, over what c holds.  Fields of other proxy modes are logged as having
 * no effect.  Returns 0, or -1 with "FILE:LINE: field: problem" in err (no
 * LINE for JSON input, whose objects carry none); c may then hold some of
 * the file's values.
 */
int
conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
	struct config_load	 ld = { .conf = c, .path = path, .err = err,
				    .errlen = errlen };
	json_object		*docs = NULL, *doc;
	char			*buf, why[512];
	size_t			 len;
	int			 rc = -1;

	if ((buf = yamljson_read_file(path, CONFIG_MAX_BYTES, &len, why,
	    sizeof(why))) == NULL) {
		snprintf(err, errlen, "%s", why);	/* names the file */
		return -1;
	}
	if (yamljson_parse(buf, len, &docs, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "%s:%s", path, why);
		goto done;
	}
	if ((doc = config_pick_document(&ld, docs)) == NULL ||
	    config_check_type_meta(&ld, doc) == -1 ||
	    config_walk(&ld, doc, "") == -1)
		goto done;
	rc = 0;

 done:
	json_object_put(docs);
	free(buf);
	return rc;
}
