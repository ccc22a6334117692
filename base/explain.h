/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `kuproxy explain [NAMESPACE/]NAME[:PORT]`: what becomes of a connection
 * to one service.  For each service port: every portal address with the
 * iptables rules that catch it (rendered by proxy/portal_render.c, the code
 * that writes them, so the two cannot drift), the proxy port, the balancer
 * and its state, the endpoints, and the path of a connection from a pod,
 * from the node and from outside, in words.  A service kuproxy does not
 * proxy (headless, ExternalName, another proxy's) is explained instead:
 * its DNS records, its CNAME, its owner.
 *
 * The explanation is one JSON document (formatVersion 1); the text is
 * printed from that document, so `--json` and the text always agree.  The
 * daemon builds it from its live state and serves it on the status socket
 * (status.c); with --services-file the command builds it from the file
 * alone, touching nothing but reads (no rule, no socket; the proxy port is
 * then a placeholder, EXPLAIN_PROXY_PORT_TEXT).
 */
#ifndef KUPROXY_EXPLAIN_H
#define KUPROXY_EXPLAIN_H

#include <stdio.h>

#include <json-c/json.h>

struct conf;
struct proxier;

#define EXPLAIN_FORMAT_VERSION	1
/* Where the proxy port goes in rules explained without a daemon. */
#define EXPLAIN_PROXY_PORT_TEXT	"<proxy-port>"
/* The kubelet's default; DNS names are only illustrated with it. */
#define EXPLAIN_CLUSTER_DOMAIN	"cluster.local"

/* [NAMESPACE/]NAME[:PORT], parsed; namespace "default" when left out. */
struct explain_target {
	char	namespace[256];
	char	name[256];
	char	port[256];	/* a port name or number; "": every port */
};

/* Parse s into t.  Returns 0, or -1 with a message in err. */
int		 explain_parse_target(const char *s, struct explain_target *t,
		    char *err, size_t errlen);

/*
 * The daemon's explanation of target, from the table in force and the live
 * proxy ports and balancers.  Never NULL but on allocation failure: a
 * target that does not parse or is not found gives a document whose
 * "error" member says so.  The caller owns it.
 */
json_object	*explain_daemon(struct proxier *, const struct conf *,
		    const char *target);

/*
 * The same from conf->services_file alone, as a kuproxy started with conf
 * would see it.  Returns NULL with err when the file cannot be read or
 * holds a bad object; otherwise a document as explain_daemon's.
 */
json_object	*explain_file(const struct conf *, const char *target,
		    char *err, size_t errlen);

/* Print an explanation document as text. */
void		 explain_print_text(json_object *doc, FILE *out);

/*
 * The command: explain conf->explain_target, from the services file when
 * conf->services_file is set, else by asking the daemon on the status
 * socket; print text, or JSON with conf->output_json.  Returns the exit
 * status: 0, 1 (not found, daemon unreachable, bad file; a message on
 * stderr) or 2 (usage).
 */
int		 explain_client(const struct conf *);

#endif
