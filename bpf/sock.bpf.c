// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sock.bpf.c - cgroup socket hooks: published ports as the host sees them.
 *
 * A process on the host reaches a published port at 127.0.0.1:PORT,
 * localhost:PORT or <any host address>:PORT. Instead of a proxy or NAT on
 * every packet, the destination is rewritten once, in connect() or sendto(),
 * and the application is shown the address it asked for:
 *
 *   connect4, sendmsg4:     host address:published port -> container:port,
 *                           remembered in sock_rnat under the socket cookie
 *   recvmsg4, getpeername4: container:port -> the address asked for
 *   bind4:                  binding a published port fails with EPERM: the
 *                           port is taken, as Docker holds it
 *   the *6 hooks:           the same over IPv6 ([::1], [::] or a host IPv6
 *                           address: publish6, sock_rnat6), and for IPv4
 *                           addresses on dual-stack IPv6 sockets
 *                           (::ffff:a.b.c.d, Java's way to reach 127.0.0.1);
 *                           [::] binds take the IPv4 port too
 *
 * The programs are attached at the cgroup2 root and so run for every process
 * of the machine. Each acts only in the network namespace whose cookie is in
 * host_cfg and returns "allow, unchanged" everywhere else.
 */
#include "lib/common.h"
#include "lib/maps.h"

/* Return values of cgroup sock_addr programs. */
#define SOCK_ALLOW 1
#define SOCK_DENY 0 /* the system call fails with EPERM */

struct bpf_map;

/* The host's settings when ctx is in the namespace the hooks serve, else NULL. */
static __always_inline const struct moat_host_cfg *served_host(void *ctx)
{
	const struct moat_host_cfg *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&host_cfg, &zero);
	if (!cfg || !cfg->netns_cookie || bpf_get_netns_cookie(ctx) != cfg->netns_cookie)
		return NULL;
	return cfg;
}

static __always_inline int serves_netns(void *ctx)
{
	return served_host(ctx) != NULL;
}

/* A TCP or UDP socket of the namespace the hooks serve. */
static __always_inline int redirectable(struct bpf_sock_addr *ctx)
{
	return (ctx->protocol == IPPROTO_TCP || ctx->protocol == IPPROTO_UDP) && serves_netns(ctx);
}

static __always_inline int is_loopback(__be32 ip)
{
	return (ip & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000);
}

/* 127.0.0.0/8, a gateway of a moat network, or another known host address. */
static __always_inline int is_local_addr(__be32 ip)
{
	return is_loopback(ip) || is_host_addr(addr_lookup(ip));
}

/* Where a connect()/sendto() to ip:port goes instead: the backend, or 0. */
struct backend {
	__be32 ip;
	__be16 port;
};

static __always_inline int redirect(struct bpf_sock_addr *ctx, __be32 ip, __be16 port,
				    struct backend *to)
{
	const struct moat_publish_val *pub;
	struct moat_sock_rnat_key key = {};
	struct moat_sock_rnat_val orig = {};

	if (!redirectable(ctx) || !is_local_addr(ip))
		return 0;
	/*
	 * A socket bound to a loopback address (IPv6 sockets bound to a
	 * non-mapped address show 127.0.0.6 here) cannot reach a container:
	 * the kernel will not route a 127.x source beyond lo and connect()
	 * would fail with EINVAL. Left alone it gets "connection refused"
	 * from the port no host process may bind.
	 */
	if (is_loopback(ctx->sk->src_ip4))
		return 0;
	pub = publish_lookup(ip, port, (__u8)ctx->protocol);
	if (!pub)
		return 0;
	to->ip = pub->backend_ip;
	to->port = pub->backend_port;

	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend_ip = to->ip;
	key.backend_port = to->port;
	orig.orig_ip = ip;
	orig.orig_port = port;
	bpf_map_update_elem(&sock_rnat, &key, &orig, BPF_ANY);
	return 1;
}

/* The address the application asked for, if ip:port is a redirected backend. */
static __always_inline const struct moat_sock_rnat_val *original(void *ctx, __be32 ip, __be16 port)
{
	struct moat_sock_rnat_key key = {};

	if (!serves_netns(ctx))
		return 0;
	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend_ip = ip;
	key.backend_port = port;
	return bpf_map_lookup_elem(&sock_rnat, &key);
}

/* ---- binds ----------------------------------------------------------------------- */

struct port_query {
	__be16 port;
	__u8 proto;
	__u8 found;
};

static __always_inline long port_hit(struct port_query *q, __be16 port, __u8 proto)
{
	if (port != q->port || proto != q->proto)
		return 0;
	q->found = 1;
	return 1; /* stop */
}

static long match_port(struct bpf_map *map, const struct moat_publish_key *key,
		       const struct moat_publish_val *val, struct port_query *q)
{
	return port_hit(q, key->port, key->proto);
}

static long match_port6(struct bpf_map *map, const struct moat_publish6_key *key,
			const struct moat_publish6_val *val, struct port_query *q)
{
	return port_hit(q, key->port, key->proto);
}

/* Whether a bind of port/proto is one the hooks judge at all. */
static __always_inline int bind_guarded(void *ctx, __u32 proto, __be16 port)
{
	const struct moat_host_cfg *cfg;

	if (!port) /* the kernel picks a free ephemeral port */
		return 0;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return 0;
	cfg = served_host(ctx);
	return cfg && !(cfg->flags & MOAT_HOST_F_RUNTIME_BINDS);
}

/*
 * Whether binding ip:port/proto takes a published port. A specific address
 * collides with a publish on that address or on every address; the wildcard
 * collides with any publish of the port, whatever its address, which needs
 * a walk over the map (binds are rare, the map small).
 */
static __always_inline int taken4(__be32 ip, __be16 port, __u8 proto)
{
	struct port_query q = { .port = port, .proto = proto };

	if (publish_lookup(ip, port, proto))
		return 1;
	if (ip)
		return 0;
	bpf_for_each_map_elem(&publish, match_port, &q, 0);
	return q.found;
}

static __always_inline int taken6(const union moat_ip *ip, __be16 port, __u8 proto)
{
	struct port_query q = { .port = port, .proto = proto };

	if (publish_lookup6(*ip, port, proto))
		return 1;
	if (!ip_is_zero(ip))
		return 0;
	bpf_for_each_map_elem(&publish6, match_port6, &q, 0);
	return q.found;
}

/* ---- IPv4 sockets ---------------------------------------------------------------- */

static __always_inline void redirect4(struct bpf_sock_addr *ctx)
{
	struct backend to;

	if (redirect(ctx, ctx->user_ip4, (__be16)ctx->user_port, &to)) {
		ctx->user_ip4 = to.ip;
		ctx->user_port = to.port;
	}
}

static __always_inline void restore4(struct bpf_sock_addr *ctx)
{
	const struct moat_sock_rnat_val *orig;

	orig = original(ctx, ctx->user_ip4, (__be16)ctx->user_port);
	if (orig) {
		ctx->user_ip4 = orig->orig_ip;
		ctx->user_port = orig->orig_port;
	}
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	redirect4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	redirect4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/getpeername4")
int getpeername4(struct bpf_sock_addr *ctx)
{
	restore4(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
	__be16 port = (__be16)ctx->user_port;

	if (!bind_guarded(ctx, ctx->protocol, port))
		return SOCK_ALLOW;
	return taken4(ctx->user_ip4, port, (__u8)ctx->protocol) ? SOCK_DENY : SOCK_ALLOW;
}

/* ---- IPv6 sockets ---------------------------------------------------------------- */

/* The context's address, one 32-bit word at a time as the verifier wants it. */
static __always_inline void user_ip6(const struct bpf_sock_addr *ctx, union moat_ip *ip)
{
	ip->w[0] = ctx->user_ip6[0];
	ip->w[1] = ctx->user_ip6[1];
	ip->w[2] = ctx->user_ip6[2];
	ip->w[3] = ctx->user_ip6[3];
}

static __always_inline void set_user_ip6(struct bpf_sock_addr *ctx, const union moat_ip *ip)
{
	ctx->user_ip6[0] = ip->w[0];
	ctx->user_ip6[1] = ip->w[1];
	ctx->user_ip6[2] = ip->w[2];
	ctx->user_ip6[3] = ip->w[3];
}

/* ::ffff:a.b.c.d: an IPv4 peer of a dual-stack socket. */
static __always_inline int v4_mapped(const union moat_ip *ip)
{
	return !ip->w[0] && !ip->w[1] && ip->w[2] == bpf_htonl(0xffff);
}

static __always_inline int is_loopback6(const union moat_ip *ip)
{
	return !ip->w[0] && !ip->w[1] && !ip->w[2] && ip->w[3] == bpf_htonl(1);
}

/* ::1, or a host IPv6 address moat knows (a gateway, addrs6). */
static __always_inline int is_local_addr6(const union moat_ip *ip)
{
	return is_loopback6(ip) || is_host_addr(addr_lookup6(*ip));
}

/* A socket bound to ::1 cannot reach a container (as 127.x for IPv4, above). */
static __always_inline int bound_to_loopback6(const struct bpf_sock_addr *ctx)
{
	union moat_ip src = { .w = { ctx->sk->src_ip6[0], ctx->sk->src_ip6[1],
				     ctx->sk->src_ip6[2], ctx->sk->src_ip6[3] } };

	return is_loopback6(&src);
}

/*
 * A native IPv6 destination at a published port: to the backend's IPv6
 * address, remembered in sock_rnat6. publish6 holds IPv6 backends only, so
 * [::1] never goes to an IPv4 one. Connecting or sending to [::] reaches
 * the host at ::1 (the kernel's BSD'ism), so it is looked up, and shown
 * back, as ::1.
 */
static __always_inline void redirect6_native(struct bpf_sock_addr *ctx, union moat_ip *ip)
{
	const struct moat_publish6_val *pub;
	struct moat_sock_rnat6_key key = {};
	struct moat_sock_rnat6_val orig = {};
	__be16 port = (__be16)ctx->user_port;

	if (ip_is_zero(ip))
		ip->w[3] = bpf_htonl(1);
	if (!redirectable(ctx) || !is_local_addr6(ip) || bound_to_loopback6(ctx))
		return;
	pub = publish_lookup6(*ip, port, (__u8)ctx->protocol);
	if (!pub)
		return;
	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend_ip = pub->backend_ip;
	key.backend_port = pub->backend_port;
	orig.orig_ip = *ip;
	orig.orig_port = port;
	bpf_map_update_elem(&sock_rnat6, &key, &orig, BPF_ANY);
	set_user_ip6(ctx, &pub->backend_ip);
	ctx->user_port = pub->backend_port;
}

static __always_inline void restore6_native(struct bpf_sock_addr *ctx, const union moat_ip *ip)
{
	const struct moat_sock_rnat6_val *orig;
	struct moat_sock_rnat6_key key = {};

	if (!serves_netns(ctx))
		return;
	key.cookie = bpf_get_socket_cookie(ctx);
	key.backend_ip = *ip;
	key.backend_port = (__be16)ctx->user_port;
	orig = bpf_map_lookup_elem(&sock_rnat6, &key);
	if (orig) {
		set_user_ip6(ctx, &orig->orig_ip);
		ctx->user_port = orig->orig_port;
	}
}

static __always_inline void redirect6(struct bpf_sock_addr *ctx)
{
	struct backend to;
	union moat_ip ip;

	user_ip6(ctx, &ip);
	if (!v4_mapped(&ip)) {
		redirect6_native(ctx, &ip);
		return;
	}
	if (redirect(ctx, ip.w[3], (__be16)ctx->user_port, &to)) {
		ctx->user_ip6[3] = to.ip;
		ctx->user_port = to.port;
	}
}

static __always_inline void restore6(struct bpf_sock_addr *ctx)
{
	const struct moat_sock_rnat_val *orig;
	union moat_ip ip;

	user_ip6(ctx, &ip);
	if (!v4_mapped(&ip)) {
		restore6_native(ctx, &ip);
		return;
	}
	orig = original(ctx, ip.w[3], (__be16)ctx->user_port);
	if (orig) {
		ctx->user_ip6[3] = orig->orig_ip;
		ctx->user_port = orig->orig_port;
	}
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	redirect6(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	redirect6(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/recvmsg6")
int recvmsg6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return SOCK_ALLOW;
}

SEC("cgroup/getpeername6")
int getpeername6(struct bpf_sock_addr *ctx)
{
	restore6(ctx);
	return SOCK_ALLOW;
}

/*
 * [::] also takes the IPv4 port unless the socket is IPV6_V6ONLY, which the
 * hook cannot see: treated like 0.0.0.0 as well, as Docker holds both.
 */
SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = (__u8)ctx->protocol;
	union moat_ip ip;

	if (!bind_guarded(ctx, ctx->protocol, port))
		return SOCK_ALLOW;
	user_ip6(ctx, &ip);
	if (v4_mapped(&ip))
		return taken4(ip.w[3], port, proto) ? SOCK_DENY : SOCK_ALLOW;
	if (taken6(&ip, port, proto))
		return SOCK_DENY;
	return ip_is_zero(&ip) && taken4(0, port, proto) ? SOCK_DENY : SOCK_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
