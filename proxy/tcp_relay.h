/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCP sessions: for each accepted client, pick an endpoint, connect
 * without blocking (up to LB_MAX_TRIES endpoints, with upstream's connect
 * timeouts 250 ms, 500 ms, 1 s, 2 s), then relay both directions with
 * splice(2) through pipes taken from a pool only while bytes are in flight,
 * or by buffered copy in copy mode.  Half-close is propagated; a reset on
 * one side resets the other.  An idle session holds no buffer and no pipe.
 */
#ifndef KUPROXY_TCP_RELAY_H
#define KUPROXY_TCP_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct pport;

/*
 * Take over client_fd, accepted on pp's listener, and serve it.  Takes its
 * own reference on pp.  Never blocks.
 */
void		 tcp_relay_start(struct pport *pp, int client_fd,
		    const struct sockaddr *peer, socklen_t peerlen);

/*
 * A listener_accept_cb for a TCP pport's listener: arg is the struct pport.
 * Calls tcp_relay_start().
 */
void		 tcp_relay_accept(int client_fd, const struct sockaddr *peer,
		    socklen_t peerlen, void *arg);

/* Sessions open now, over every service port. */
size_t		 tcp_relay_active(void);

/*
 * Copy buffers allocated now, over every session: a copy-mode session holds
 * one per direction only while bytes are in flight.
 */
size_t		 tcp_relay_n_buffers(void);

/*
 * Stop every session now (at the end of a shutdown grace period), closing
 * both sockets.
 */
void		 tcp_relay_close_all(void);

/*
 * A pool of pipes for splice, each enlarged with F_SETPIPE_SZ.  Pipes go
 * back to the pool when drained; the pool keeps at most `max_idle`.
 */
struct pipe_pool;
/* pipe_size 0 means 1 MiB; a size the kernel refuses shrinks gracefully. */
struct pipe_pool *pipe_pool_new(size_t pipe_size, size_t max_idle);
/* Idle pipes are closed; pipes still handed out are not. */
void		 pipe_pool_free(struct pipe_pool *);
/* An empty non-blocking pipe: 0, or -1 with errno. */
int		 pipe_pool_get(struct pipe_pool *, int fds[2]);
/* Give a pipe back (fds set to -1); one not drained is closed. */
void		 pipe_pool_put(struct pipe_pool *, int fds[2], bool drained);
size_t		 pipe_pool_pipe_size(const struct pipe_pool *);
/* Pipes handed out now: sessions with bytes in flight hold one each. */
size_t		 pipe_pool_n_busy(const struct pipe_pool *);
size_t		 pipe_pool_n_idle(const struct pipe_pool *);

#endif
