// Package admin serves an Envoy-like admin interface for a drainhttp.Server:
// a live HTML status page, readiness, a JSON status document, and the
// operator's actions (start a drain, fail or restore the health check),
// each behind the guards a private admin port needs.
//
//	GET  /                  the status page (HTML; see New)
//	GET  /ready             the server's ReadyHandler: 200 "ok" or 503 "draining"
//	GET  /status            Status, as JSON
//	POST /drain             start the drain, without waiting for it; 202 and Status
//	POST /healthcheck/fail  fail the health check; 200 and Status
//	POST /healthcheck/ok    restore it; 200 and Status
//	GET  /metrics           Options.Metrics, if set
//
// What it adds to drainhttp: the HTTP surface (routing, methods, JSON,
// HTML), a bearer token on every POST, protection against cross-origin
// browser requests and DNS rebinding (a Host allowlist), a refusal to be
// served by the server it administers (which would drain it), and a status
// document that maps the server's phases to the "state" names of the
// drainhttp.Server.AdminHandler it replaces.
//
// What it depends on: the exported API of github.com/drainhttp/drainhttp
// (Server.Status, ReadyHandler, Manager, StartDrain, StartDrainNow, OnPhase,
// Served, Done and the Logger field; ParseStrategy) and the standard
// library; nothing internal, so it is also an example of what a third party
// can build on drainhttp.
//
// Serve the handler on a private listener with a plain http.Server, never
// with the drainhttp.Server it administers: that one would close the admin
// port with the rest when it drains, so New's handler answers every request
// it serves with 421 Misdirected Request. Envoy's admin interface is likewise
// a listener of its own.
//
// NOTES: the handler's paths are absolute; to mount it under a prefix use
// http.StripPrefix, and open the status page with the trailing slash
// (/admin/, not /admin), since it fetches "status" relative to its own URL.
// The status page needs JavaScript.
package admin
