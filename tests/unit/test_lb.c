/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for proxy/lb.c: round-robin order and fairness, which
 * endpoints are usable, how the cursor and the affinity map survive
 * updates, affinity timeouts (with injected time), the tried-set used
 * for retries, and the passive health check (back-off after a failed
 * dial), and dual-stack sets split by the client's family.  Pure: no
 * sockets, no clock.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "proxy/lb.h"

#define READY		(EP_F_READY | EP_F_SERVING)
#define TERMINATING	(EP_F_SERVING | EP_F_TERMINATING)

static struct endpoint
ep(const char *ip, uint16_t port, uint8_t flags)
{
	struct endpoint e;

	memset(&e, 0, sizeof(e));
	cr_assert_eq(svc_ip_parse(ip, &e.ip), 0, "bad test address %s", ip);
	e.port = port;
	e.flags = flags;
	return e;
}

static struct svc_ip
client(const char *ip)
{
	struct svc_ip c;

	cr_assert_eq(svc_ip_parse(ip, &c), 0);
	return c;
}

/* Pick and return the endpoint as "ip:port". */
static const char *
pick(struct lb *lb, const struct svc_ip *c, const struct lb_tried *tried,
    long long now_ms)
{
	static char buf[64];
	struct lb_target t;

	cr_assert_eq(lb_pick(lb, c, tried, now_ms, &t), 0, "no endpoint");
	return lb_target_str(&t, buf, sizeof(buf));
}

static struct lb *
lb_with(const struct endpoint *eps, size_t n, enum svc_affinity aff,
    uint32_t timeout_s)
{
	struct lb *lb;

	cr_assert_not_null(lb = lb_new());
	cr_assert_eq(lb_update(lb, eps, n, aff, timeout_s), 0);
	return lb;
}

static const struct endpoint *
abc(void)
{
	static struct endpoint eps[3];

	eps[0] = ep("10.0.0.1", 80, READY);
	eps[1] = ep("10.0.0.2", 80, READY);
	eps[2] = ep("10.0.0.3", 80, READY);
	return eps;
}

Test(lb, round_robin_exact_order)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	const char *want[] = { "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80",
	    "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80" };
	size_t i;

	for (i = 0; i < 6; i++)
		cr_assert_str_eq(pick(lb, NULL, NULL, 0), want[i],
		    "pick %zu", i);
	lb_free(lb);
}

Test(lb, round_robin_is_even)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct svc_ip c = client("192.168.1.1");
	struct lb_target t;
	int count[3] = { 0, 0, 0 };
	size_t i;

	for (i = 0; i < 6; i++) {
		cr_assert_eq(lb_pick(lb, &c, NULL, 0, &t), 0);
		count[t.ip.addr[3] - 1]++;
	}
	cr_assert(count[0] == 2 && count[1] == 2 && count[2] == 2,
	    "%d/%d/%d", count[0], count[1], count[2]);
	lb_free(lb);
}

Test(lb, same_port_different_ports_are_distinct)
{
	struct endpoint eps[2] = { ep("10.0.0.1", 80, READY),
	    ep("10.0.0.1", 81, READY) };
	struct lb *lb = lb_with(eps, 2, SVC_AFFINITY_NONE, 0);

	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:81");
	lb_free(lb);
}

Test(lb, not_ready_endpoints_are_skipped)
{
	struct endpoint eps[3] = { ep("10.0.0.1", 80, READY),
	    ep("10.0.0.2", 80, 0), ep("10.0.0.3", 80, READY) };
	struct lb *lb = lb_with(eps, 3, SVC_AFFINITY_NONE, 0);

	cr_assert_eq(lb_n_endpoints(lb), 2);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	lb_free(lb);
}

Test(lb, terminating_endpoints_are_used_when_none_is_ready)
{
	struct endpoint eps[3] = { ep("10.0.0.1", 80, TERMINATING),
	    ep("10.0.0.2", 80, EP_F_TERMINATING),	/* not serving */
	    ep("10.0.0.3", 80, TERMINATING) };
	struct lb *lb = lb_with(eps, 3, SVC_AFFINITY_NONE, 0);

	cr_assert_eq(lb_n_endpoints(lb), 2);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	lb_free(lb);
}

Test(lb, ready_endpoints_win_over_terminating_ones)
{
	struct endpoint eps[2] = { ep("10.0.0.1", 80, TERMINATING),
	    ep("10.0.0.2", 80, READY) };
	struct lb *lb = lb_with(eps, 2, SVC_AFFINITY_NONE, 0);

	cr_assert_eq(lb_n_endpoints(lb), 1);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, endpoint_without_port_is_skipped)
{
	struct endpoint eps[2] = { ep("10.0.0.1", 0, READY),
	    ep("10.0.0.2", 80, READY) };
	struct lb *lb = lb_with(eps, 2, SVC_AFFINITY_NONE, 0);

	cr_assert_eq(lb_n_endpoints(lb), 1);
	lb_free(lb);
}

Test(lb, no_endpoint_returns_minus_one)
{
	struct lb *lb = lb_with(NULL, 0, SVC_AFFINITY_NONE, 0);
	struct endpoint none[1] = { ep("10.0.0.1", 80, 0) };
	struct lb_target t;

	cr_assert_eq(lb_pick(lb, NULL, NULL, 0, &t), -1);
	cr_assert_eq(lb_update(lb, none, 1, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_eq(lb_pick(lb, NULL, NULL, 0, &t), -1);
	lb_free(lb);
}

Test(lb, cursor_keeps_its_place_across_an_unchanged_update)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);

	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	lb_free(lb);
}

Test(lb, round_robin_skips_removed_endpoint)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct endpoint ac[2] = { abc()[0], abc()[2] };

	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	/* b would be next; it leaves, so the rotation goes on with c. */
	cr_assert_eq(lb_update(lb, ac, 2, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	lb_free(lb);
}

Test(lb, removing_the_last_picked_continues_after_it)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct endpoint ac[2] = { abc()[0], abc()[2] };
	struct endpoint ab[2] = { abc()[0], abc()[1] };

	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	/* b was picked last and leaves: c followed it. */
	cr_assert_eq(lb_update(lb, ac, 2, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	/* c was picked last and leaves, nothing sorts after it: wrap. */
	cr_assert_eq(lb_update(lb, ab, 2, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	lb_free(lb);
}

Test(lb, added_endpoint_joins_the_rotation_in_order)
{
	struct endpoint ac[2] = { abc()[0], abc()[2] };
	struct lb *lb = lb_with(ac, 2, SVC_AFFINITY_NONE, 0);

	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	lb_free(lb);
}

Test(lb, emptied_then_refilled_continues)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target t;

	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.1:80");
	cr_assert_eq(lb_update(lb, NULL, 0, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_eq(lb_pick(lb, NULL, NULL, 0, &t), -1);
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, affinity_pins_a_client)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1"), y = client("192.168.1.2");
	int i;

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	for (i = 1; i <= 10; i++)
		cr_assert_str_eq(pick(lb, &x, NULL, i * 1000), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &y, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, &y, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	cr_assert_eq(lb_n_affinity(lb), 2);
	lb_free(lb);
}

Test(lb, affinity_is_per_address_family)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip v4 = client("10.1.1.1"), v6 = client("fd00::a01:101");

	cr_assert_str_eq(pick(lb, &v4, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &v6, NULL, 0), "10.0.0.2:80");
	cr_assert_eq(lb_n_affinity(lb), 2);
	lb_free(lb);
}

Test(lb, affinity_window_slides_and_expires)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 10);
	struct svc_ip x = client("192.168.1.1");

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 9999), "10.0.0.1:80");
	/* Used at 9999: the window now runs to 19999. */
	cr_assert_str_eq(pick(lb, &x, NULL, 19998), "10.0.0.1:80");
	/* Idle for exactly the timeout: expired, next in rotation. */
	cr_assert_str_eq(pick(lb, &x, NULL, 29998), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 30000), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, affinity_default_timeout_is_three_hours)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1");

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 10800LL * 1000 - 1), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 2 * 10800LL * 1000 - 2),
	    "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 3 * 10800LL * 1000 - 2),
	    "10.0.0.2:80");
	lb_free(lb);
}

/* k/k#107398: upstream kept 10800 s whatever the Service said. */
Test(lb, affinity_timeout_change_applies_at_once)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 10800);
	struct svc_ip x = client("192.168.1.1");

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_CLIENT_IP, 5), 0);
	cr_assert_eq(lb_n_affinity(lb), 1, "the entry survives the update");
	cr_assert_str_eq(pick(lb, &x, NULL, 4000), "10.0.0.1:80");
	/* Last used at 4000: stale at 9000 under the new 5 s timeout. */
	cr_assert_str_eq(pick(lb, &x, NULL, 9000), "10.0.0.2:80");

	/* Lengthening it revives nothing but keeps the live entry longer. */
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_CLIENT_IP, 100), 0);
	cr_assert_str_eq(pick(lb, &x, NULL, 90000), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, sweep_drops_expired_entries_only)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 10);
	struct svc_ip x = client("192.168.1.1"), y = client("192.168.1.2");

	pick(lb, &x, NULL, 0);
	pick(lb, &y, NULL, 5000);
	cr_assert_eq(lb_n_affinity(lb), 2);
	lb_sweep(lb, 9999);
	cr_assert_eq(lb_n_affinity(lb), 2);
	lb_sweep(lb, 10000);
	cr_assert_eq(lb_n_affinity(lb), 1, "x expired");
	cr_assert_str_eq(pick(lb, &y, NULL, 10000), "10.0.0.2:80");
	/* A shorter timeout set by an update applies to the sweep too. */
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_CLIENT_IP, 1), 0);
	lb_sweep(lb, 11000);
	cr_assert_eq(lb_n_affinity(lb), 0);
	lb_free(lb);
}

Test(lb, affinity_to_removed_endpoint_is_dropped_others_kept)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1"), y = client("192.168.1.2"),
	    z = client("192.168.1.3");
	struct endpoint bc[2] = { abc()[1], abc()[2] };

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick(lb, &y, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, &z, NULL, 0), "10.0.0.3:80");
	cr_assert_eq(lb_update(lb, bc, 2, SVC_AFFINITY_CLIENT_IP, 0), 0);
	cr_assert_eq(lb_n_affinity(lb), 2);
	cr_assert_str_eq(pick(lb, &y, NULL, 1), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, &z, NULL, 1), "10.0.0.3:80");
	/* x starts over in the rotation, which had come back to b. */
	cr_assert_str_eq(pick(lb, &x, NULL, 1), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, endpoint_going_not_ready_drops_its_affinity)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1");
	struct endpoint eps[3] = { ep("10.0.0.1", 80, TERMINATING),
	    abc()[1], abc()[2] };

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	cr_assert_eq(lb_update(lb, eps, 3, SVC_AFFINITY_CLIENT_IP, 0), 0);
	cr_assert_eq(lb_n_affinity(lb), 0);
	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, affinity_turned_off_forgets_clients)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1");

	pick(lb, &x, NULL, 0);
	cr_assert_eq(lb_update(lb, abc(), 3, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_eq(lb_n_affinity(lb), 0);
	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.3:80");
	cr_assert_eq(lb_n_affinity(lb), 0);
	lb_free(lb);
}

Test(lb, tried_endpoints_are_skipped)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_tried tried;
	struct lb_target t;

	memset(&tried, 0, sizeof(tried));
	cr_assert_eq(lb_pick(lb, NULL, &tried, 0, &t), 0);
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.2:80");
	/* Next would be c; with c and a tried, b it is. */
	lb_tried_add(&tried, &t);			/* a */
	cr_assert_eq(lb_pick(lb, NULL, NULL, 0, &t), 0);	/* c */
	lb_tried_add(&tried, &t);
	cr_assert(lb_tried_has(&tried, &t));
	cr_assert_str_eq(pick(lb, NULL, &tried, 0), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, all_tried_picks_the_next_regardless)
{
	struct endpoint ab[2] = { abc()[0], abc()[1] };
	struct lb *lb = lb_with(ab, 2, SVC_AFFINITY_NONE, 0);
	struct lb_tried tried;
	struct lb_target t;
	int i;

	/* Four attempts over two endpoints: a, b, a, b. */
	memset(&tried, 0, sizeof(tried));
	for (i = 0; i < LB_MAX_TRIES; i++) {
		cr_assert_eq(lb_pick(lb, NULL, &tried, 0, &t), 0);
		cr_assert_eq(t.ip.addr[3], 1 + i % 2, "attempt %d", i);
		lb_tried_add(&tried, &t);
	}
	cr_assert_eq(tried.n, LB_MAX_TRIES);
	lb_tried_add(&tried, &t);
	cr_assert_eq(tried.n, LB_MAX_TRIES, "the tried-set is bounded");
	lb_free(lb);
}

Test(lb, retry_moves_affinity_to_the_endpoint_that_answers)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1");
	struct lb_tried tried;
	struct lb_target t;

	memset(&tried, 0, sizeof(tried));
	cr_assert_eq(lb_pick(lb, &x, &tried, 0, &t), 0);
	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	/* a refused: the retry skips the affinity lookup and a. */
	lb_tried_add(&tried, &t);
	cr_assert_str_eq(pick(lb, &x, &tried, 0), "10.0.0.2:80");
	/* The next connection of x goes where the retry succeeded. */
	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.2:80");
	cr_assert_eq(lb_n_affinity(lb), 1);
	lb_free(lb);
}

Test(lb, target_str_formats_both_families)
{
	struct lb_target t;
	char buf[64];

	memset(&t, 0, sizeof(t));
	cr_assert_eq(svc_ip_parse("10.1.2.3", &t.ip), 0);
	t.port = 8080;
	cr_assert_str_eq(lb_target_str(&t, buf, sizeof(buf)), "10.1.2.3:8080");
	cr_assert_eq(svc_ip_parse("fd00::1", &t.ip), 0);
	t.port = 53;
	cr_assert_str_eq(lb_target_str(&t, buf, sizeof(buf)), "[fd00::1]:53");
}

Test(lb, free_null_is_fine)
{
	lb_free(NULL);
}

/* ---- passive health ---- */

static struct lb_target
target(const char *ip, uint16_t port)
{
	struct lb_target t;

	memset(&t, 0, sizeof(t));
	cr_assert_eq(svc_ip_parse(ip, &t.ip), 0);
	t.port = port;
	return t;
}

Test(lb, failed_endpoint_is_skipped_while_backing_off)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80);

	lb_report(lb, &a, LB_REFUSED, 1000);
	cr_assert(lb_backing_off(lb, &a, 1000));
	cr_assert_str_eq(pick(lb, NULL, NULL, 1000), "10.0.0.2:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 1000), "10.0.0.3:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 1000), "10.0.0.2:80");
	/* The back-off is over: back in the rotation. */
	cr_assert_not(lb_backing_off(lb, &a, 1000 + LB_BACKOFF_MS));
	cr_assert_str_eq(pick(lb, NULL, NULL, 1000 + LB_BACKOFF_MS),
	    "10.0.0.3:80");
	cr_assert_str_eq(pick(lb, NULL, NULL, 1000 + LB_BACKOFF_MS),
	    "10.0.0.1:80");
	lb_free(lb);
}

Test(lb, backoff_doubles_and_a_connection_clears_it)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80);
	int i;

	lb_report(lb, &a, LB_TIMED_OUT, 0);
	lb_report(lb, &a, LB_TIMED_OUT, 0);
	cr_assert_eq(lb_n_timeouts(lb, &a), 2);
	cr_assert(lb_backing_off(lb, &a, 2 * LB_BACKOFF_MS - 1));
	cr_assert_not(lb_backing_off(lb, &a, 2 * LB_BACKOFF_MS));
	for (i = 0; i < 10; i++)
		lb_report(lb, &a, LB_REFUSED, 0);
	cr_assert(lb_backing_off(lb, &a, LB_BACKOFF_MAX_MS - 1));
	cr_assert_not(lb_backing_off(lb, &a, LB_BACKOFF_MAX_MS));
	lb_report(lb, &a, LB_CONNECTED, 0);
	cr_assert_not(lb_backing_off(lb, &a, 0));
	cr_assert_eq(lb_n_timeouts(lb, &a), 0);
	lb_free(lb);
}

Test(lb, all_backing_off_still_picks)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80);
	struct lb_target b = target("10.0.0.2", 80);
	struct lb_target c = target("10.0.0.3", 80);
	struct lb_tried tried = { .n = 0 };

	lb_report(lb, &a, LB_REFUSED, 0);
	lb_report(lb, &b, LB_REFUSED, 0);
	lb_report(lb, &c, LB_REFUSED, 0);
	/* Nothing healthy: plain rotation, untried first. */
	cr_assert_str_eq(pick(lb, NULL, &tried, 0), "10.0.0.1:80");
	lb_tried_add(&tried, &b);
	cr_assert_str_eq(pick(lb, NULL, &tried, 0), "10.0.0.3:80",
	    "the next in rotation was tried: the untried one goes first");
	lb_free(lb);
}

Test(lb, health_survives_updates_of_other_endpoints)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80);

	lb_report(lb, &a, LB_TIMED_OUT, 0);
	cr_assert_eq(lb_update(lb, abc(), 2, SVC_AFFINITY_NONE, 0), 0);
	cr_assert(lb_backing_off(lb, &a, 1));
	cr_assert_eq(lb_n_timeouts(lb, &a), 1);
	lb_free(lb);
}

Test(lb, affinity_leaves_an_endpoint_backing_off)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip x = client("192.168.1.1");
	struct lb_target a = target("10.0.0.1", 80);

	cr_assert_str_eq(pick(lb, &x, NULL, 0), "10.0.0.1:80");
	lb_report(lb, &a, LB_TIMED_OUT, 10);
	cr_assert_str_eq(pick(lb, &x, NULL, 20), "10.0.0.2:80");
	/* Re-pinned: it stays even after the back-off ends. */
	cr_assert_str_eq(pick(lb, &x, NULL, 10 + LB_BACKOFF_MS), "10.0.0.2:80");
	lb_free(lb);
}

/* ---- least connections, Maglev, and affinity with each ---- */

/* Pick for c and count the pick as a connected session. */
static const char *
pick_connect(struct lb *lb, const struct svc_ip *c, long long now_ms)
{
	static char buf[64];
	struct lb_target t;

	cr_assert_eq(lb_pick(lb, c, NULL, now_ms, &t), 0, "no endpoint");
	lb_report(lb, &t, LB_CONNECTED, now_ms);
	return lb_target_str(&t, buf, sizeof(buf));
}

Test(lb, balancer_default_is_round_robin)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);

	cr_assert_eq(lb_balancer(lb), SVC_BALANCER_ROUND_ROBIN);
	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_DEFAULT), 0);
	cr_assert_eq(lb_balancer(lb), SVC_BALANCER_ROUND_ROBIN);
	lb_free(lb);
}

Test(lb, least_conn_picks_the_least_loaded)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80), b = target("10.0.0.2", 80);
	int i;

	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_LEAST_CONN), 0);
	/* Three long sessions on .1, one on .2: .3 is the least loaded. */
	for (i = 0; i < 3; i++)
		lb_report(lb, &a, LB_CONNECTED, 0);
	lb_report(lb, &b, LB_CONNECTED, 0);
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.3:80");
	/* .2 and .3 now hold one each: they take turns, .1 waits. */
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.3:80");
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.2:80");
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.3:80");
	/* All at three: the tie goes on in rotation. */
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.1:80");
	cr_assert_str_eq(pick_connect(lb, NULL, 0), "10.0.0.2:80");
	lb_free(lb);
}

Test(lb, least_conn_spreads_ties_in_rotation)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	const char *want[] = { "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80",
	    "10.0.0.1:80" };
	size_t i;

	/* Picks that never connect leave every count at 0. */
	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_LEAST_CONN), 0);
	for (i = 0; i < 4; i++)
		cr_assert_str_eq(pick(lb, NULL, NULL, 0), want[i]);
	lb_free(lb);
}

Test(lb, release_ends_a_session)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80);
	struct lb_target gone = target("10.9.9.9", 80);

	lb_report(lb, &a, LB_CONNECTED, 0);
	lb_report(lb, &a, LB_CONNECTED, 0);
	cr_assert_eq(lb_n_active(lb, &a), 2);
	lb_release(lb, &a);
	cr_assert_eq(lb_n_active(lb, &a), 1);
	/* A failure does not end a session; a stray release stops at 0. */
	lb_report(lb, &a, LB_REFUSED, 0);
	cr_assert_eq(lb_n_active(lb, &a), 1);
	lb_release(lb, &a);
	lb_release(lb, &a);
	cr_assert_eq(lb_n_active(lb, &a), 0);
	lb_release(lb, &gone);
	cr_assert_eq(lb_n_active(lb, &gone), 0);
	/* Counts survive updates and changes of algorithm. */
	lb_report(lb, &a, LB_CONNECTED, 0);
	cr_assert_eq(lb_update(lb, abc(), 2, SVC_AFFINITY_NONE, 0), 0);
	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_MAGLEV), 0);
	cr_assert_eq(lb_n_active(lb, &a), 1);
	lb_free(lb);
}

Test(lb, least_conn_passes_over_backing_off_and_tried)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct lb_target a = target("10.0.0.1", 80), b = target("10.0.0.2", 80);
	struct lb_target c3 = target("10.0.0.3", 80);
	struct lb_tried tried = { .n = 0 };

	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_LEAST_CONN), 0);
	lb_report(lb, &b, LB_CONNECTED, 0);
	lb_report(lb, &a, LB_REFUSED, 0);
	/* .1 is idle but backing off; .3 is idle. */
	cr_assert_str_eq(pick(lb, NULL, NULL, 0), "10.0.0.3:80");
	lb_tried_add(&tried, &c3);
	cr_assert_str_eq(pick(lb, NULL, &tried, 0), "10.0.0.2:80");
	lb_free(lb);
}

/* n endpoints 10.1.0.1, 10.1.0.2 ... port 8080. */
static struct endpoint *
many(size_t n)
{
	static struct endpoint eps[64];
	char ip[32];
	size_t i;

	cr_assert_leq(n, 64);
	for (i = 0; i < n; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%zu", i + 1);
		eps[i] = ep(ip, 8080, READY);
	}
	return eps;
}

static struct svc_ip
nth_client(size_t i)
{
	struct svc_ip c;

	memset(&c, 0, sizeof(c));
	c.family = AF_INET;
	c.addr[0] = 172;
	c.addr[1] = 16 + (uint8_t)(i >> 16);
	c.addr[2] = (uint8_t)(i >> 8);
	c.addr[3] = (uint8_t)i;
	return c;
}

#define N_CLIENTS	10000

Test(lb, maglev_same_client_same_endpoint)
{
	struct lb *lb = lb_with(many(5), 5, SVC_AFFINITY_NONE, 0);
	struct svc_ip c = client("192.0.2.7"), c6 = client("fd00::7");
	char first[64], first6[64];
	int i;

	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_MAGLEV), 0);
	strcpy(first, pick(lb, &c, NULL, 0));
	strcpy(first6, pick(lb, &c6, NULL, 0));
	for (i = 0; i < 20; i++) {
		cr_assert_str_eq(pick(lb, &c, NULL, 0), first);
		cr_assert_str_eq(pick(lb, &c6, NULL, 0), first6);
	}
	/* Without a client address: round robin. */
	strcpy(first, pick(lb, NULL, NULL, 0));
	cr_assert_str_neq(pick(lb, NULL, NULL, 0), first);
	lb_free(lb);
}

Test(lb, maglev_spreads_clients_evenly)
{
	const size_t n = 7;
	struct lb *lb = lb_with(many(n), n, SVC_AFFINITY_NONE, 0);
	size_t count[7] = { 0 }, i, j;
	struct lb_target t;
	struct svc_ip c;

	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_MAGLEV), 0);
	for (i = 0; i < N_CLIENTS; i++) {
		c = nth_client(i);
		cr_assert_eq(lb_pick(lb, &c, NULL, 0, &t), 0);
		j = t.ip.addr[3] - 1;
		cr_assert_lt(j, n);
		count[j]++;
	}
	for (j = 0; j < n; j++)
		cr_assert(count[j] >= N_CLIENTS / n * 8 / 10 &&
		    count[j] <= N_CLIENTS / n * 12 / 10,
		    "endpoint %zu got %zu of %d clients", j, count[j],
		    N_CLIENTS);
	lb_free(lb);
}

/* Where each of N_CLIENTS clients goes: the last address byte. */
static void
maglev_map(struct lb *lb, uint8_t *where)
{
	struct lb_target t;
	struct svc_ip c;
	size_t i;

	for (i = 0; i < N_CLIENTS; i++) {
		c = nth_client(i);
		cr_assert_eq(lb_pick(lb, &c, NULL, 0, &t), 0);
		where[i] = t.ip.addr[3];
	}
}

Test(lb, maglev_removing_one_endpoint_moves_only_its_clients)
{
	const size_t n = 10;
	static uint8_t before[N_CLIENTS], after[N_CLIENTS];
	struct endpoint eps[10];
	struct lb *lb;
	size_t i, moved = 0;

	memcpy(eps, many(n), sizeof(eps));
	lb = lb_with(eps, n, SVC_AFFINITY_NONE, 0);
	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_MAGLEV), 0);
	maglev_map(lb, before);
	/* Drop 10.1.0.4. */
	memmove(&eps[3], &eps[4], (n - 4) * sizeof(eps[0]));
	cr_assert_eq(lb_update(lb, eps, n - 1, SVC_AFFINITY_NONE, 0), 0);
	maglev_map(lb, after);
	for (i = 0; i < N_CLIENTS; i++) {
		if (before[i] == after[i])
			continue;
		moved++;
		/* Only the removed endpoint's clients move. */
		cr_assert_eq(before[i], 4, "client %zu moved from .%u to .%u",
		    i, before[i], after[i]);
	}
	cr_assert_leq(moved * n, N_CLIENTS * 3 / 2, "%zu of %d moved", moved,
	    N_CLIENTS);
	lb_free(lb);
}

/* Three endpoints need a larger table than two: a removal keeps it. */
Test(lb, maglev_removal_keeps_clients_when_fewer_need_a_smaller_table)
{
	static uint8_t before[N_CLIENTS], after[N_CLIENTS];
	struct endpoint eps[3];
	struct lb *lb;
	size_t i;

	memcpy(eps, many(3), sizeof(eps));
	lb = lb_with(eps, 3, SVC_AFFINITY_NONE, 0);
	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_MAGLEV), 0);
	maglev_map(lb, before);
	/* Drop 10.1.0.2. */
	eps[1] = eps[2];
	cr_assert_eq(lb_update(lb, eps, 2, SVC_AFFINITY_NONE, 0), 0);
	maglev_map(lb, after);
	for (i = 0; i < N_CLIENTS; i++)
		if (before[i] != after[i])
			cr_assert_eq(before[i], 2, "client %zu moved from .%u "
			    "to .%u", i, before[i], after[i]);
	lb_free(lb);
}

Test(lb, maglev_passes_over_backing_off_and_tried)
{
	struct lb *lb = lb_with(many(4), 4, SVC_AFFINITY_NONE, 0);
	struct svc_ip c = client("192.0.2.9");
	struct lb_target first, t;
	struct lb_tried tried = { .n = 0 };

	cr_assert_eq(lb_set_balancer(lb, SVC_BALANCER_MAGLEV), 0);
	cr_assert_eq(lb_pick(lb, &c, NULL, 0, &first), 0);
	lb_tried_add(&tried, &first);
	cr_assert_eq(lb_pick(lb, &c, &tried, 0, &t), 0);
	cr_assert(!lb_tried_has(&tried, &t));
	lb_report(lb, &first, LB_REFUSED, 0);
	cr_assert_eq(lb_pick(lb, &c, NULL, 0, &t), 0);
	cr_assert(memcmp(&t, &first, sizeof(t)) != 0);
	/* Its back-off over, the client goes home. */
	cr_assert_eq(lb_pick(lb, &c, NULL, LB_BACKOFF_MS + 1, &t), 0);
	cr_assert(memcmp(&t, &first, sizeof(t)) == 0);
	lb_free(lb);
}

/* With ClientIP affinity, a live entry wins over every algorithm. */
static void
affinity_wins(enum svc_balancer b)
{
	struct lb *lb = lb_with(many(4), 4, SVC_AFFINITY_CLIENT_IP, 60);
	struct svc_ip c = client("192.0.2.11");
	struct lb_target first, t, other;
	char want[64];
	int i;

	cr_assert_eq(lb_set_balancer(lb, b), 0);
	cr_assert_eq(lb_pick(lb, &c, NULL, 0, &first), 0);
	lb_report(lb, &first, LB_CONNECTED, 0);
	/* Load the pinned endpoint: least connections would go elsewhere. */
	for (i = 0; i < 5; i++)
		lb_report(lb, &first, LB_CONNECTED, 0);
	lb_target_str(&first, want, sizeof(want));
	for (i = 0; i < 5; i++)
		cr_assert_str_eq(pick(lb, &c, NULL, 1000 * i), want);
	cr_assert_eq(lb_n_affinity(lb), 1);
	/* Expired, the algorithm chooses again (and records it). */
	cr_assert_eq(lb_pick(lb, &c, NULL, 1000 * 4 + 60001, &other), 0);
	cr_assert_eq(lb_pick(lb, &c, NULL, 1000 * 4 + 60002, &t), 0);
	cr_assert(memcmp(&t, &other, sizeof(t)) == 0);
	if (b == SVC_BALANCER_LEAST_CONN)
		cr_assert(memcmp(&other, &first, sizeof(t)) != 0);
	lb_free(lb);
}

Test(lb, affinity_with_round_robin)
{
	affinity_wins(SVC_BALANCER_ROUND_ROBIN);
}

Test(lb, affinity_with_least_conn)
{
	affinity_wins(SVC_BALANCER_LEAST_CONN);
}

Test(lb, affinity_with_maglev)
{
	affinity_wins(SVC_BALANCER_MAGLEV);
}

/* Two IPv4 and two IPv6 endpoints: a dual-stack service's port. */
static const struct endpoint *
dual_stack(void)
{
	static struct endpoint eps[4];

	eps[0] = ep("10.0.0.1", 80, READY);
	eps[1] = ep("10.0.0.2", 80, READY);
	eps[2] = ep("fd00::1", 80, READY);
	eps[3] = ep("fd00::2", 80, READY);
	return eps;
}

/* Each family's clients rotate over that family's endpoints only. */
static void
families_stay_apart(enum svc_balancer balancer)
{
	struct lb *lb = lb_with(dual_stack(), 4, SVC_AFFINITY_NONE, 0);
	struct svc_ip v4 = client("10.1.1.1"), v6 = client("fd00:1::1");
	int i, seen4[2] = { 0, 0 }, seen6[2] = { 0, 0 };
	const char *got;

	cr_assert_eq(lb_set_balancer(lb, balancer), 0);
	for (i = 0; i < 8; i++) {
		v4.addr[3] = (uint8_t)i;
		v6.addr[15] = (uint8_t)i;
		got = pick(lb, &v4, NULL, 0);
		cr_assert(strncmp(got, "10.0.0.", 7) == 0, "v4 got %s", got);
		seen4[got[7] - '1']++;
		got = pick(lb, &v6, NULL, 0);
		cr_assert(strncmp(got, "[fd00::", 7) == 0, "v6 got %s", got);
		seen6[got[7] - '1']++;
	}
	if (balancer != SVC_BALANCER_MAGLEV) {
		/* Interleaved picks do not disturb either rotation. */
		cr_assert_eq(seen4[0], 4);
		cr_assert_eq(seen6[1], 4);
	}
	cr_assert_eq(seen4[0] + seen4[1], 8);
	cr_assert_eq(seen6[0] + seen6[1], 8);
	lb_free(lb);
}

Test(lb, dual_stack_round_robin_keeps_families_apart)
{
	families_stay_apart(SVC_BALANCER_ROUND_ROBIN);
}

Test(lb, dual_stack_least_conn_keeps_families_apart)
{
	families_stay_apart(SVC_BALANCER_LEAST_CONN);
}

Test(lb, dual_stack_maglev_keeps_families_apart)
{
	families_stay_apart(SVC_BALANCER_MAGLEV);
}

Test(lb, dual_stack_retry_stays_in_the_family)
{
	struct lb *lb = lb_with(dual_stack(), 4, SVC_AFFINITY_NONE, 0);
	struct svc_ip v6 = client("fd00:1::1");
	struct lb_tried tried;
	struct lb_target t;

	memset(&tried, 0, sizeof(tried));
	cr_assert_eq(lb_pick(lb, &v6, &tried, 0, &t), 0);
	lb_tried_add(&tried, &t);
	lb_report(lb, &t, LB_REFUSED, 0);
	cr_assert_str_eq(pick(lb, &v6, &tried, 0), "[fd00::2]:80");
	lb_tried_add(&tried, &(struct lb_target){ .ip = client("fd00::2"),
	    .port = 80 });
	/* Both IPv6 endpoints tried: still IPv6, never an IPv4 one. */
	cr_assert(strncmp(pick(lb, &v6, &tried, 0), "[fd00::", 7) == 0);
	lb_free(lb);
}

Test(lb, dual_stack_affinity_stays_in_the_family)
{
	struct lb *lb = lb_with(dual_stack(), 4, SVC_AFFINITY_CLIENT_IP, 0);
	struct svc_ip v4 = client("10.1.1.1"), v6 = client("fd00:1::1");
	const char *first;

	first = pick(lb, &v6, NULL, 0);
	cr_assert(strncmp(first, "[fd00::", 7) == 0);
	cr_assert_str_eq(pick(lb, &v6, NULL, 1000), first);
	cr_assert(strncmp(pick(lb, &v4, NULL, 1000), "10.0.0.", 7) == 0);
	lb_free(lb);
}

Test(lb, single_family_endpoints_serve_every_client)
{
	struct lb *lb = lb_with(abc(), 3, SVC_AFFINITY_NONE, 0);
	struct svc_ip v6 = client("fd00:1::1");

	/* No IPv6 endpoint: a proxy can still cross families. */
	cr_assert_str_eq(pick(lb, &v6, NULL, 0), "10.0.0.1:80");
	lb_free(lb);
}
