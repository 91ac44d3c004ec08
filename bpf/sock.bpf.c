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
 *   the *6 hooks:           the same for IPv4 addresses on dual-stack IPv6
 *                           sockets (::ffff:a.b.c.d, Java's way to reach
 *                           127.0.0.1), and [::] binds, which take the IPv4
 *                           port too
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

static __always_inline int redirect(struct bpf_sock_addr *ctx, __u32 proto, __be32 ip, __be16 port,
				    struct backend *to)
{
	const struct moat_publish_val *pub;
	struct moat_sock_rnat_key key = {};
	struct moat_sock_rnat_val orig = {};

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return 0;
	if (!serves_netns(ctx) || !is_local_addr(ip))
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
	pub = publish_lookup(ip, port, (__u8)proto);
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

struct port_query {
	__be16 port;
	__u8 proto;
	__u8 found;
};

static long match_port(struct bpf_map *map, const struct moat_publish_key *key,
		       const struct moat_publish_val *val, struct port_query *q)
{
	if (key->port != q->port || key->proto != q->proto)
		return 0;
	q->found = 1;
	return 1; /* stop */
}

/*
 * Whether binding ip:port/proto takes a published port. A specific address
 * collides with a publish on that address or on every address; 0.0.0.0
 * collides with any publish of the port, whatever its address, which needs
 * a walk over the map (binds are rare, the map small).
 */
static __always_inline int bind_verdict(void *ctx, __u32 proto, __be32 ip, __be16 port)
{
	struct port_query q = { .port = port, .proto = (__u8)proto };
	const struct moat_host_cfg *cfg;

	if (!port) /* the kernel picks a free ephemeral port */
		return SOCK_ALLOW;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return SOCK_ALLOW;
	cfg = served_host(ctx);
	if (!cfg || (cfg->flags & MOAT_HOST_F_RUNTIME_BINDS))
		return SOCK_ALLOW;
	if (publish_lookup(ip, port, (__u8)proto))
		return SOCK_DENY;
	if (ip)
		return SOCK_ALLOW;
	bpf_for_each_map_elem(&publish, match_port, &q, 0);
	return q.found ? SOCK_DENY : SOCK_ALLOW;
}

/* ---- IPv4 sockets ---------------------------------------------------------------- */

static __always_inline void redirect4(struct bpf_sock_addr *ctx)
{
	struct backend to;

	if (redirect(ctx, ctx->protocol, ctx->user_ip4, (__be16)ctx->user_port, &to)) {
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
	return bind_verdict(ctx, ctx->protocol, ctx->user_ip4, (__be16)ctx->user_port);
}

/* ---- IPv6 sockets: IPv4-mapped addresses and [::] --------------------------------- */

/* ::ffff:a.b.c.d: an IPv4 peer of a dual-stack socket. */
static __always_inline int v4_mapped(const struct bpf_sock_addr *ctx, __be32 *ip)
{
	if (ctx->user_ip6[0] || ctx->user_ip6[1] || ctx->user_ip6[2] != bpf_htonl(0xffff))
		return 0;
	*ip = ctx->user_ip6[3];
	return 1;
}

static __always_inline int v6_any(const struct bpf_sock_addr *ctx)
{
	return !ctx->user_ip6[0] && !ctx->user_ip6[1] && !ctx->user_ip6[2] && !ctx->user_ip6[3];
}

static __always_inline void redirect6(struct bpf_sock_addr *ctx)
{
	struct backend to;
	__be32 ip;

	if (!v4_mapped(ctx, &ip))
		return;
	if (redirect(ctx, ctx->protocol, ip, (__be16)ctx->user_port, &to)) {
		ctx->user_ip6[3] = to.ip;
		ctx->user_port = to.port;
	}
}

static __always_inline void restore6(struct bpf_sock_addr *ctx)
{
	const struct moat_sock_rnat_val *orig;
	__be32 ip;

	if (!v4_mapped(ctx, &ip))
		return;
	orig = original(ctx, ip, (__be16)ctx->user_port);
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
 * hook cannot see: treated like 0.0.0.0, as Docker holds [::]:PORT as well.
 * Other IPv6 addresses never collide: publishing is IPv4 only.
 */
SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
	__be32 ip;

	if (v6_any(ctx))
		ip = 0;
	else if (!v4_mapped(ctx, &ip))
		return SOCK_ALLOW;
	return bind_verdict(ctx, ctx->protocol, ip, (__be16)ctx->user_port);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
