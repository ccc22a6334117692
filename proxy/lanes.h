/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A service port's lanes: its socket on every worker (proxy/worker.h),
 * opened, kept in line with the port's endpoints, and closed for the
 * proxier.  Worker 0's lane (the caller's loop) changes at once; the other
 * workers' changes are queued and made by lanes_flush(), one worker_run()
 * per worker however many ports changed, so that a table of 10,000 ports
 * costs each worker one wake-up, not 10,000.
 */
#ifndef KUPROXY_LANES_H
#define KUPROXY_LANES_H

#include <stddef.h>

struct pport;

/* Give pp one empty lane per worker.  0, or -1 (out of memory). */
int	lanes_init(struct pport *pp);
/*
 * Serve fd (from listener_bind(), taken over) on worker 0, and bind one
 * more socket on the same port for each other worker, to be served at the
 * next lanes_flush().  0, or -1 with err when worker 0's lane could not be
 * opened (the port is not served; pp's other sockets are closed).  A
 * further worker's socket that fails is logged and that worker does
 * without the port.
 */
int	lanes_open(struct pport *pp, const char *bind_addr, int fd,
	    char *err, size_t errlen);
/*
 * pp's endpoints changed (after lb_update()): pause or resume its
 * listeners (no endpoint means a refusal) and drop UDP associations whose
 * endpoint left.  Worker 0 now, the others at the next lanes_flush().
 */
void	lanes_update(struct pport *pp);
/* Make the queued changes on every worker; the caller's loop waits. */
void	lanes_flush(void);
/*
 * Close every lane's socket now (queued changes for pp first); sessions
 * and associations finish on their own.
 */
void	lanes_close(struct pport *pp);

#endif
