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
/* Re-read now (SIGHUP).  Returns 0 when a table was published, -1 if not. */
int		 source_file_reload(struct source_file *);
void		 source_file_free(struct source_file *);

#endif
