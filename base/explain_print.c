/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `kuproxy explain` as text: the explanation document (explain.c) printed
 * for a person.  Everything printed comes from the document, so the text
 * says nothing that `kuproxy explain --json` does not; this file only
 * chooses the layout.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/explain.h"

static json_object *
jget(json_object *o, const char *key)
{
	json_object	*v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object	*v = jget(o, key);

	return v != NULL && json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
}

static const char *
jstr_or(json_object *o, const char *key, const char *dflt)
{
	const char	*s = jstr(o, key);

	return s != NULL ? s : dflt;
}

static long long
jint(json_object *o, const char *key)
{
	json_object	*v = jget(o, key);

	return v != NULL ? (long long)json_object_get_int64(v) : 0;
}

static bool
jbool(json_object *o, const char *key)
{
	json_object	*v = jget(o, key);

	return v != NULL && json_object_get_boolean(v);
}

static size_t
jlen(json_object *a)
{
	return a != NULL && json_object_is_type(a, json_type_array) ?
	    json_object_array_length(a) : 0;
}

/* Each string of array key, as an indented line. */
/* The balancer's JSON name (explain.c) in words. */
static const char *
balancer_words(const char *algorithm)
{
	if (algorithm != NULL && strcmp(algorithm, "leastConnections") == 0)
		return "least connections";
	if (algorithm != NULL && strcmp(algorithm, "maglev") == 0)
		return "Maglev hashing of the client IP";
	return "round robin";
}

static void
print_lines(json_object *o, const char *key, const char *indent, FILE *out)
{
	json_object	*a = jget(o, key);
	size_t		 i;

	for (i = 0; i < jlen(a); i++)
		fprintf(out, "%s%s\n", indent, json_object_get_string(
		    json_object_array_get_idx(a, i)));
}

static void
print_head(json_object *doc, FILE *out)
{
	const char	*file = jstr(doc, "servicesFile");

	fprintf(out, "%s/%s (%s)", jstr_or(doc, "namespace", "?"),
	    jstr_or(doc, "name", "?"), jstr_or(doc, "type", "?"));
	if (strcmp(jstr_or(doc, "source", ""), "daemon") == 0)
		fprintf(out, ", from the running kuproxy");
	else
		fprintf(out, ", from %s without kuproxy", file != NULL ?
		    file : "the services file");
	fprintf(out, ": iptables backend %s, bind address %s",
	    jstr_or(doc, "iptablesBackend", "?"),
	    jstr_or(doc, "bindAddress", "?"));
	if (jstr(doc, "hostIP") != NULL)
		fprintf(out, ", host IP %s", jstr(doc, "hostIP"));
	fputc('\n', out);
}

static void
print_rule(json_object *r, FILE *out)
{
	const char	*hook = jstr(r, "hook");

	if (hook != NULL)
		fprintf(out, "      %s %s -> %s (%s):\n", jstr_or(r, "table",
		    "?"), hook, jstr_or(r, "chain", "?"),
		    jstr_or(r, "catches", ""));
	fprintf(out, "        %s\n", jstr_or(r, "rule", "?"));
}

static void
print_portal(json_object *p, FILE *out)
{
	json_object	*rules = jget(p, "rules"), *addrs;
	const char	*kind = jstr_or(p, "kind", "?");
	size_t		 i;

	if (strcmp(kind, "nodePort") == 0) {
		fprintf(out, "    nodePort %lld on", jint(p, "nodePort"));
		addrs = jget(p, "addresses");
		for (i = 0; i < jlen(addrs); i++)
			fprintf(out, "%s %s", i > 0 ? "," : "",
			    json_object_get_string(
			    json_object_array_get_idx(addrs, i)));
		if (jlen(addrs) == 0)
			fprintf(out, " no address");
	} else
		fprintf(out, "    %s %s%s", kind, jstr_or(p, "address", "?"),
		    jbool(p, "nodeLocal") ? " (an address of this node)" : "");
	if (jstr(p, "note") != NULL)
		fprintf(out, ": %s", jstr(p, "note"));
	fputc('\n', out);
	for (i = 0; i < jlen(rules); i++)
		print_rule(json_object_array_get_idx(rules, i), out);
}

static void
print_balancer(json_object *b, FILE *out)
{
	json_object	*sticky;
	size_t		 i;

	if (b == NULL)
		return;
	fprintf(out, "  Balancer: %s over %lld usable endpoint%s",
	    balancer_words(jstr(b, "algorithm")), jint(b, "usableEndpoints"),
	    jint(b, "usableEndpoints") == 1 ? "" : "s");
	if (jstr(b, "nextEndpoint") != NULL)
		fprintf(out, ", next %s", jstr(b, "nextEndpoint"));
	fprintf(out, "; session affinity %s", jstr_or(b, "sessionAffinity",
	    "None"));
	if (strcmp(jstr_or(b, "sessionAffinity", ""), "ClientIP") == 0)
		fprintf(out, " (timeout %llds, %lld sticky client%s)",
		    jint(b, "affinityTimeoutSeconds"),
		    jint(b, "nStickyClients"), jint(b, "nStickyClients") == 1 ?
		    "" : "s");
	fputc('\n', out);
	sticky = jget(b, "stickyClients");
	for (i = 0; i < jlen(sticky); i++) {
		json_object *c = json_object_array_get_idx(sticky, i);

		fprintf(out, "    client %s -> %s (idle %llds)\n",
		    jstr_or(c, "client", "?"), jstr_or(c, "endpoint", "?"),
		    jint(c, "idleSeconds"));
	}
}

static void
print_endpoints(json_object *port, FILE *out)
{
	json_object	*eps = jget(port, "endpoints");
	size_t		 i;

	fprintf(out, "  Endpoints:%s\n", jlen(eps) == 0 ? " none" : "");
	for (i = 0; i < jlen(eps); i++) {
		json_object *e = json_object_array_get_idx(eps, i);

		fprintf(out, "    %-24s %s%s%s%s%s%s\n", jstr_or(e, "address",
		    "?"), jbool(e, "ready") ? "ready" : "not ready",
		    jbool(e, "terminating") ? ", terminating" : "",
		    jget(e, "used") == NULL ? "" : jbool(e, "used") ?
		    ", used" : ", not used",
		    jbool(e, "backingOff") ? ", backing off after a failure" :
		    "", jstr(e, "nodeName") != NULL ? ", node " : "",
		    jstr_or(e, "nodeName", ""));
	}
}

static void
print_paths(json_object *paths, FILE *out)
{
	if (paths == NULL)
		return;
	fprintf(out, "  From a pod:\n");
	print_lines(paths, "pod", "    ", out);
	fprintf(out, "  From a process on the node:\n");
	print_lines(paths, "node", "    ", out);
	fprintf(out, "  From outside the cluster:\n");
	print_lines(paths, "outside", "    ", out);
	if (jstr(paths, "then") != NULL)
		fprintf(out, "  Then: %s\n", jstr(paths, "then"));
}

static void
print_port(json_object *port, FILE *out)
{
	json_object	*portals = jget(port, "portals"), *pp;
	size_t		 i;

	fprintf(out, "\n%s port %s%s%lld", jstr_or(port, "protocol", "?"),
	    jstr_or(port, "name", ""), *jstr_or(port, "name", "") != '\0' ?
	    " " : "", jint(port, "port"));
	if (jint(port, "nodePort") != 0)
		fprintf(out, ", nodePort %lld", jint(port, "nodePort"));
	pp = jget(port, "proxyPort");
	if (!jbool(port, "served"))
		fprintf(out, ": not served%s%s\n", jstr(port, "notServed") !=
		    NULL ? ": " : "", jstr_or(port, "notServed", ""));
	else if (pp != NULL)
		fprintf(out, ", proxy port %lld\n", jint(port, "proxyPort"));
	else
		fprintf(out, ", proxy port %s (assigned when kuproxy runs)\n",
		    EXPLAIN_PROXY_PORT_TEXT);
	if (jlen(portals) > 0)
		fprintf(out, "  Portals, and the rules that catch them:\n");
	for (i = 0; i < jlen(portals); i++)
		print_portal(json_object_array_get_idx(portals, i), out);
	print_balancer(jget(port, "balancer"), out);
	print_endpoints(port, out);
	print_paths(jget(port, "paths"), out);
}

static void
print_skipped(json_object *doc, FILE *out)
{
	json_object	*sk = jget(doc, "skipped"), *dns = jget(doc, "dns");
	json_object	*ports = jget(doc, "ports");
	size_t		 i;

	fprintf(out, "Not proxied: %s\n", jstr_or(sk, "explanation", "?"));
	if (jlen(dns) > 0)
		fprintf(out, "DNS records (cluster domain %s):\n",
		    jstr_or(doc, "clusterDomain", "?"));
	for (i = 0; i < jlen(dns); i++) {
		json_object *r = json_object_array_get_idx(dns, i);

		fprintf(out, "  %-60s %-5s %s\n", jstr_or(r, "name", "?"),
		    jstr_or(r, "type", "?"), jstr_or(r, "data", "?"));
	}
	for (i = 0; i < jlen(ports); i++) {
		json_object *p = json_object_array_get_idx(ports, i);

		fprintf(out, "\n%s port %s%s%lld: no proxy port\n",
		    jstr_or(p, "protocol", "?"), jstr_or(p, "name", ""),
		    *jstr_or(p, "name", "") != '\0' ? " " : "",
		    jint(p, "port"));
		print_endpoints(p, out);
	}
}

/* See explain.h. */
void
explain_print_text(json_object *doc, FILE *out)
{
	json_object	*ports = jget(doc, "ports");
	size_t		 i;

	print_head(doc, out);
	if (jget(doc, "skipped") != NULL)
		print_skipped(doc, out);
	else
		for (i = 0; i < jlen(ports); i++)
			print_port(json_object_array_get_idx(ports, i), out);
	if (jlen(jget(doc, "notes")) > 0) {
		fprintf(out, "\nNotes:\n");
		print_lines(doc, "notes", "  ", out);
	}
}
