/* The widget's static files (router/widget/: widget.js, widget.css, the demo page with its
 * demo.css and favicon.svg), compiled into the router by router/widget/embed.cmake so that no
 * path has to be configured and a deployment cannot serve a stale copy. Served by
 * webchat_browser.c as /widget/<name>. */
#ifndef SB_ROUTER_WIDGET_ASSETS_H
#define SB_ROUTER_WIDGET_ASSETS_H

#include <stddef.h>

typedef struct sb_webchat_asset {
    const char *name;          /* "widget.js" */
    const unsigned char *data; /* len bytes (plus a NUL) */
    size_t len;
} sb_webchat_asset_t;

extern const sb_webchat_asset_t sb_webchat_assets[];
extern const size_t sb_webchat_nassets;

#endif
