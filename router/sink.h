/* The built-in channel sink: when no API base is configured (`make run`), egress sends every
 * channel API call to this router's own /_sink/<channel>/... routes. The sink answers like a
 * provider ({"messages":[{"id":"wamid.sink<n>"}]}), keeps the last router.sink_keep requests in
 * memory, and GET /_sink shows them as JSON for the demo. Loop thread only. */
#ifndef SB_ROUTER_SINK_H
#define SB_ROUTER_SINK_H

#include <stddef.h>

#include "sb/http.h"

typedef struct sb_router_sink sb_router_sink_t;

/* Creates a sink keeping at most keep requests (0: keeps none, still answers). */
sb_router_sink_t *sb_router_sink_create(size_t keep);
/* Adds GET /_sink and the /_sink/ prefix routes (bodies up to max_body) to srv. */
void sb_router_sink_add_routes(sb_router_sink_t *sink, sb_http_server_t *srv, size_t max_body);
/* Frees the sink after the server stopped. */
void sb_router_sink_destroy(sb_router_sink_t *sink);

#endif
