// Package webui is the appliance's HTTP face: the REST API under /api/v1,
// server-rendered pages, authentication, live updates and the embedded static
// assets. It declares the small interfaces it needs from the rest of the
// appliance and translates errors to HTTP status codes at the edge; it never
// writes SQL and never speaks CoAP.
package webui
