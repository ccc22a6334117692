/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every source of the service table provides.  A source builds a new
 * struct svctab off to the side, validates it whole, and only then publishes
 * it through the callback; on bad input it logs what is wrong and publishes
 * nothing, so the last good table stays in force.
 */
#ifndef KUPROXY_SOURCE_H
#define KUPROXY_SOURCE_H

struct event_base;
struct svctab;

/*
 * Called with a new table holding one reference, which the callee takes
 * over.  Called from the event loop, never from inside source_*_new().
 */
typedef void (*source_publish_cb)(struct svctab *tab, void *arg);

/*
 * The local service file: what `kubectl get services,endpointslices -A -o
 * json|yaml` prints, ServiceList/EndpointSliceList, or a multi-document YAML
 * stream.  Read once at start (published from the loop), again when the file
 * changes (inotify on its directory, so editors that replace the file work)
 * and on source_file_reload().  Returns NULL with a message in err when the
 * file cannot be watched; a file that fails to parse at start is logged and
 * then retried on change.
 */
struct source_file;
struct source_file *source_file_new(struct event_base *base, const char *path,
			source_publish_cb cb, void *arg, char *err, size_t errlen);
/*
 * Re-read now (SIGHUP).  Returns 0 when the file was accepted (a new table
 * published, or the same table as before), -1 when it was rejected.
 */
int		 source_file_reload(struct source_file *);
void		 source_file_free(struct source_file *);

/*
 * The Kubernetes API: list and watch Services (core/v1) and EndpointSlices
 * (discovery.k8s.io/v1) the way kube-proxy's informers do, over libcurl's
 * multi interface on the given event base.  Credentials come from creds
 * (taken over).  The first table is published only when both lists are in;
 * later tables no faster than conf->min_sync_period_ms.  While the server is
 * unreachable nothing is published: the last table stays in force.
 */
struct conf;
struct kube_creds;
struct source_api;
struct source_api *source_api_new(struct event_base *base,
			const struct conf *conf, struct kube_creds *creds,
			source_publish_cb cb, void *arg, char *err, size_t errlen);
void		 source_api_free(struct source_api *);

/* For health and status: whether both lists have been received once. */
int		 source_api_synced(const struct source_api *);

#endif
