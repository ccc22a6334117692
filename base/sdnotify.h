/* SPDX-License-Identifier: Apache-2.0 */
/*
 * systemd's readiness protocol (sd_notify(3)): one datagram of
 * "KEY=VALUE\n" lines to $NOTIFY_SOCKET.  Written out rather than linking
 * libsystemd for one function, as the protocol is stable by promise.
 */
#ifndef KUPROXY_SDNOTIFY_H
#define KUPROXY_SDNOTIFY_H

/* Send state (e.g. "READY=1\nSTATUS=...") if $NOTIFY_SOCKET is set; 0 or -1. */
int	sd_notify_send(const char *state);
int	sd_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
