// Package httpapi serves imgate's HTTP API for trusted backends on
// fasthttp: registration (/im/vanke/initUser, getReceiver, chatInfo),
// logout (/im/vanke/logout) and the operations endpoints /healthz and
// /metrics (PROTOCOL §1). It parses and validates HTTP input and leaves
// every decision to router.
//
// Safe by default: no CORS headers unless an origin is configured, POST
// bodies only as application/json (415 otherwise, so that no web page can
// post to it without a CORS preflight), and the API key when one is set.
// A request refused for its body size gets a 413 it can read: the
// connection closes lingering (linger.go).
//
// Handlers never keep a *fasthttp.RequestCtx after they return. Body size,
// timeouts and concurrency are set explicitly in the fasthttp.Server.
package httpapi
