/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCP sessions: for each accepted client (reset at once above
 * --max-connections), pick an endpoint, connect without blocking (up to
 * LB_MAX_TRIES endpoints, with upstream's connect timeouts 250 ms, 500 ms,
 * 1 s, 2 s, a step climbed only when a dial times out), then relay both
 * directions: small reads through one shared buffer, bulk ones with
 * splice(2) through pipes taken from a pool only while bytes are in flight
 * (or always by copy in copy mode).  Half-close
 * is propagated; a reset on one side resets the other; --tcp-keepalive,
 * --tcp-idle-timeout and --tcp-half-close-timeout bound dead and silent
 * sessions.  An idle session holds no buffer and no pipe.
 */
#ifndef KUPROXY_TCP_RELAY_H
#define KUPROXY_TCP_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct pport_lane;

/*
 * Take over client_fd, accepted on the lane's listener, and serve it on
 * the lane's event loop (which must be the caller's).  Takes its own
 * reference on the lane's pport.  Never blocks.
 */
void		 tcp_relay_start(struct pport_lane *lane, int client_fd,
		    const struct sockaddr *peer, socklen_t peerlen);
/*
 * A listener_accept_cb for a TCP pport's listener: arg is its struct
 * pport_lane.  Calls tcp_relay_start().
 */
void		 tcp_relay_accept(int client_fd, const struct sockaddr *peer,
		    socklen_t peerlen, void *arg);
/* Sessions open now, over every service port. */
size_t		 tcp_relay_active(void);

/*
 * Buffers allocated now, over every session: a flow holds one only while
 * bytes its destination could not take at once wait in it (either mode).
 */
size_t		 tcp_relay_n_buffers(void);

/* Clients reset at once because --max-connections sessions were open. */
uint64_t	 tcp_relay_n_rejected(void);

/*
 * Resets passed on since start: from_endpoint, an endpoint reset its
 * connection and the client was reset; otherwise the other way round.
 */
uint64_t	 tcp_relay_n_resets(bool from_endpoint);

/*
 * Bytes relayed through user memory (read and written) rather than
 * spliced, since start: small reads, and everything in copy mode.
 */
uint64_t	 tcp_relay_bytes_copied(void);

/*
 * Stop every session of the calling worker now (at the end of a shutdown
 * grace period), closing both sockets.
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
