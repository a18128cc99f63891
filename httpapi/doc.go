// Package httpapi serves imgate's HTTP API for trusted backends on
// fasthttp: registration (/im/vanke/initUser) and the operations endpoints
// /healthz and /metrics (PROTOCOL §1). It parses and validates HTTP input
// and leaves every decision to router.
//
// Handlers never keep a *fasthttp.RequestCtx after they return. Body size,
// timeouts and concurrency are set explicitly in the fasthttp.Server.
package httpapi
