/* api_gate.h — inside src/api only: the accepting gate in front of libmicrohttpd and the
 * request checks against cross-site use (api_gate.c; docs/security.md). Not API. */
#ifndef SW_API_GATE_H
#define SW_API_GATE_H

#include <microhttpd.h>

#include "api/api.h"

#define SW_API_MAX_CONNS 256          /* connections MHD serves at once (a thread each) */
#define SW_API_PER_ADDR 64            /* of those, from one IP address (local clients share 127.0.0.1) */
#define SW_API_GATE_MAX_PENDING 512   /* connections whose request headers are still arriving */
#define SW_API_GATE_PER_ADDR 16       /* of those, from one IP address */
#define SW_API_HEADER_DEADLINE_MS 5000 /* from accept to the end of the request headers */
#define SW_API_BODY_DEADLINE_MS 10000  /* from the end of the headers to the end of the body */
#define SW_API_MAX_ALLOW 16           /* --api-allow-host / --api-allow-origin entries each */

struct sw__gate;

/* Binds host:port (IPv4 literal; port 0: any) and listens; *port_out the bound port. */
int sw__gate_listen(struct sw__gate **out, const char *host, uint16_t port, uint16_t *port_out, char *err,
                    size_t err_len);
/* Starts the accepting thread, which hands connections to d (MHD_USE_NO_LISTEN_SOCKET). */
int sw__gate_start(struct sw__gate *g, struct MHD_Daemon *d);
/* Stops the accepting thread (before MHD_stop_daemon); free closes the listening socket. */
void sw__gate_stop(struct sw__gate *g);
void sw__gate_free(struct sw__gate *g);
/* MHD_OPTION_NOTIFY_CONNECTION with cls = the gate: counts MHD's connections per address. */
void sw__gate_on_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

struct sw__guard {
    const char *const *hosts;  /* extra Host names allowed (--api-allow-host) */
    size_t n_hosts;
    const char *const *origins; /* extra origins allowed to write (--api-allow-origin) */
    size_t n_origins;
};
/* Host (local names and IP literals, else configured), Origin on writes (none, same
 * origin, or configured) and Content-Type on POST/PUT/PATCH (application/json). 0 when
 * the request may go on; else the HTTP status (403, 415) with msg filled. */
int sw__guard_check(const struct sw__guard *gd, struct MHD_Connection *c, const char *method, char *msg,
                    size_t msg_len);

#endif
